"""The commands the README gives a newcomer: `make run` / `make test` (they set
themselves up), `.env` with a generated secret, and `.venv/bin/honcho start` run
exactly as written from a copy of the repository."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from honcho.environ import parse as parse_env

from authsvc.config import Settings

from .helpers import new_user
from .redis_proc import free_port, redis_server_bin

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)  # the environment running the suite: the copies' .venv


def _copy(tmp_path: Path, *names: str) -> Path:
    root = tmp_path / "repo"
    root.mkdir(parents=True)
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, root / name)  # mtimes kept: make compares them
    return root


def _make(root: Path, *args: str) -> subprocess.CompletedProcess:
    # Not the make running the suite's variables (`make test PYTEST_ARGS=-q`).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "PYTEST_ARGS"))}
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_make_run_and_make_test_set_themselves_up_once(tmp_path):
    """`make -n` prints what each would run: on a fresh clone the venv and the install
    first (and the tests' npm packages); once installed, only the command; after
    pyproject.toml changes, the install again."""
    lock = "tests/oidc_provider/package-lock.json"
    root = _copy(tmp_path, "Makefile", "pyproject.toml", ".env.example", lock)
    fresh = _make(root, "-n", "test")
    assert fresh.returncode == 0, fresh.stderr
    assert "-m venv .venv" in fresh.stdout and "pip install -q -e '.[dev]'" in fresh.stdout
    assert "npm ci --prefix tests/oidc_provider" in fresh.stdout
    assert fresh.stdout.rstrip().endswith(".venv/bin/python -m pytest")
    run = _make(root, "-n", "run").stdout
    assert "pip install" in run and "API_JWT_SECRET" in run
    assert run.rstrip().endswith(".venv/bin/honcho run .venv/bin/authsvc serve")

    (root / ".venv" / "bin").mkdir(parents=True)  # as the install leaves it
    (root / ".venv" / ".installed").touch()
    (root / "tests/oidc_provider/node_modules").mkdir()
    (root / "tests/oidc_provider/node_modules/.installed").touch()
    (root / ".env").write_text("API_JWT_SECRET=x\n")
    again = _make(root, "-n", "test").stdout
    assert "pip install" not in again and "-m venv" not in again and "npm" not in again
    assert _make(root, "-n", "run").stdout.strip() == (
        ".venv/bin/honcho run .venv/bin/authsvc serve"
    )

    later = time.time() + 5
    os.utime(root / "pyproject.toml", (later, later))
    assert "pip install -q -e '.[dev]'" in _make(root, "-n", "test").stdout


def test_ci_runs_the_make_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci.splitlines() if not line.lstrip().startswith("#")]
    assert "make test" in commands
    assert "AUTHSVC_TEST_CLUSTER=1 make test PYTEST_ARGS=-q" in commands
    assert not any("pytest" in line and "make" not in line for line in commands)


def test_make_env_generates_a_secret_once_and_git_ignores_it(tmp_path):
    example = parse_env((ROOT / ".env.example").read_text())
    assert example.get("API_JWT_SECRET", "") == ""  # no secret is committed
    root = _copy(tmp_path, "Makefile", ".env.example")
    done = _make(root, ".env")
    assert done.returncode == 0, done.stderr
    env_file = root / ".env"
    secret = parse_env(env_file.read_text())["API_JWT_SECRET"]
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    Settings(jwt_secret=secret)  # accepted as it is
    assert env_file.stat().st_mode & 0o077 == 0  # the owner's only
    first = env_file.read_text()
    assert _make(root, ".env").returncode == 0
    assert env_file.read_text() == first  # never regenerated: sessions survive
    other = _copy(tmp_path / "other", "Makefile", ".env.example")
    assert _make(other, ".env").returncode == 0
    assert parse_env((other / ".env").read_text())["API_JWT_SECRET"] != secret
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", ".env"], check=False)
    assert ignored.returncode == 0, ".env must be git-ignored"


def _readme_block(heading: str) -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(re.findall(r"```sh\n(.*?)```", section, re.S))


def _descendants(pid: int) -> dict[int, str]:
    """Every live process below `pid`, with its command line."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            with contextlib.suppress(OSError):
                found[child] = (Path("/proc") / str(child) / "cmdline").read_bytes().decode()
            todo.append(child)
    return found


def _alive(pid: int, cmdline: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        same = (Path(f"/proc/{pid}/cmdline").read_bytes().decode()) == cmdline
    except OSError:
        return False
    return same and stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_honcho_start_as_the_readme_says(tmp_path):
    """From a copy of the repository: `make setup` (here its .env part: the venv is the
    suite's), then `.venv/bin/honcho start` with .venv/bin NOT on PATH and no secret in
    the environment. register -> login -> GET /characters on the web port, then a
    SIGTERM stops every process it started."""
    block = _readme_block("Run and test")
    assert "make setup" in block and ".venv/bin/honcho start" in block
    root = _copy(tmp_path, "Makefile", ".env.example", "Procfile", "keydb.conf")
    (root / ".venv").symlink_to(VENV)
    assert (VENV / "bin" / "honcho").exists() and (VENV / "bin" / "authsvc").exists()
    assert _make(root, ".env").returncode == 0

    web_port, store_port = free_port(), free_port()
    drop = ("API_JWT_SECRET", "KEYDB_URL", "PORT", "DATA_DIR", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != VENV / "bin"
    )
    env.update(
        WEB_PORT=str(web_port),
        STORE_PORT=str(store_port),
        STORE_SERVER_BIN=redis_server_bin(),  # the suite's server (or keydb-server)
        BCRYPT_COST="4",
    )
    log = tmp_path / "honcho.out"
    with log.open("w") as out:
        honcho = subprocess.Popen(  # noqa: ASYNC220 - it only forks
            [".venv/bin/honcho", "start"],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{web_port}"
    started: dict[int, str] = {}
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            while True:
                assert honcho.poll() is None, log.read_text()
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(base + "/readyz") as resp:
                        if resp.status == 200:
                            break
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.2)
            started = _descendants(honcho.pid)
            user = new_user("honcho")
            async with http.post(base + "/register", json=user) as resp:
                assert resp.status == 201, await resp.text()
            login = {"username": user["username"], "password": user["password"]}
            async with http.post(base + "/login", json=login) as resp:
                assert resp.status == 200, await resp.text()
                token = (await resp.json())["token"]
            auth = {"Authorization": f"Bearer {token}"}
            async with http.get(base + "/characters", headers=auth) as resp:
                assert (resp.status, await resp.json()) == (200, {"characters": []})
    finally:
        honcho.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(honcho.wait, 60)
        finally:
            if honcho.poll() is None:
                os.killpg(honcho.pid, signal.SIGKILL)
    output = log.read_text()
    commands = [cmd.replace("\0", " ") for cmd in started.values()]
    assert any("server" in cmd and f":{store_port}" in cmd for cmd in commands), commands
    assert sum("authsvc serve" in cmd for cmd in commands) >= 2, commands  # + its workers
    # Each stopped on honcho's SIGTERM, itself and cleanly, before honcho exited.
    assert "store.1 stopped (rc=0)" in output and "web.1 stopped (rc=0)" in output, output
    leftover = {pid: cmd for pid, cmd in started.items() if _alive(pid, cmd)}
    assert not leftover, f"still running after honcho stopped: {leftover}\n{output}"
    assert list((root / "data").rglob("appendonly*")), output
