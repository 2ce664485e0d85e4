"""The web tier is stateless: two real `authsvc serve` processes (each with its own
token cache, RBAC cache and connections) against one store pass the concurrency tests
together, with requests alternating between them."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from .helpers import create_admin, new_user, serve, service_env

ADMIN = new_user("root") | {"password": "root password, long enough"}


async def _json(resp: aiohttp.ClientResponse) -> tuple[int, dict]:
    return resp.status, await resp.json()


async def test_two_service_processes_share_one_store(redis_server, store, tmp_path):
    # Only the change feed can make the other process see a role change within a
    # minute: its permission cache holds for one.
    env = service_env(redis_server.url, RBAC_CACHE_TTL="60", WORKERS="1")
    await create_admin(env, ADMIN)
    async with (
        serve(env, tmp_path / "a.log") as a,
        serve(env, tmp_path / "b.log") as b,
        aiohttp.ClientSession() as http,
    ):
        bases = [a.base, b.base]

        def post(i: int, path: str, **kw):
            return http.post(bases[i % 2] + path, **kw)

        # One username, 40 registrations split over both processes: one account.
        race = [new_user() | {"username": "contested"} for _ in range(40)]
        resps = await asyncio.gather(*(post(i, "/register", json=u) for i, u in enumerate(race)))
        assert sorted(r.status for r in resps) == [201] + [409] * 39

        user = new_user("both")
        assert (await post(0, "/register", json=user)).status == 201
        creds = {"username": user["username"], "password": user["password"]}
        _, first = await _json(await post(1, "/login", json=creds))
        # Twenty tabs refresh one token at once, half on each process: one successor.
        body = {"refresh_token": first["refresh_token"]}
        resps = await asyncio.gather(
            *(post(i, "/api/v1/auth/refresh", json=body) for i in range(20))
        )
        answers = [await _json(r) for r in resps]
        assert [s for s, _ in answers] == [200] * 20
        pairs = {(b["refresh_token"], b["access_token"]) for _, b in answers}
        assert len(pairs) == 1  # every tab, on either process, got the same successor
        auth = {"Authorization": f"Bearer {next(iter(pairs))[1]}"}

        # One favorite added 20 times over both: one record, one uuid.
        fav = {"video_id": "v-shared"}
        resps = await asyncio.gather(
            *(post(i, "/api/v1/favorites/videos", json=fav, headers=auth) for i in range(20))
        )
        answers = [await _json(r) for r in resps]
        assert sorted(s for s, _ in answers) == [200] * 19 + [201]
        assert len({b["favorite_video_uuid"] for _, b in answers}) == 1

        # A role granted through one process and removed through it takes effect in
        # the other at once, though that one caches permissions for a minute.
        root_creds = {"username": ADMIN["username"], "password": ADMIN["password"]}
        _, root = await _json(await post(0, "/login", json=root_creds))
        admin = {"Authorization": f"Bearer {root['token']}"}
        uid = (await (await http.get(a.base + "/api/v1/users/me", headers=auth)).json())["id"]
        resp = await post(
            0, f"/api/v1/admin/users/{uid}/roles", json={"role": "admin"}, headers=admin
        )
        assert resp.status == 200
        listing = b.base + "/api/v1/admin/users"
        assert (await http.get(listing, headers=auth)).status == 200  # b caches it
        resp = await http.delete(a.base + f"/api/v1/admin/users/{uid}/roles/admin", headers=admin)
        assert resp.status == 204
        deadline = time.monotonic() + 1.0
        while (status := (await http.get(listing, headers=auth)).status) == 200:
            assert time.monotonic() < deadline, "process b still grants the removed role"
            await asyncio.sleep(0.02)
        assert status == 403
    for name in ("a.log", "b.log"):
        assert "Traceback" not in (tmp_path / name).read_text()
