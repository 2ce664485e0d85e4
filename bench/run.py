"""authsvc benchmark: ratios measured side by side in one run on one machine.

    .venv/bin/python bench/run.py [--seconds 5] [--rounds 3] [--cost 12]
        [--only read,refresh,login,keycloak,introspect,workers,memory] [--accounts 100000]

Starts its own redis-server (free port, temp dir), the service and a bare aiohttp
"hello" app, each pinned to core 0, and loads them from core 1 with wrk (Debian's
package; `apt-get install wrk`) or, without it, a Python load generator. Rounds
alternate between the two targets, and medians are reported, because the machine is
shared and noisy: read the ratios, not the absolute numbers.

Reports:
- authenticated GET /characters rps as a ratio of the bare endpoint (target >= 0.25),
  and the cost of the per-request session check: the same request with a session-bound
  token against a stateless one (no `sid`), as a ratio;
- refresh-token rotations per second on one core (target >= 2000/s);
- login throughput as a ratio of raw bcrypt.checkpw on the same cores (target >= 0.9);
- /healthz p99 while logins saturate the hash pool (target < 50 ms);
- GET /api/v1/users/me with a Keycloak RS256 token (the local issuer of
  tests/keycloak_issuer.py, served from this process: discovery and JWKS) as a ratio
  of the bare endpoint, beside the same route with a local token and with the token
  cache off;
- introspection rps (POST /api/v1/tokens/introspect with an API key holding
  tokens:introspect, its owner granted the `service` role) and its ratio to bare;
- `serve --workers 2` against `--workers 1`: authenticated GET /characters, both
  unpinned, wrk and the store still on core 1, so on a 2-core machine the second
  worker shares its core with them (target >= 1.8 on a machine with cores to spare);
- the store's memory per account (target <= 600 bytes): --accounts accounts with one
  character and one favorite each, made through the service classes (bench/memory.py)
  on a redis-server of their own, with a breakdown by key family.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import bcrypt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from aiohttp import web  # noqa: E402

from bench import memory  # noqa: E402
from tests.keycloak_issuer import CLIENT, Issuer  # noqa: E402
from tests.redis_proc import RedisProcess, free_port  # noqa: E402

SECTIONS = ("read", "refresh", "login", "keycloak", "introspect", "workers", "memory")

HELLO_APP = """
import sys
from aiohttp import web
async def hello(request):
    return web.json_response({"hello": "world"})
app = web.Application()
app.router.add_get("/hello", hello)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

HAS_TASKSET = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def pinned(core: int | None, argv: list[str]) -> list[str]:
    if core is None or not HAS_TASKSET:
        return argv
    return ["taskset", "-c", str(core), *argv]


async def wait_http(url: str, wait: float = 20.0) -> None:
    deadline = time.monotonic() + wait
    async with aiohttp.ClientSession() as s:
        while True:
            try:
                async with s.get(url) as r:
                    if r.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up")
            await asyncio.sleep(0.1)


SECRET = secrets.token_hex(32)


