"""`authsvc serve --workers N` as a real process tree on a real redis-server: the
workers share the port, serve the game-client flow, finish in-flight requests on
SIGTERM and exit 0; a worker that dies takes the service down with status 1; a bad
setting or a taken port is one line before any worker starts; /metrics answers for all
the workers, whichever takes the scrape."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from .conftest import SECRET
from .helpers import new_user
from .redis_proc import free_port

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc")


def _env(redis_server, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "API_JWT_SECRET": SECRET,
        "KEYDB_URL": redis_server.url,
        "BCRYPT_COST": "4",
        "HASH_THREADS": "1",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "text",
        # Other tests share the server: their counters must not limit these requests.
        "REGISTER_IP_LIMIT": "1000000",
        "LOGIN_IP_MAX_FAILURES": "1000000",
        **extra,
    }


def _serve(env: dict, port: int, workers: int = 2) -> subprocess.Popen:
    argv = [sys.executable, "-m", "authsvc", "serve", "--workers", str(workers)]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@contextlib.contextmanager
def _serving(env: dict, port: int, workers: int = 2) -> Iterator[subprocess.Popen]:
    """_serve, killed at the end if the test left it running."""
    proc = _serve(env, port, workers)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _listening_pids(port: int, candidates: set[int]) -> dict[int, int]:
    """pid -> number of sockets it holds listening on 127.0.0.1:port."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1] == f"0100007F:{port:04X}" and parts[3] == "0A":  # LISTEN
            inodes.add(parts[9])
    holders: dict[int, int] = {}
    for pid in candidates:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        n = sum(link.startswith("socket:[") and link[8:-1] in inodes for link in links)
        if n:
            holders[pid] = n
    return holders


def _request(base: str, method: str, path: str, body=None, token: str = "") -> tuple[int, dict]:
    req = urllib.request.Request(base + path, method=method)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, data=data, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _wait_for_workers(proc: subprocess.Popen, port: int, n: int) -> dict[int, int]:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.stdout.read().decode()
        holders = _listening_pids(port, _children(proc.pid))
        if len(holders) == n:
            return holders
        assert time.monotonic() < deadline, f"{len(holders)} of {n} workers listen"
        time.sleep(0.05)


def _exited(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_two_workers_share_the_port_serve_and_stop_cleanly(redis_server):
    port = free_port()
    # A bcrypt cost high enough that a registration is still running when SIGTERM lands.
    with _serving(_env(redis_server, BCRYPT_COST="12"), port) as proc:
        holders = _wait_for_workers(proc, port, 2)
        workers = set(holders)
        assert workers == _children(proc.pid), "only the workers are children"
        assert list(holders.values()) == [1, 1]  # one SO_REUSEPORT socket each
        assert proc.pid not in _listening_pids(port, {proc.pid})  # the supervisor does not
        base = f"http://127.0.0.1:{port}"

        user = new_user()
        status, account = _request(base, "POST", "/register", user)
        assert status == 201, account
        creds = {"username": user["username"], "password": user["password"]}
        status, login = _request(base, "POST", "/login", creds)
        assert status == 200, login
        token = login["token"]
        character = {"name": "Aria", "description": "a ranger", "sex": 1, "race": 2}
        assert _request(base, "POST", "/characters", character, token)[0] == 200
        # Fresh connections land on either worker; each verifies the token by itself.
        for _ in range(6):
            status, listing = _request(base, "GET", "/characters", token=token)
            assert status == 200 and [c["name"] for c in listing["characters"]] == ["Aria"]

        # SIGTERM while a registration (a cost-12 hash) is in flight: it still answers.
        answer: dict = {}
        late = threading.Thread(
            target=lambda: answer.update(r=_request(base, "POST", "/register", new_user()))
        )
        late.start()
        time.sleep(0.15)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5
        late.join(5)
        assert answer["r"][0] == 201, answer
        assert all(_exited(pid) for pid in workers)
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), 1):
            pass
        output = proc.stdout.read().decode()
        assert "Traceback" not in output, output


def test_a_dead_worker_stops_the_service_with_status_1(redis_server):
    port = free_port()
    with _serving(_env(redis_server, LOG_LEVEL="INFO"), port) as proc:
        workers = set(_wait_for_workers(proc, port, 2))
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        assert proc.wait(timeout=10) == 1
        assert all(_exited(pid) for pid in workers)
        output = proc.stdout.read().decode()
        assert f"worker {victim} exited with status -9: stopping the others" in output


def test_bad_settings_and_a_taken_port_are_one_line_before_any_worker(redis_server):
    port = free_port()
    bad = _serve(_env(redis_server, API_JWT_SECRET="short"), port)
    assert bad.wait(timeout=20) == 2
    lines = bad.stdout.read().decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("authsvc: API_JWT_SECRET must be"), lines

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        proc = _serve(_env(redis_server), port)
        assert proc.wait(timeout=20) == 1
        lines = proc.stdout.read().decode().splitlines()
        assert lines == [f"authsvc: 127.0.0.1:{port} is already in use"], lines


REQUESTS = "authsvc_http_requests_total"


def _metrics_dir_of(workers: set[int]) -> Path:
    """The PROMETHEUS_MULTIPROC_DIR the supervisor handed its workers."""
    dirs = set()
    for pid in workers:
        for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            name, _, value = entry.partition(b"=")
            if name == b"PROMETHEUS_MULTIPROC_DIR":
                dirs.add(value.decode())
    assert len(dirs) == 1, dirs
    return Path(dirs.pop())


