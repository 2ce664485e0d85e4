"""`authsvc serve --workers N`: N worker processes serve one port; a supervisor
watches them.

Each worker is `python -m authsvc serve --worker-of <supervisor pid>`: a fresh
interpreter running the ordinary app on the same host and port with SO_REUSEPORT, so
the kernel spreads new connections over the workers' listening sockets. Workers share
nothing in memory (each has its own token cache, RBAC cache, hash pool, mail queue and
metrics); everything that must hold across them is in the store already.

The supervisor
- checks the port is free first (with SO_REUSEPORT a worker would otherwise quietly
  join another server already listening there) and resolves port 0 to one free port;
- resolves the store once (starting the embedded store itself when KEYDB_URL is unset
  and nothing answers), and hands the workers its URL;
- hands the workers one prometheus-client multiprocess directory
  (PROMETHEUS_MULTIPROC_DIR), so a scrape of /metrics on any worker answers for all of
  them: the operator's, emptied of an earlier run's files, or a private temporary one
  removed at exit;
- forwards the first SIGTERM or SIGINT to every worker as SIGTERM: each stops
  accepting, lets in-flight requests finish, flushes and exits; a second signal kills
  them at once;
- exits 1 when a worker dies that it did not stop (it stops the others first): the
  process manager (systemd, Kubernetes, honcho) restarts the whole service, rather
  than this one hiding a crash loop behind restarts.

Workers run in their own session, so a terminal's Ctrl-C reaches only the supervisor,
which forwards it once; a worker whose supervisor is gone (SIGKILLed) notices within a
second and shuts down gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from aiohttp import web
from prometheus_client import multiprocess

from ..config import Settings
from ..store import embedded

log = logging.getLogger("authsvc.workers")

# aiohttp's default wait for in-flight requests at shutdown, plus time for the cleanup
# (audit flush, mail queue, store pool): past this, the supervisor kills a worker.
SHUTDOWN_GRACE_S = 60.0 + 15.0
PARENT_POLL_S = 1.0


# The files prometheus-client writes (counter_<pid>.db, gauge_livesum_<pid>.db, ...):
# only these are removed from the operator's directory, which may hold other files.
_METRICS_FILE = re.compile(r"(?:counter|histogram|summary|gauge_[a-z]+)_\d+\.db")


class StartError(Exception):
    """The service cannot start; the message is the one line to print."""


class PortInUse(StartError):
    pass


def claim_port(host: str, port: int) -> int:
    """The port the workers will share: `port`, or a free one when it is 0. Raises
    PortInUse when something already listens there (binding without SO_REUSEPORT fails
    even against SO_REUSEPORT listeners)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
            if family == socket.AF_INET6:  # as asyncio binds: v6 only, v4 separately
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind((addr[0], port, *addr[2:]))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUse(f"{host}:{port} is already in use") from None
                continue  # e.g. no IPv6 here: the workers report what they cannot bind
            if port == 0:
                port = probe.getsockname()[1]
    return port


def supervise(settings: Settings, *, metrics_dir: str | None = None) -> int:
    """Run `settings.workers` workers until a signal or a worker's death; the exit
    status: 0 after a clean stop, 1 otherwise. `metrics_dir`: the operator's
    PROMETHEUS_MULTIPROC_DIR, if any."""
    port = claim_port(settings.host, settings.port)  # before emptying anyone's metrics
    with workers_metrics_dir(metrics_dir) as path:
        return asyncio.run(_supervise(settings, port, path))


@contextlib.contextmanager
def workers_metrics_dir(operator_dir: str | None) -> Iterator[str]:
    """The workers' PROMETHEUS_MULTIPROC_DIR for one run. The operator's is created if
    missing and emptied of prometheus-client's files, which a previous run left there:
    the library sums every file it finds, so their counts would be added to this run's
    (and a worker that got a dead one's pid would carry on from its values). It is left
    in place at exit. Without one, a private temporary directory, removed at exit."""
    if operator_dir is None:
        with tempfile.TemporaryDirectory(prefix="authsvc-metrics-") as path:
            yield path
        return
    directory = Path(operator_dir)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        found = [p for p in directory.iterdir() if p.suffix == ".db"]
        # A scrape reads every *.db there: any other would break /metrics, and it is not
        # ours to delete.
        foreign = sorted(p.name for p in found if not _METRICS_FILE.fullmatch(p.name))
        if foreign:
            raise StartError(
                f"PROMETHEUS_MULTIPROC_DIR {operator_dir} holds {', '.join(foreign)}, not "
                "prometheus-client's: give the service a directory of its own"
            )
        for path in found:
            path.unlink(missing_ok=True)
    except OSError as exc:
        raise StartError(f"PROMETHEUS_MULTIPROC_DIR {operator_dir}: {exc.strerror}") from None
    if found:
        log.info("removed %d metrics files of an earlier run from %s", len(found), directory)
    yield str(directory)