def stateless_token(user_id: str, username: str) -> str:
    """A valid token of the service without a session id: the stateless path."""
    import jwt

    from authsvc.identity.tokens import key_id

    now = int(time.time())
    claims = {
        "sub": user_id,
        "preferred_username": username,
        "iss": "authsvc",
        "aud": "authsvc",
        "iat": now,
        "exp": now + 3600,
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": key_id(SECRET)})


def service_env(store_url: str, cost: int, **extra_env: str) -> dict[str, str]:
    return {
        **os.environ,
        "API_JWT_SECRET": SECRET,
        "KEYDB_URL": store_url,
        "BCRYPT_COST": str(cost),
        "LOG_LEVEL": "WARNING",
        # Off unless asked: the read section measures its cost on its own service.
        "ACCESS_LOG": "false",
        **extra_env,
    }


def start_service(
    port: int,
    store_url: str,
    core: int | None,
    cost: int,
    threads: int,
    workers: int = 1,
    quiet: bool = False,
    **extra_env: str,
):
    env = service_env(store_url, cost, HASH_THREADS=str(threads), **extra_env)
    argv = [sys.executable, "-m", "authsvc", "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers)]
    stderr = subprocess.DEVNULL if quiet else None  # the access log, when it is on
    return subprocess.Popen(pinned(core, argv), env=env, cwd=ROOT, stderr=stderr)


def listening_sockets(port: int) -> int:
    """Sockets listening on 127.0.0.1:port (with SO_REUSEPORT, one per worker)."""
    needle = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        return sum(1 for line in f if line.split()[1:2] == [needle] and line.split()[3] == "0A")


def start_hello(port: int, core: int | None):
    return subprocess.Popen(pinned(core, [sys.executable, "-c", HELLO_APP, str(port)]))


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


# -- load generators -------------------------------------------------------------------

WRK_LATENCY = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def wrk(
    url: str,
    seconds: float,
    *,
    connections: int,
    headers: dict[str, str],
    script: str | None = None,
) -> dict:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--latency"]
    for k, v in headers.items():
        argv += ["-H", f"{k}: {v}"]
    if script:
        argv += ["-s", script]
    out = subprocess.run(pinned(1, [*argv, url]), capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    m = WRK_LATENCY.search(out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    p99 = float(m.group(1)) * scale[m.group(2)] if m else float("nan")
    return {"rps": rps, "p99_ms": p99, "errors": int(non2xx.group(1)) if non2xx else 0}


async def pyload(
    url: str,
    seconds: float,
    *,
    connections: int,
    headers: dict[str, str],
    method: str = "GET",
    body: dict | None = None,
) -> dict:
    done = 0
    errors = 0
    lat: list[float] = []
    stop_at = time.monotonic() + seconds

    async def worker(s: aiohttp.ClientSession) -> None:
        nonlocal done, errors
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            async with s.request(method, url, json=body, headers=headers) as r:
                await r.read()
                errors += r.status >= 300
            lat.append((time.perf_counter() - t0) * 1000)
            done += 1

    conn = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=conn) as s:
        await asyncio.gather(*(worker(s) for _ in range(connections)))
    lat.sort()
    return {
        "rps": done / seconds,
        "p99_ms": lat[int(len(lat) * 0.99)] if lat else 0.0,
        "errors": errors,
    }


async def load(
    url: str, seconds: float, *, connections: int, headers: dict[str, str], post: dict | None = None
) -> dict:
    if shutil.which("wrk"):
        script = None
        if post is not None:
            fd, script = tempfile.mkstemp(suffix=".lua")
            body = json.dumps(post).replace("\\", "\\\\").replace('"', '\\"')
            os.write(
                fd,
                f'wrk.method = "POST"\nwrk.body = "{body}"\n'
                'wrk.headers["Content-Type"] = "application/json"\n'.encode(),
            )
            os.close(fd)
        try:
            return await asyncio.to_thread(
                wrk, url, seconds, connections=connections, headers=headers, script=script
            )
        finally:
            if script:
                os.unlink(script)
    return await pyload(
        url,
        seconds,
        connections=connections,
        headers=headers,
        method="POST" if post else "GET",
        body=post,
    )


# -- the measurements --------------------------------------------------------------------


async def seed_user(base: str) -> tuple[dict, str]:
    user, login = await seed_login(base)
    return user, login["token"]


async def seed_login(base: str) -> tuple[dict, dict]:
    user = {
        "username": "bench_" + secrets.token_hex(4),
        "email": f"{secrets.token_hex(4)}@b.io",
        "password": "benchmark password",
    }
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base}/register", json=user) as r:
            assert r.status == 201, await r.text()
        async with s.post(
            f"{base}/login", json={"username": user["username"], "password": user["password"]}
        ) as r:
            login = await r.json()
            token = login["token"]
            user["id"] = login["refresh_token"].split(".")[0]
        for i in range(3):  # a realistic list: three characters
            async with s.post(
                f"{base}/characters",
                headers={"Authorization": f"Bearer {token}"},
                json={"name": f"hero{i}", "description": "d" * 40, "sex": 1, "race": 2},
            ) as r:
                assert r.status == 200
    return user, login


async def authenticated_read(args, store_url: str) -> dict:
    svc_port, hello_port, logged_port = free_port(), free_port(), free_port()
    svc = start_service(svc_port, store_url, core=0, cost=4, threads=1)
    # The same service with its access log on (written to /dev/null: the cost is making
    # and formatting the line, as with a log shipper reading stderr).
    logged = start_service(
        logged_port, store_url, core=0, cost=4, threads=1, quiet=True, ACCESS_LOG="true"
    )
    hello = start_hello(hello_port, core=0)
    hello_url = f"http://127.0.0.1:{hello_port}/hello"
    try:
        base = f"http://127.0.0.1:{svc_port}"
        logged_base = f"http://127.0.0.1:{logged_port}"
        await wait_http(f"{base}/healthz")
        await wait_http(f"{logged_base}/healthz")
        await wait_http(hello_url)
        user, token = await seed_user(base)
        auth = {"Authorization": f"Bearer {token}"}
        stateless = {"Authorization": f"Bearer {stateless_token(user['id'], user['username'])}"}
        conns = args.connections
        await load(f"{base}/characters", 1, connections=conns, headers=auth)  # warm-up
        await load(hello_url, 1, connections=conns, headers={})
        await load(f"{logged_base}/characters", 1, connections=conns, headers=auth)
        bare, chars, nosid, with_log = [], [], [], []
        for _ in range(args.rounds):
            bare.append(await load(hello_url, args.seconds, connections=conns, headers={}))
            chars.append(
                await load(f"{base}/characters", args.seconds, connections=conns, headers=auth)
            )
            nosid.append(
                await load(f"{base}/characters", args.seconds, connections=conns, headers=stateless)
            )
            with_log.append(
                await load(
                    f"{logged_base}/characters", args.seconds, connections=conns, headers=auth
                )
            )
        assert all(r["errors"] == 0 for r in chars + nosid + with_log), (chars, nosid)
    finally:
        stop(svc)
        stop(logged)
        stop(hello)

    def med(rs: list[dict], k: str) -> float:
        return statistics.median(r[k] for r in rs)

    return {
        "bare_rps": med(bare, "rps"),
        "bare_p99_ms": med(bare, "p99_ms"),
        "characters_rps": med(chars, "rps"),
        "characters_p99_ms": med(chars, "p99_ms"),
        "ratio": med(chars, "rps") / med(bare, "rps"),
        "ratios_per_round": [c["rps"] / b["rps"] for b, c in zip(bare, chars, strict=True)],
        "stateless_rps": med(nosid, "rps"),
        "session_check_ratio": med(chars, "rps") / med(nosid, "rps"),
        "access_log_rps": med(with_log, "rps"),
        "access_log_ratio": med(with_log, "rps") / med(chars, "rps"),
    }


REFRESH_LUA = """
local n = 0
function setup(thread)
  n = n + 1
  thread:set("slot", n)
end
function init(args)
  token = args[slot]
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  return wrk.format(nil, nil, nil, '{"refresh_token":"' .. token .. '"}')
end
function response(status, headers, body)
  local t = body:match('"refresh_token":"([^"]+)"')
  if t then token = t end
end
"""


async def refresh_rate(args, store_url: str) -> dict:
    """Rotations per second, one service process on one core, alternating with the bare
    endpoint on the same core. Each wrk thread owns one connection and one session and
    always presents the successor it was just given, so every request is a real
    rotation (never the reuse window)."""
    chains = 8
    port, hello_port = free_port(), free_port()
    svc = start_service(port, store_url, core=0, cost=4, threads=1, MAX_SESSIONS_PER_ACCOUNT="100")
    hello = start_hello(hello_port, core=0)
    hello_url = f"http://127.0.0.1:{hello_port}/hello"
    fd, script = tempfile.mkstemp(suffix=".lua")
    os.write(fd, REFRESH_LUA.encode())
    os.close(fd)
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_http(f"{base}/healthz")
        await wait_http(hello_url)
        user, _ = await seed_login(base)
        rates, bare = [], []
        for _ in range(args.rounds):
            bare.append(
                (await load(hello_url, args.seconds, connections=args.connections, headers={}))[
                    "rps"
                ]
            )
            tokens = []
            async with aiohttp.ClientSession() as s:
                for _ in range(chains):
                    body = {"username": user["username"], "password": user["password"]}
                    async with s.post(f"{base}/login", json=body) as r:
                        tokens.append((await r.json())["refresh_token"])
            argv = [
                "wrk",
                f"-t{chains}",
                f"-c{chains}",
                f"-d{round(args.seconds)}s",
                "-s",
                script,
                f"{base}/api/v1/auth/refresh",
                "--",
                *tokens,
            ]
            done = await asyncio.to_thread(
                subprocess.run, pinned(1, argv), capture_output=True, text=True, check=True
            )
            assert "Non-2xx" not in done.stdout, done.stdout
            rates.append(float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1)))
    finally:
        os.unlink(script)
        stop(svc)
        stop(hello)
    return {
        "refresh_per_s": statistics.median(rates),
        "rounds": rates,
        "bare_rps": statistics.median(bare),
        "ratio": statistics.median(rates) / statistics.median(bare),
    }


