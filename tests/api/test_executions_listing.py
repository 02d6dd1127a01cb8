"""GET /v1/executions: the edge's answer (``fast.py``) is the Litestar route's, and a listing
reads only the partitions the account's cue-partition bitmap names yet misses no execution."""

from __future__ import annotations

import itertools
import logging
import uuid
from typing import Any

import httpx
import msgspec
import pytest

from cuefast.api.app import create_litestar
from cuefast.api.edge import Edge
from cuefast.api.ratelimit import RateLimit
from cuefast.config import Settings
from cuefast.store import executions as executions_store
from tests.conftest import Api


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


QUERIES = (
    "",
    "?limit=2",
    "?limit=2&offset=1",
    "?limit=1&limit=50",
    "?limit=0",
    "?limit=101",
    "?offset=-1",
    "?limit=abc",
    "?status=pending",
    "?status=",
    "?status__in=pending,,failed",
    "?status__in=,",
    "?status=pending&status__in=failed",
    "?triggered_by=manual_fire&outcome_state=",
    "?worker_id=w1",
    "?cue_id=nope",
    "?cue_id=cue_000000000000",
    "?cursor=",
    "?cursor=&limit=1",
    "?cursor=bm9wZQ",
    "?cursor=&offset=2",
    "/",
)


async def fire_cues(api: Api, key: str, n: int) -> list[str]:
    """``n`` cues (spread over partitions by their ids), each fired once: their cue ids."""
    cues = []
    for i in range(n):
        body = {
            "name": f"c{i}-{uuid.uuid4().hex[:6]}",
            "transport": "worker",
            "schedule": {"type": "recurring", "cron": "0 0 1 1 *"},
            "payload": {"i": i},
        }
        res = await api.request("POST", "/v1/cues", key, json=body)
        assert res.status_code == 201, res.text
        cue_id = res.json()["id"]
        assert (await api.request("POST", f"/v1/cues/{cue_id}/fire", key)).status_code == 200
        cues.append(cue_id)
    return cues


async def test_the_edge_answers_the_listing_as_litestar_does(api: Api) -> None:
    key = await api.register()
    cues = await fire_cues(api, key, 3)
    litestar_only = Edge(create_litestar(api.rt, manage_runtime=False), api.rt.metrics, RateLimit(api.rt))  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=litestar_only),  # type: ignore[arg-type]
        base_url="http://cuefast.test",
    ) as plain:
        for q in (*QUERIES, f"?cue_id={cues[1]}", f"?cue_id={cues[1]}&cue_id={cues[0]}"):
            no_key: list[dict[str, str]] = (
                [{}, {"Authorization": "Bearer cue_sk_bad"}] if q in ("", "?limit=0") else []
            )
            for auth in [{"Authorization": f"Bearer {key}"}, *no_key]:  # keyless: the IP's small limit
                fast = await api.client.get("/v1/executions" + q, headers=auth)
                slow = await plain.get("/v1/executions" + q, headers=auth)
                assert (fast.status_code, fast.json()) == (slow.status_code, slow.json()), q
                drop = {"x-request-id", "x-ratelimit-remaining", "x-ratelimit-reset"}
                assert [(k, v) for k, v in fast.headers.items() if k not in drop] == [
                    (k, v) for k, v in slow.headers.items() if k not in drop
                ], q


async def test_a_listing_finds_executions_on_every_partition_of_the_account(api: Api) -> None:
    """The bitmap names each partition a cue was created on; an account without one (older than
    it, or restored) is read on every partition; another account's partitions never leak."""
    key = await api.register()
    other = await api.register()
    cues = await fire_cues(api, key, 12)
    await fire_cues(api, other, 2)
    k = api.rt.store.keys
    parts = {k.cue_partition(c) for c in cues}
    assert len(parts) > 1

    async def listing(q: str = "") -> dict[str, Any]:
        res = await api.request("GET", "/v1/executions" + q, key)
        assert res.status_code == 200, res.text
        out: dict[str, Any] = res.json()
        return out

    full = await listing("?limit=100")
    assert full["total"] == 12 and sorted(e["cue_id"] for e in full["executions"]) == sorted(cues)
    page = await listing("?limit=5&offset=3")
    assert [e["id"] for e in page["executions"]] == [e["id"] for e in full["executions"][3:8]]
    assert page["has_more"] is True
    res = await api.rt.accounts.authenticate(f"Bearer {key}")
    assert res.partitions is not None and set(res.partitions) == parts
    await api.rt.store.redis.delete(k.cue_partitions(res.id))  # untracked: every partition
    assert await listing("?limit=100") == full
    more = await fire_cues(api, key, 1)
    assert (await listing("?limit=100"))["total"] == 13 and more[0] in {
        e["cue_id"] for e in (await listing("?limit=100"))["executions"]
    }