async def _supervise(settings: Settings, port: int, metrics_dir: str) -> int:
    loop = asyncio.get_running_loop()
    signals: asyncio.Queue[int] = asyncio.Queue()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signals.put_nowait, sig)
    async with embedded.store_url(settings) as url:
        env = {**os.environ, "KEYDB_URL": url, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
        argv = [sys.executable, "-m", "authsvc", "serve", "--worker-of", str(os.getpid())]
        argv += ["--host", settings.host, "--port", str(port)]
        workers = []
        for _ in range(settings.workers):
            workers.append(
                await asyncio.create_subprocess_exec(
                    *argv, env=env, stdin=asyncio.subprocess.DEVNULL, start_new_session=True
                )
            )
        log.info(
            "serving on %s:%d with %d workers (pids %s)",
            settings.host,
            port,
            len(workers),
            " ".join(str(w.pid) for w in workers),
        )
        # A dead worker's counters stay (totals never go back); mark_process_dead drops
        # its live* gauges, should any be added (metrics.SESSIONS_ACTIVE is not one).
        clean = await _watch(
            workers, signals, lambda pid: multiprocess.mark_process_dead(pid, metrics_dir)
        )
    return 0 if clean else 1


async def _watch(
    workers: list[asyncio.subprocess.Process],
    signals: asyncio.Queue,
    exited: Callable[[int], None],
) -> bool:
    """Wait for the workers to exit, calling `exited(pid)` for each; True when all were
    stopped on request and cleanly."""
    loop = asyncio.get_running_loop()
    exits = {asyncio.ensure_future(w.wait()): w for w in workers}
    next_signal = asyncio.ensure_future(signals.get())
    deadline: float | None = None  # set when stopping: then they have SHUTDOWN_GRACE_S
    clean = True

    def stop(sig: int) -> None:
        nonlocal deadline
        if deadline is None:
            deadline = loop.time() + SHUTDOWN_GRACE_S
        for w in exits.values():
            if w.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.send_signal(sig)

    try:
        while exits:
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait(
                {*exits, next_signal}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                log.error(
                    "workers still running %.0f s after SIGTERM: killing them", SHUTDOWN_GRACE_S
                )
                clean = False
                stop(signal.SIGKILL)
                deadline = loop.time() + SHUTDOWN_GRACE_S  # SIGKILL cannot be ignored
                continue
            if next_signal in done:
                name = signal.Signals(next_signal.result()).name
                next_signal = asyncio.ensure_future(signals.get())
                if deadline is None:
                    log.info("%s: stopping the workers gracefully", name)
                    stop(signal.SIGTERM)
                else:
                    log.warning("%s again: killing the workers", name)
                    clean = False
                    stop(signal.SIGKILL)
            for finished in done & exits.keys():
                worker = exits.pop(finished)
                exited(worker.pid)
                status = worker.returncode
                if deadline is None:
                    log.error(
                        "worker %d exited with status %s: stopping the others", worker.pid, status
                    )
                    clean = False
                    stop(signal.SIGTERM)
                elif status not in (0, -signal.SIGTERM):  # -SIGTERM: stopped while starting
                    log.error("worker %d exited with status %s while stopping", worker.pid, status)
                    clean = False
    finally:
        next_signal.cancel()
    return clean


def run_worker(settings: Settings, *, supervisor: int) -> int:
    """One worker: the ordinary app, its listening socket shared with SO_REUSEPORT."""
    from .app import create_app
    from .serving import run_app

    if os.getppid() != supervisor:
        log.error("supervisor %d is gone before this worker started", supervisor)
        return 1
    app = create_app(settings)
    app.cleanup_ctx.append(_exit_with(supervisor))
    run_app(app, host=settings.host, port=settings.port, reuse_port=True)
    return 0


def _exit_with(supervisor: int) -> Callable[[web.Application], AsyncIterator[None]]:
    """Shut down gracefully when the supervisor is gone (killed without a chance to
    forward anything): the worker is reparented, so its parent pid changes."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async def watch() -> None:
            while os.getppid() == supervisor:  # noqa: ASYNC110 - nothing to wait on but a poll
                await asyncio.sleep(PARENT_POLL_S)
            log.warning("supervisor %d is gone: shutting down", supervisor)
            signal.raise_signal(signal.SIGTERM)  # run_app's graceful path

        task = asyncio.ensure_future(watch())
        yield
        task.cancel()

    return ctx