def raw_bcrypt_rate(cost: int, threads: int, seconds: float) -> float:
    hashed = bcrypt.hashpw(b"benchmark password", bcrypt.gensalt(cost))
    count = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def work() -> None:
        nonlocal count
        while time.monotonic() < stop_at:
            bcrypt.checkpw(b"benchmark password", hashed)
            with lock:
                count += 1

    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(work) for _ in range(threads)]:
            f.result()
    return count / seconds


async def healthz_probe(url: str, seconds: float) -> list[float]:
    lat = []
    stop_at = time.monotonic() + seconds
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            async with s.get(url) as r:
                await r.read()
            lat.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.02)
    return sorted(lat)


async def login_throughput(args, store_url: str) -> dict:
    threads = os.cpu_count() or 2
    port = free_port()
    svc = start_service(port, store_url, core=None, cost=args.cost, threads=threads)
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_http(f"{base}/healthz")
        user, _ = await seed_user(base)
        body = {"username": user["username"], "password": user["password"]}
        raw, served, p99s = [], [], []
        for _ in range(args.rounds):
            raw.append(await asyncio.to_thread(raw_bcrypt_rate, args.cost, threads, args.seconds))
            probe = asyncio.ensure_future(healthz_probe(f"{base}/healthz", args.seconds))
            res = await pyload(
                f"{base}/login",
                args.seconds,
                connections=threads * 4,
                headers={},
                method="POST",
                body=body,
            )
            lat = await probe
            assert res["errors"] == 0, res
            served.append(res["rps"])
            p99s.append(lat[int(len(lat) * 0.99)])
    finally:
        stop(svc)
    return {
        "cost": args.cost,
        "threads": threads,
        "raw_checkpw_per_s": statistics.median(raw),
        "logins_per_s": statistics.median(served),
        "ratio": statistics.median(served) / statistics.median(raw),
        "healthz_p99_ms_under_login_load": statistics.median(p99s),
    }


