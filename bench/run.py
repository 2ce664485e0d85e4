"""authsvc benchmark: ratios measured side by side in one run on one machine.

    .venv/bin/python bench/run.py [--seconds 5] [--rounds 3] [--cost 12]

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
- /healthz p99 while logins saturate the hash pool (target < 50 ms).
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import bcrypt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.redis_proc import RedisProcess, free_port  # noqa: E402

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

    from authsvc.tokens import key_id

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


def start_service(
    port: int, store_url: str, core: int | None, cost: int, threads: int, **extra_env: str
):
    env = {
        **os.environ,
        **extra_env,
        "API_JWT_SECRET": SECRET,
        "KEYDB_URL": store_url,
        "BCRYPT_COST": str(cost),
        "HASH_THREADS": str(threads),
        "LOG_LEVEL": "WARNING",
    }
    argv = [sys.executable, "-m", "authsvc", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(pinned(core, argv), env=env, cwd=ROOT)


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
    svc_port, hello_port = free_port(), free_port()
    svc = start_service(svc_port, store_url, core=0, cost=4, threads=1)
    hello = start_hello(hello_port, core=0)
    hello_url = f"http://127.0.0.1:{hello_port}/hello"
    try:
        base = f"http://127.0.0.1:{svc_port}"
        await wait_http(f"{base}/healthz")
        await wait_http(hello_url)
        user, token = await seed_user(base)
        auth = {"Authorization": f"Bearer {token}"}
        stateless = {"Authorization": f"Bearer {stateless_token(user['id'], user['username'])}"}
        conns = args.connections
        await load(f"{base}/characters", 1, connections=conns, headers=auth)  # warm-up
        await load(hello_url, 1, connections=conns, headers={})
        bare, chars, nosid = [], [], []
        for _ in range(args.rounds):
            bare.append(await load(hello_url, args.seconds, connections=conns, headers={}))
            chars.append(
                await load(f"{base}/characters", args.seconds, connections=conns, headers=auth)
            )
            nosid.append(
                await load(f"{base}/characters", args.seconds, connections=conns, headers=stateless)
            )
        assert all(r["errors"] == 0 for r in chars + nosid), (chars, nosid)
    finally:
        stop(svc)
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


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--cost", type=int, default=12, help="bcrypt cost for the login part")
    parser.add_argument("--only", choices=["read", "refresh", "login"], default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()

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
            if args.only in (None, "read"):
                results["read"] = await authenticated_read(args, store.url)
            if args.only in (None, "refresh") and shutil.which("wrk"):
                results["refresh"] = await refresh_rate(args, store.url)
            if args.only in (None, "login"):
                results["login"] = await login_throughput(args, store.url)
            steal, total = cpu_steal()
            results["cpu_steal_pct"] = round(
                100 * (steal - steal_before[0]) / max(1, total - steal_before[1]), 1
            )
        finally:
            store.stop()
    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


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


if __name__ == "__main__":
    asyncio.run(main())