def _answered(directory: Path, workers: set[int], route: str) -> dict[int, float]:
    """pid -> GET requests to `route` that worker answered, read from its own file (a
    request is counted before its response is sent)."""
    out = {}
    for pid in workers:
        families = MultiProcessCollector.merge([str(directory / f"counter_{pid}.db")])
        out[pid] = sum(
            s.value
            for family in families
            for s in family.samples
            if s.name == REQUESTS and s.labels["method"] == "GET" and s.labels["route"] == route
        )
    return out


def _scrape(base: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _healthz_count(samples) -> float | None:
    labels = (("method", "GET"), ("route", "/healthz"), ("status", "200"))
    return samples.get((REQUESTS, labels))


def _stale_counter_file(path: Path, value: float) -> None:
    """A counter file as a previous run's worker leaves it: `value` GET /healthz."""
    stale = MmapedDict(str(path))
    labels = ("method", "route", "status")
    key = mmap_key("authsvc_http_requests", REQUESTS, labels, ("GET", "/healthz", "200"), "x")
    stale.write_value(key, value, 0.0)
    stale.close()


def test_metrics_of_two_workers_add_up_whichever_answers_the_scrape(redis_server):
    port = free_port()
    # One session count per worker, at its first scrape: the rest show the latest count.
    with _serving(_env(redis_server, METRICS_SESSION_SCAN_INTERVAL="3600"), port) as proc:
        workers = set(_wait_for_workers(proc, port, 2))
        directory = _metrics_dir_of(workers)
        assert directory.name.startswith("authsvc-metrics-") and directory.is_dir()
        assert directory.stat().st_mode & 0o077 == 0, "private to the service's user"
        base = f"http://127.0.0.1:{port}"
        user = new_user()
        assert _request(base, "POST", "/register", user)[0] == 201
        creds = {"username": user["username"], "password": user["password"]}
        assert _request(base, "POST", "/login", creds)[0] == 200  # a live session

        sent = 0  # each on a fresh connection, which the kernel gives either worker
        while sent < 10 or min(_answered(directory, workers, "/healthz").values()) == 0:
            assert sent < 200, "every connection went to one worker"
            assert _request(base, "GET", "/healthz")[0] == 200
            sent += 1

        scrapes, sessions = 0, None
        while scrapes < 6 or min(_answered(directory, workers, "/metrics").values()) == 0:
            assert scrapes < 200, "every scrape went to one worker"
            samples = _scrape(base)
            scrapes += 1
            assert _healthz_count(samples) == sent, scrapes
            count = samples.get(
                (
                    "authsvc_http_request_duration_seconds_count",
                    (("method", "GET"), ("route", "/healthz")),
                )
            )
            assert count == sent
            live = samples.get(("authsvc_sessions_active", ()))
            if sessions is None:
                sessions = live  # once any worker has counted, every scrape shows it
            else:
                assert live == sessions, (live, sessions)
        assert sessions is not None and sessions >= 1
        assert not any(name.startswith("process_") for name, _ in samples)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not directory.exists(), "the private metrics directory is removed at exit"
        output = proc.stdout.read().decode()
        assert "Traceback" not in output, output


def test_the_operators_metrics_directory_is_emptied_of_a_previous_run(redis_server, tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    _stale_counter_file(directory / "counter_1.db", 1000)
    (directory / "notes.txt").write_text("not a metrics file")
    port = free_port()
    with _serving(_env(redis_server, PROMETHEUS_MULTIPROC_DIR=str(directory)), port) as proc:
        workers = set(_wait_for_workers(proc, port, 2))
        assert _metrics_dir_of(workers) == directory
        assert not (directory / "counter_1.db").exists()
        base = f"http://127.0.0.1:{port}"
        for _ in range(3):
            assert _request(base, "GET", "/healthz")[0] == 200
        assert _healthz_count(_scrape(base)) == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        # The operator's directory stays, with this run's files until the next start.
        assert (directory / "notes.txt").exists()
        assert {f"counter_{pid}.db" for pid in workers} <= {p.name for p in directory.iterdir()}


def test_one_process_keeps_its_metrics_in_memory(redis_server, tmp_path):
    _stale_counter_file(tmp_path / "counter_1.db", 1000)
    port = free_port()
    env = _env(redis_server, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    with _serving(env, port, workers=1) as proc:
        deadline = time.monotonic() + 30
        while not _listening_pids(port, {proc.pid}):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        for _ in range(3):
            assert _request(base, "GET", "/healthz")[0] == 200
        samples = _scrape(base)
        assert _healthz_count(samples) == 3
        assert any(name == "process_cpu_seconds_total" for name, _ in samples)
        assert {p.name for p in tmp_path.iterdir()} == {"counter_1.db"}  # neither read nor written
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_a_metrics_directory_with_foreign_files_is_one_line_before_any_worker(
    redis_server, tmp_path
):
    (tmp_path / "app.db").write_text("someone's database")
    proc = _serve(_env(redis_server, PROMETHEUS_MULTIPROC_DIR=str(tmp_path)), free_port())
    assert proc.wait(timeout=20) == 1
    lines = proc.stdout.read().decode().splitlines()
    assert len(lines) == 1 and "holds app.db, not prometheus-client's" in lines[0], lines
    assert (tmp_path / "app.db").exists()