def med(rs: list[dict], k: str = "rps") -> float:
    return statistics.median(r[k] for r in rs)


def paired(over: list[dict], under: list[dict], k: str = "rps") -> float:
    """The median of the ratios measured side by side, round by round: steadier on a
    noisy machine than a ratio of medians taken from different rounds."""
    return statistics.median(o[k] / u[k] for o, u in zip(over, under, strict=True))


async def start_issuer() -> tuple[Issuer, web.AppRunner]:
    """The local Keycloak stand-in, served from this process's loop (free while wrk
    runs in a thread): each service process fetches discovery and JWKS once."""
    issuer = Issuer()
    runner = web.AppRunner(issuer.app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    issuer.base = f"http://127.0.0.1:{port}"
    return issuer, runner


async def get_ok(url: str, headers: dict[str, str]) -> dict:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
        assert r.status == 200, (url, r.status, await r.text())
        return await r.json()


async def keycloak_read(args, store_url: str) -> dict:
    """GET /api/v1/users/me with a Keycloak RS256 token, alternating with the bare
    endpoint and the same route with a local token, all on core 0; and once more on a
    service with TOKEN_CACHE_SIZE=0, where every request verifies the RS256 signature
    (and syncs the users record) again."""
    issuer, runner = await start_issuer()
    kc_env = {"KEYCLOAK_ISSUER": issuer.issuer, "KEYCLOAK_CLIENT_ID": CLIENT}
    port, nocache_port, hello_port = free_port(), free_port(), free_port()
    svc = start_service(port, store_url, core=0, cost=4, threads=1, **kc_env)
    nocache = start_service(
        nocache_port, store_url, core=0, cost=4, threads=1, TOKEN_CACHE_SIZE="0", **kc_env
    )
    hello = start_hello(hello_port, core=0)
    hello_url = f"http://127.0.0.1:{hello_port}/hello"
    try:
        base, nocache_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{nocache_port}"
        for url in (f"{base}/healthz", f"{nocache_base}/healthz", hello_url):
            await wait_http(url)
        _, token = await seed_user(base)
        local = {"Authorization": f"Bearer {token}"}
        kc_token = issuer.token(
            sub=str(uuid.uuid4()),
            exp=int(time.time()) + 3600,
            preferred_username="kc_bench",
            email="kc_bench@example.com",
        )
        kc = {"Authorization": f"Bearer {kc_token}"}
        me, nocache_me = f"{base}/api/v1/users/me", f"{nocache_base}/api/v1/users/me"
        assert (await get_ok(me, kc))["kind"] == "keycloak"
        await get_ok(me, local)
        await get_ok(nocache_me, kc)
        conns = args.connections
        for url, headers in ((hello_url, {}), (me, local), (me, kc), (nocache_me, kc)):
            await load(url, 1, connections=conns, headers=headers)  # warm-up
        bare, local_rs, kc_rs, nocache_rs = [], [], [], []
        for _ in range(args.rounds):
            bare.append(await load(hello_url, args.seconds, connections=conns, headers={}))
            local_rs.append(await load(me, args.seconds, connections=conns, headers=local))
            kc_rs.append(await load(me, args.seconds, connections=conns, headers=kc))
            nocache_rs.append(await load(nocache_me, args.seconds, connections=conns, headers=kc))
        assert all(r["errors"] == 0 for r in local_rs + kc_rs + nocache_rs), (kc_rs, nocache_rs)
    finally:
        stop(svc)
        stop(nocache)
        stop(hello)
        await runner.cleanup()
    return {
        "bare_rps": med(bare),
        "local_rps": med(local_rs),
        "local_ratio": paired(local_rs, bare),
        "keycloak_rps": med(kc_rs),
        "keycloak_p99_ms": med(kc_rs, "p99_ms"),
        "ratio": paired(kc_rs, bare),
        "ratios_per_round": [k["rps"] / b["rps"] for b, k in zip(bare, kc_rs, strict=True)],
        "keycloak_nocache_rps": med(nocache_rs),
        "nocache_ratio": paired(nocache_rs, bare),
        "jwks_fetches": issuer.jwks_hits,
    }


async def post_ok(s: aiohttp.ClientSession, url: str, body: dict, **headers: str) -> dict:
    async with s.post(url, json=body, headers=headers) as r:
        assert r.status in (200, 201), (url, r.status, await r.text())
        return await r.json()


async def introspection(args, store_url: str) -> dict:
    """POST /api/v1/tokens/introspect {token} with `X-API-Key`, alternating with the
    bare endpoint on core 0. The key belongs to an account an admin granted the
    `service` role, and is scoped to tokens:introspect; the token is a live user's.
    APIKEY_RATE_LIMIT is lifted so the per-key limit (still counted) never answers 429."""
    port, hello_port = free_port(), free_port()
    admin = {
        "username": "bench_admin_" + secrets.token_hex(3),
        "email": f"admin_{secrets.token_hex(3)}@b.io",
        "password": "benchmark password",
    }
    argv = [sys.executable, "-m", "authsvc", "create-admin"]
    argv += ["--username", admin["username"], "--email", admin["email"]]
    made = await asyncio.to_thread(
        subprocess.run,
        argv,
        input=admin["password"] + "\n",
        env=service_env(store_url, 4),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    svc = start_service(port, store_url, core=0, cost=4, threads=1, APIKEY_RATE_LIMIT="1000000")
    hello = start_hello(hello_port, core=0)
    hello_url = f"http://127.0.0.1:{hello_port}/hello"
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_http(f"{base}/healthz")
        await wait_http(hello_url)
        _, token = await seed_user(base)
        service_user, service_login = await seed_login(base)
        async with aiohttp.ClientSession() as s:
            creds = {"username": admin["username"], "password": admin["password"]}
            admin_token = (await post_ok(s, f"{base}/login", creds))["token"]
            await post_ok(
                s,
                f"{base}/api/v1/admin/users/{service_user['id']}/roles",
                {"role": "service"},
                Authorization=f"Bearer {admin_token}",
            )
            key = await post_ok(
                s,
                f"{base}/api/v1/users/me/api-keys",
                {"name": "bench", "scopes": ["tokens:introspect"]},
                Authorization=f"Bearer {service_login['token']}",
            )
            url = f"{base}/api/v1/tokens/introspect"
            answer = await post_ok(s, url, {"token": token}, **{"X-API-Key": key["key"]})
            assert answer["active"] is True, answer
        headers = {"X-API-Key": key["key"]}
        conns = args.connections
        await load(url, 1, connections=conns, headers=headers, post={"token": token})
        await load(hello_url, 1, connections=conns, headers={})
        bare, intro = [], []
        for _ in range(args.rounds):
            bare.append(await load(hello_url, args.seconds, connections=conns, headers={}))
            intro.append(
                await load(
                    url, args.seconds, connections=conns, headers=headers, post={"token": token}
                )
            )
        assert all(r["errors"] == 0 for r in intro), intro
    finally:
        stop(svc)
        stop(hello)
    return {
        "bare_rps": med(bare),
        "introspect_rps": med(intro),
        "introspect_p99_ms": med(intro, "p99_ms"),
        "ratio": paired(intro, bare),
        "ratios_per_round": [i["rps"] / b["rps"] for b, i in zip(bare, intro, strict=True)],
    }


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children so far: the service, or
    the supervisor and its workers."""
    procs = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                procs.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    ticks = 0
    for p in procs:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


async def load_measured(proc: subprocess.Popen, url: str, seconds: float, **kw) -> dict:
    """load(), plus how many cores the service's processes kept busy meanwhile."""
    before = tree_cpu_seconds(proc.pid)
    t0 = time.monotonic()
    result = await load(url, seconds, **kw)
    result["service_cores"] = (tree_cpu_seconds(proc.pid) - before) / (time.monotonic() - t0)
    return result


async def wait_listeners(port: int, n: int, wait: float = 30.0) -> None:
    deadline = time.monotonic() + wait
    while listening_sockets(port) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{n} workers did not listen on {port}")
        await asyncio.sleep(0.05)


async def workers_scaling(args, store_url: str) -> dict:
    """Authenticated GET /characters on `serve --workers 1` and `--workers 2`, in
    alternating rounds. Neither is pinned; wrk and the store stay pinned to core 1, so
    on a 2-core machine the second worker competes with them for that core."""
    one_port, two_port = free_port(), free_port()
    one = start_service(one_port, store_url, core=None, cost=4, threads=1, workers=1)
    two = start_service(two_port, store_url, core=None, cost=4, threads=1, workers=2)
    try:
        await wait_http(f"http://127.0.0.1:{one_port}/healthz")
        await wait_listeners(two_port, 2)  # both, or wrk's connections all go to one
        await wait_http(f"http://127.0.0.1:{two_port}/healthz")
        _, token = await seed_user(f"http://127.0.0.1:{one_port}")
        auth = {"Authorization": f"Bearer {token}"}
        urls = [f"http://127.0.0.1:{p}/characters" for p in (one_port, two_port)]
        conns = args.connections
        for url in urls:
            await load(url, 1, connections=conns, headers=auth)
        ones, twos = [], []
        for _ in range(args.rounds):
            for proc, url, out in ((one, urls[0], ones), (two, urls[1], twos)):
                out.append(
                    await load_measured(proc, url, args.seconds, connections=conns, headers=auth)
                )
        assert all(r["errors"] == 0 for r in ones + twos), (ones, twos)
    finally:
        stop(one)
        stop(two)
    return {
        "cores": os.cpu_count(),
        "one_rps": med(ones),
        "two_rps": med(twos),
        "ratio": paired(twos, ones),
        "ratio_of_medians": med(twos) / med(ones),
        "ratios_per_round": [t["rps"] / o["rps"] for o, t in zip(ones, twos, strict=True)],
        "one_cores": med(ones, "service_cores"),
        "two_cores": med(twos, "service_cores"),
        "one_rps_per_core": statistics.median(r["rps"] / r["service_cores"] for r in ones),
        "two_rps_per_core": statistics.median(r["rps"] / r["service_cores"] for r in twos),
        "per_core_ratio": statistics.median(
            (t["rps"] / t["service_cores"]) / (o["rps"] / o["service_cores"])
            for o, t in zip(ones, twos, strict=True)
        ),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--cost", type=int, default=12, help="bcrypt cost for the login part")
    parser.add_argument(
        "--only",
        type=sections,
        default=SECTIONS,
        metavar="SECTION[,SECTION]",
        help=f"run only these sections, of: {','.join(SECTIONS)}",
    )
    parser.add_argument(
        "--accounts", type=int, default=100_000, help="accounts loaded for the memory part"
    )
    parser.add_argument(
        "--load-concurrency",
        type=int,
        default=32,
        help="memory part: accounts in flight per loader process (one process per core)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()
    started = time.monotonic()

    with tempfile.TemporaryDirectory() as tmp:
        store = RedisProcess(Path(tmp), extra=["--save", "", "--appendonly", "no"]).start()
        if HAS_TASKSET:  # the store lives with the load generator, off the service's core
            subprocess.run(  # noqa: ASYNC221 - once, before any load
                ["taskset", "-p", "-c", "1", str(store.proc.pid)], check=True, capture_output=True
            )
        try:
            steal_before = cpu_steal()
            results: dict = {
                "load_generator": "wrk" if shutil.which("wrk") else "python",
                "pinned": HAS_TASKSET,
            }
            runs = {
                "read": authenticated_read,
                "refresh": refresh_rate,
                "login": login_throughput,
                "keycloak": keycloak_read,
                "introspect": introspection,
                "workers": workers_scaling,
            }
            for name in args.only:
                if name == "refresh" and not shutil.which("wrk"):
                    continue  # its rotation chains are a wrk script
                t0 = time.monotonic()
                if name == "memory":
                    results[name] = await memory.measure(
                        accounts=args.accounts,
                        processes=min(2, os.cpu_count() or 1),
                        concurrency=args.load_concurrency,
                        cost=4,
                    )
                else:
                    results[name] = await runs[name](args, store.url)
                results[name]["seconds"] = round(time.monotonic() - t0)
            steal, total = cpu_steal()
            results["cpu_steal_pct"] = round(
                100 * (steal - steal_before[0]) / max(1, total - steal_before[1]), 1
            )
        finally:
            store.stop()
    results["seconds"] = round(time.monotonic() - started)
    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


def sections(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [c for c in chosen if c not in SECTIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown section {', '.join(unknown)}; choose from {','.join(SECTIONS)}"
        )
    return tuple(name for name in SECTIONS if name in chosen)  # in the usual order


def cpu_steal() -> tuple[int, int]:
    """(steal ticks, all ticks) so far, from /proc/stat: how much CPU the hypervisor
    took from this machine, which says how far to trust absolute numbers."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return values[7], sum(values)


def report(r: dict) -> None:
    print(
        f"\nload generator: {r['load_generator']}; service and bare app pinned to core 0: "
        f"{r['pinned']}"
    )
    print(f"CPU time taken by the hypervisor (steal) during the run: {r['cpu_steal_pct']}%")
    print("| measurement | value | target |")
    print("|---|---|---|")
    if "read" in r:
        x = r["read"]
        print(
            f"| bare aiohttp GET /hello | {x['bare_rps']:.0f} rps, p99 "
            f"{x['bare_p99_ms']:.1f} ms | |"
        )
        print(
            f"| authenticated GET /characters | {x['characters_rps']:.0f} rps, p99 "
            f"{x['characters_p99_ms']:.1f} ms | |"
        )
        rounds = ", ".join(f"{v:.2f}" for v in x["ratios_per_round"])
        print(f"| **read ratio** (median; rounds {rounds}) | **{x['ratio']:.2f}** | >= 0.25 |")
        print(f"| same, stateless token (no session check) | {x['stateless_rps']:.0f} rps | |")
        print(
            f"| session check cost: session-bound / stateless rps | "
            f"{x['session_check_ratio']:.2f} | |"
        )
        print(
            f"| same with ACCESS_LOG=true (the default; off above) | "
            f"{x['access_log_rps']:.0f} rps ({x['access_log_ratio']:.2f} x off) | |"
        )
    if "refresh" in r:
        x = r["refresh"]
        print(
            f"| **refresh rotations**, one core | **{x['refresh_per_s']:.0f}/s** "
            f"({x['ratio']:.2f} x bare {x['bare_rps']:.0f} rps) | >= 2000/s |"
        )
    if "login" in r:
        x = r["login"]
        print(
            f"| raw bcrypt.checkpw, cost {x['cost']}, {x['threads']} threads | "
            f"{x['raw_checkpw_per_s']:.1f}/s | |"
        )
        print(f"| POST /login | {x['logins_per_s']:.1f}/s | |")
        print(f"| **login ratio** | **{x['ratio']:.2f}** | >= 0.9 |")
        print(
            f"| /healthz p99 while logins saturate the pool | "
            f"{x['healthz_p99_ms_under_login_load']:.1f} ms | < 50 ms |"
        )
    if "keycloak" in r:
        x = r["keycloak"]
        rounds = ", ".join(f"{v:.2f}" for v in x["ratios_per_round"])
        print(f"| bare aiohttp GET /hello (Keycloak part) | {x['bare_rps']:.0f} rps | |")
        print(
            f"| GET /api/v1/users/me, local HS256 token | {x['local_rps']:.0f} rps "
            f"({x['local_ratio']:.2f} x bare) | |"
        )
        print(
            f"| **GET /api/v1/users/me, Keycloak RS256 token** (ratio: median of rounds "
            f"{rounds}) | "
            f"**{x['keycloak_rps']:.0f} rps, {x['ratio']:.2f} x bare**, p99 "
            f"{x['keycloak_p99_ms']:.1f} ms | |"
        )
        print(
            f"| same, TOKEN_CACHE_SIZE=0 (RS256 verify + users-record sync per request) | "
            f"{x['keycloak_nocache_rps']:.0f} rps ({x['nocache_ratio']:.2f} x bare) | |"
        )
    if "introspect" in r:
        x = r["introspect"]
        rounds = ", ".join(f"{v:.2f}" for v in x["ratios_per_round"])
        print(
            f"| **POST /api/v1/tokens/introspect**, API key, one core (ratio: median of "
            f"rounds {rounds}) | **{x['introspect_rps']:.0f} rps, {x['ratio']:.2f} x bare "
            f"{x['bare_rps']:.0f} rps**, p99 {x['introspect_p99_ms']:.1f} ms | |"
        )
    if "workers" in r:
        x = r["workers"]
        rounds = ", ".join(f"{v:.2f}" for v in x["ratios_per_round"])
        for n in ("one", "two"):
            print(
                f"| GET /characters, `serve --workers {1 if n == 'one' else 2}`, unpinned | "
                f"{x[n + '_rps']:.0f} rps; the service kept {x[n + '_cores']:.2f} cores busy: "
                f"{x[n + '_rps_per_core']:.0f} rps per core | |"
            )
        print(
            f"| **--workers 2 / --workers 1** ({x['cores']} cores, wrk and the store on "
            f"core 1 too; median of rounds {rounds}; ratio of the medians "
            f"{x['ratio_of_medians']:.2f}) | **{x['ratio']:.2f}** | >= 1.8 |"
        )
        print(
            f"| rps per busy service core, --workers 2 / --workers 1 (1.0: each worker "
            f"as fast as a lone one; the shortfall above is cores, not the service) | "
            f"{x['per_core_ratio']:.2f} | |"
        )
    if "memory" in r:
        x = r["memory"]
        print(
            f"| **store memory per account** ({x['accounts']} accounts, 1 character + 1 "
            f"favorite each; `INFO memory` used_memory delta) | "
            f"**{x['bytes_per_account']:.0f} bytes** | <= 600 |"
        )
        print(
            "| floor: the two claim keys + one listpack hash with the account, its "
            "character and favorite; nothing else (same server, raw commands) | "
            f"{x['floor_bytes_per_account']:.0f} bytes | |"
        )
    print(f"\ntotal time: {r['seconds']} s")
    if "memory" in r:
        report_memory(r["memory"])


def report_memory(x: dict) -> None:
    print(
        f"\nMemory: redis {x['redis_version']}, {x['accounts']} accounts loaded through "
        f"the service classes in {x['load_seconds']} s ({x['accounts_per_s']}/s, "
        f"{x['processes']} processes x {x['concurrency']} in flight, bcrypt cost "
        f"{x['bcrypt_cost']}); {x['keys_per_account']:.1f} keys per account."
    )
    print(
        f"used_memory {x['used_memory_before']} -> {x['used_memory_after']} bytes: "
        f"{x['bytes_per_account']:.0f} per account "
        f"(used_memory_dataset: {x['dataset_bytes_per_account']:.0f})."
    )
    print("| key family | type/encoding | keys | bytes/key | bytes/account |")
    print("|---|---|---|---|---|")
    for f in x["families"]:
        print(
            f"| `{f['family']}` | {f['type']} | {f['keys']} | {f['per_key']:.0f} | "
            f"{f['per_account']:.0f} |"
        )
    print(f"| sum of MEMORY USAGE | | {x['keys_scanned']} | | {x['attributed_per_account']:.0f} |")
    print(
        "MEMORY USAGE counts each key's value, name and dict entry (SAMPLES 0: exact);"
        " not the keyspace hash table's buckets or the expires table. Families with one"
        " key (streams, indexes) are divided by every account loaded, warm-up included."
    )


if __name__ == "__main__":
    asyncio.run(main())