def _row(flat: list[str]) -> str:
    """A hash as ``executions_list.lua`` returns it: the JSON array of HGETALL's reply."""
    return msgspec.json.encode(flat).decode()


def test_rendered_rows_are_reused_only_for_the_same_stored_hash(caplog: Any) -> None:
    """``render_listed``: the same JSON as rendering the hash; reused only while every field and
    value is the same; a row with a data error is rendered (and logged) every time."""
    from cuefast.services import executions as svc

    eid = str(uuid.uuid4())
    flat = [
        "cue",
        "cue_aaaaaaaaaaaa",
        "acct",
        "a",
        "st",
        "pending",
        "sf",
        "1796000000123456",
        "ca",
        "1796000000000000",
    ]
    [first] = svc.render_listed([eid], [_row(flat)])
    want = msgspec.json.encode(
        svc.render_execution({"id": eid, **dict(zip(flat[::2], flat[1::2], strict=True))})
    )
    assert bytes(first) == want
    [again] = svc.render_listed([eid], [_row(list(flat))])
    assert again is first
    changed = [*flat[:5], "success", *flat[6:]]
    [other] = svc.render_listed([eid], [_row(changed)])
    assert msgspec.json.decode(bytes(other))["status"] == "success"
    assert svc.render_listed([eid, eid], ["", _row(changed)]) == [other]  # a gone hash is left out
    bad = [*flat[:7], "not-a-time", *flat[8:]]
    caplog.set_level(logging.ERROR, logger="cuefast.data")
    for _ in range(2):
        [row] = svc.render_listed([eid], [_row(bad)])
        assert msgspec.json.decode(bytes(row))["scheduled_for"] is None
    assert sum("scheduled_for" in r.getMessage() for r in caplog.records) == 2


def test_a_large_row_is_not_remembered() -> None:
    from cuefast.services import executions as svc

    eid = str(uuid.uuid4())
    big = msgspec.json.encode({"blob": "x" * svc.RENDERED_ROW_MAX}).decode()
    flat = ["cue", "cue_aaaaaaaaaaaa", "acct", "a", "st", "pending", "ca", "1796000000000000", "pl", big]
    [first] = svc.render_listed([eid], [_row(flat)])
    [again] = svc.render_listed([eid], [_row(flat)])
    assert again is not first and bytes(again) == bytes(first)


async def _cursor_walk(api: Api, key: str, query: str, size: int) -> tuple[list[str], set[int]]:
    """Every page of a cursor-paged listing: the ids in order and the totals seen."""
    ids: list[str] = []
    totals: set[int] = set()
    cursor = ""
    while True:
        res = await api.request("GET", f"/v1/executions?limit={size}&cursor={cursor}{query}", key)
        assert res.status_code == 200, res.text
        body = res.json()
        ids += [e["id"] for e in body["executions"]]
        totals.add(body["total"])
        assert body["offset"] == 0 and body["has_more"] == (body["next_cursor"] is not None)
        if body["next_cursor"] is None:
            return ids, totals
        assert len(body["executions"]) == size
        cursor = body["next_cursor"]


async def test_cursor_pages_list_what_offset_pages_list(api: Api) -> None:
    """cuefast's keyset cursor: walking every page gives exactly the offset listing's order
    — executions of many cues on several partitions, created at the same instant (the clock is
    frozen: every tie is broken by id) — filtered or not, one cue or all, at every page size."""
    key = await api.register()
    cues = await fire_cues(api, key, 12)
    for cue_id in cues[:3]:
        for _ in range(6):
            assert (await api.request("POST", f"/v1/cues/{cue_id}/fire", key)).status_code == 200
    for query in ("", "&status=pending", f"&cue_id={cues[0]}", "&triggered_by=manual_fire", "&status=nope"):
        res = await api.request("GET", f"/v1/executions?limit=100{query}", key)
        want = [e["id"] for e in res.json()["executions"]]
        for size in (1, 4, 7, 100):
            got, totals = await _cursor_walk(api, key, query, size)
            assert got == want and totals == {len(want)}, (query, size)


