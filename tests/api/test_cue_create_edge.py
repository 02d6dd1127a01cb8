"""POST /v1/cues through the edge: the auth script reserves the cue's name in its round trip
(``fast.FastRoutes.prepare``; docs/DESIGN.md "Cue names"), and the answers are the Litestar
route's (three round trips) in every order of the contract's checks."""

from __future__ import annotations

import zlib
from typing import Any

import httpx

from cuefast.api.app import create_litestar
from cuefast.api.edge import Edge
from cuefast.api.ratelimit import RateLimit
from cuefast.config import Settings
from cuefast.ids import key_sha
from tests.api.test_cues import webhook_cue
from tests.conftest import make_api

BLOCKED = {"url": "http://169.254.169.254/"}


def steps() -> list[tuple[dict[str, Any] | bytes, str | None]]:
    """(body, key override) of one account's sequence of creates: limit 3."""
    return [
        (webhook_cue("a"), None),  # 201: the key's first create (reserved by the service)
        (webhook_cue("a"), None),  # 409: the name reserved by the auth script is taken
        ({"name": "a"}, None),  # 422 first (schema), even with a taken name
        (webhook_cue("a", callback=BLOCKED), None),  # 409 before the SSRF stage
        (webhook_cue("free", callback=BLOCKED), None),  # 400: and "free" stays free
        (webhook_cue("free"), None),  # 201
        (webhook_cue("b"), None),  # 201
        (webhook_cue("c"), None),  # 403: the limit
        (webhook_cue("a"), None),  # 409 before the limit
        (webhook_cue("c", callback=BLOCKED), None),  # 403 before the SSRF stage
        (b"{not json", None),  # 400 invalid JSON
        (b"{not json", "cue_sk_nobody"),  # 401 before the body's errors
        (webhook_cue("d"), "cue_sk_nobody"),  # 401: nothing reserved
    ]


async def _run(client: httpx.AsyncClient, key: str) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    for body, other in steps():
        headers = {"Authorization": f"Bearer {other or key}", "Content-Type": "application/json"}
        content = body if isinstance(body, bytes) else None
        res = await client.post("/v1/cues", headers=headers, content=content, json=None if content else body)
        got = res.json()
        out.append((res.status_code, got.get("name") if res.status_code == 201 else got["error"]["code"]))
    return out


async def test_the_edge_answers_creates_as_litestar_does(settings: Settings) -> None:
    api, rt = await make_api(settings.replace(default_cue_limit=3))
    try:
        litestar_only = Edge(create_litestar(rt, manage_runtime=False), rt.metrics, RateLimit(rt))  # type: ignore[arg-type]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=litestar_only),  # type: ignore[arg-type]
            base_url="http://cuefast.test",
        ) as plain:
            fast = await _run(api.client, await api.register())
            slow = await _run(plain, await api.register())
        assert fast == slow
        assert [s for s, _ in fast] == [201, 409, 422, 409, 400, 201, 201, 403, 409, 403, 400, 401, 401]
    finally:
        await api.client.aclose()
        await rt.close()


async def test_a_known_keys_create_reserves_its_name_in_the_auth_call(settings: Settings) -> None:
    """The key's first create reserves in the service (its account was not known yet); later
    ones in the auth script, with a cue id of the account's group (``Keys.cue_group``)."""
    api, rt = await make_api(settings)
    calls: list[str] = []
    reserve = rt.store.cues.reserve_name

    async def counted(account_id: str, name: str, *args: Any, **kw: Any) -> Any:
        calls.append(name)
        return await reserve(account_id, name, *args, **kw)

    rt.store.cues.reserve_name = counted  # type: ignore[method-assign]
    try:
        key = await api.register()
        for name in ("first", "second", "third"):
            res = await api.request("POST", "/v1/cues", key, json=webhook_cue(name))
            assert res.status_code == 201, res.text
            cue = res.json()
            got = await api.request("GET", f"/v1/cues/{cue['id']}", key)
            assert got.status_code == 200 and got.json()["name"] == name
        assert calls == ["first"]
        k = rt.keys
        account_id = await rt.store.accounts.account_of_key(key_sha(key))
        assert account_id is not None
        names = await rt.store.redis.hgetall(k.cue_names(account_id))
        assert sorted(names) == ["first", "second", "third"]
        group = k.cue_group(account_id)
        if group is not None:
            m, r = group
            assert all(zlib.crc32(v.split(":")[0].encode()) % m == r for v in names.values())
    finally:
        await api.client.aclose()
        await rt.close()
