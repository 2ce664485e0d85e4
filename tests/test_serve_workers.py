"""`authsvc serve --workers N` as a real process tree on a real redis-server: the
workers share the port, serve the game-client flow, finish in-flight requests on
SIGTERM and exit 0; a worker that dies takes the service down with status 1; a bad
setting or a taken port is one line before any worker starts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

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
    proc = _serve(_env(redis_server, BCRYPT_COST="12"), port)
    try:
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
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_dead_worker_stops_the_service_with_status_1(redis_server):
    port = free_port()
    proc = _serve(_env(redis_server, LOG_LEVEL="INFO"), port)
    try:
        workers = set(_wait_for_workers(proc, port, 2))
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        assert proc.wait(timeout=10) == 1
        assert all(_exited(pid) for pid in workers)
        output = proc.stdout.read().decode()
        assert f"worker {victim} exited with status -9: stopping the others" in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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