async def test_a_bad_cursor_is_a_validation_error(api: Api) -> None:
    key = await api.register()
    for q, field in (
        ("cursor=xyz", "query.cursor"),
        ("cursor=" + "A" * 200, "query.cursor"),
        ("cursor=cjEyMy5ub3QtYW4taWQ", "query.cursor"),
        ("cursor=aDEy&offset=3", "query.offset"),
    ):
        res = await api.request("GET", f"/v1/executions?{q}", key)
        assert res.status_code == 422, (q, res.text)
        assert res.json()["error"]["code"] == "validation_error"
        assert res.json()["error"]["details"][0]["field"] == field, q


def test_remembered_rows_hold_no_more_memory_than_their_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """``render_listed`` counts what a remembered row really holds (its key, JSON and objects,
    measured with tracemalloc): the cache empties itself at ``RENDERED_MAX_BYTES`` whatever the
    rows' count, so a serving process's memory levels off (a soak's RSS grew +10.7 % over
    10 minutes while rows were counted without their objects)."""
    import gc
    import tracemalloc

    from cuefast.services import executions as svc

    cap = 512 << 10
    monkeypatch.setattr(svc, "RENDERED_MAX_BYTES", cap)
    monkeypatch.setattr(svc, "_RENDERED", {})
    monkeypatch.setattr(svc, "_RENDERED_BYTES", [0])

    def row(i: int) -> tuple[str, str]:
        eid = str(uuid.UUID(int=i))
        flat = ["cue", f"cue_{i % 50:012d}", "acct", "acct_aaaaaaaaaaaa", "st", "success", "tr", "worker"]
        flat += ["tb", "scheduled", "sf", str(1796000000000000 + i), "ca", str(1796000000000000 + i)]
        flat += ["os", "reported_success", "oc", '{"success":true,"result":"ok","metadata":{}}', "at", "1"]
        return eid, _row(flat)

    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        peak_held = 0
        for i in range(20_000):  # several times what fits; each row's text made here, as a reply's
            eid, text = row(i)
            svc.render_listed([eid], [text])
            if svc._RENDERED_BYTES[0] == 0:  # just emptied
                continue
            held = tracemalloc.get_traced_memory()[0] - base
            peak_held = max(peak_held, held)
        accounted = svc._RENDERED_BYTES[0]
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert 0 < len(svc._RENDERED) < 20_000  # it emptied itself at least once
    assert peak_held <= cap, (peak_held, cap)
    assert accounted >= 0.95 * held, (accounted, held)  # the count does not undercount


async def test_pages_are_exact_when_the_newest_crowd_onto_one_partition(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing over several partitions first asks each for a share of the page
    (``SHARE_FACTOR`` × depth ÷ partitions from ``SHARE_FROM`` partitions on; 1 and 2 here, so
    that it binds on this few); a partition
    that may hold more of the page is asked again for all of it. With the newest executions all
    on one cue's partition, every offset page (filtered or not) and every cursor page is still
    exactly a slice of the full listing, and the second asking happened."""
    monkeypatch.setattr(executions_store, "SHARE_FACTOR", 1)
    monkeypatch.setattr(executions_store, "SHARE_FROM", 2)
    key = await api.register()
    cues = await fire_cues(api, key, 8)
    busy = cues[0]
    for _ in range(12):
        assert (await api.request("POST", f"/v1/cues/{busy}/fire", key)).status_code == 200
    store = api.rt.store
    assert len({store.keys.cue_partition(c) for c in cues}) > 1
    scripts = store.executions.scripts
    run_many = scripts.run_many
    wants: list[int] = []  # per batch of listing calls: the most any call asked for

    async def recording(calls: Any, also: Any = (), **kw: Any) -> Any:
        asked = [int(args[0]) for script, _, args in calls if script is executions_store.LIST]
        if asked:
            wants.append(max(asked))
        return await run_many(calls, also, **kw)

    monkeypatch.setattr(scripts, "run_many", recording)
    for query in ("", "&status=pending", "&triggered_by=manual_fire"):
        res = await api.request("GET", f"/v1/executions?limit=100{query}", key)
        full = [e["id"] for e in res.json()["executions"]]
        assert len(full) == 20
        for limit in (1, 3, 5):
            for offset in range(0, len(full) + 1):
                res = await api.request("GET", f"/v1/executions?limit={limit}&offset={offset}{query}", key)
                body = res.json()
                assert [e["id"] for e in body["executions"]] == full[offset : offset + limit], (query, limit)
                assert body["total"] == 20
            got, totals = await _cursor_walk(api, key, query, limit)
            assert got == full and totals == {20}, (query, limit)
    assert any(b > a for a, b in itertools.pairwise(wants))  # asked again, for more
