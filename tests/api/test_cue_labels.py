"""Cue labels, the ``?label=`` listing filter and bulk pause/resume, over HTTP on real Redis."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cuefast.clock import FrozenClock
from cuefast.config import Settings
from tests.api.test_cues import create, future, webhook_cue
from tests.conftest import Api, assert_error, make_api


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


async def names(api: Api, key: str, query: str) -> tuple[list[str], int]:
    res = await api.request("GET", f"/v1/cues?limit=100&{query}", key)
    assert res.status_code == 200, res.text
    body = res.json()
    return [c["name"] for c in body["cues"]], body["total"]


async def test_labels_round_trip_create_patch_get_list(api: Api) -> None:
    key = await api.register()
    cue = await create(api, key, webhook_cue("a", labels={"team": "growth", "example.com/tier": "gold"}))
    assert cue["labels"] == {"team": "growth", "example.com/tier": "gold"}
    plain = await create(api, key, webhook_cue("b"))
    assert plain["labels"] == {}
    got = (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
    assert got["labels"] == {"team": "growth", "example.com/tier": "gold"}
    res = await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"labels": {"team": "ops", "x": ""}})
    assert res.status_code == 200, res.text
    assert res.json()["labels"] == {"team": "ops", "x": ""}
    assert await names(api, key, "label=team:growth") == ([], 0)
    assert await names(api, key, "label=team:ops") == (["a"], 1)
    assert await names(api, key, "label=example.com/tier") == ([], 0)
    assert await names(api, key, "label=x:") == (["a"], 1)
    # a PATCH without labels keeps them
    res = await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"description": "d"})
    assert res.json()["labels"] == {"team": "ops", "x": ""}
    # null clears, as {} does
    res = await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"labels": None})
    assert res.json()["labels"] == {}
    assert await names(api, key, "label=team") == ([], 0)
    listed = (await api.request("GET", "/v1/cues", key)).json()["cues"]
    assert all(c["labels"] == {} for c in listed)


async def test_label_filter_is_and_and_combines_with_status(api: Api) -> None:
    key = await api.register()
    await create(api, key, webhook_cue("g1", labels={"team": "growth", "env": "prod"}))
    g2 = await create(api, key, webhook_cue("g2", labels={"team": "growth", "env": "dev"}))
    await create(api, key, webhook_cue("o1", labels={"team": "ops", "env": "prod"}))
    await create(api, key, webhook_cue("n1"))
    assert await names(api, key, "label=team:growth") == (["g2", "g1"], 2)
    assert await names(api, key, "label=team:growth&label=env:prod") == (["g1"], 1)
    assert await names(api, key, "label=env") == (["o1", "g2", "g1"], 3)
    assert await names(api, key, "label=env&label=team:ops") == (["o1"], 1)
    assert await names(api, key, "label=nope") == ([], 0)
    await api.request("PATCH", f"/v1/cues/{g2['id']}", key, json={"status": "paused"})
    assert await names(api, key, "label=team:growth&status=paused") == (["g2"], 1)
    assert await names(api, key, "label=team:growth&status=active") == (["g1"], 1)
    res = await api.request("GET", "/v1/cues?label=env&limit=1&offset=1", key)
    body = res.json()
    assert [c["name"] for c in body["cues"]] == ["g2"] and body["total"] == 3
    # deleting a cue takes it out of the index
    await api.request("DELETE", f"/v1/cues/{g2['id']}", key)
    assert await names(api, key, "label=team:growth") == (["g1"], 1)
    # another account's cues never show
    other = await api.register()
    await create(api, other, webhook_cue("theirs", labels={"team": "growth"}))
    assert await names(api, key, "label=team:growth") == (["g1"], 1)


@pytest.mark.parametrize(
    "labels",
    [
        [],
        "team",
        {"team": 1},
        {"team": None},
        {"-bad": "x"},
        {"bad-": "x"},
        {"": "x"},
        {"a" * 64: "x"},
        {"team": "a" * 64},
        {"team": "has space"},
        {"team": "-x"},
        {"a:b": "x"},
        {"Upper.Case/x": "y"},
        {"k\x00": "v"},
        {"k\ud800": "v"},
        {"k": "v\n"},
        {f"k{i}": "v" for i in range(33)},
    ],
)
async def test_bad_labels_are_422(api: Api, labels: Any) -> None:
    key = await api.register()
    hdr = {"content-type": "application/json"}
    raw = json.dumps(webhook_cue("c", labels=labels)).encode()  # ASCII: lone surrogates escaped
    res = await api.request("POST", "/v1/cues", key, content=raw, headers=hdr)
    assert_error(res, 422, "validation_error")
    cue = await create(api, key, webhook_cue("ok"))
    raw = json.dumps({"labels": labels}).encode()
    res = await api.request("PATCH", f"/v1/cues/{cue['id']}", key, content=raw, headers=hdr)
    assert_error(res, 422, "validation_error")
    assert (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()["labels"] == {}


async def test_good_label_edges(api: Api) -> None:
    key = await api.register()
    labels = {f"k{i}": "v" for i in range(31)} | {"a" * 63: "b" * 63}
    cue = await create(api, key, webhook_cue("c", labels=labels))
    assert cue["labels"] == labels
    assert await names(api, key, f"label={'a' * 63}:{'b' * 63}") == (["c"], 1)


@pytest.mark.parametrize("query", ["label=-x", "label=a:b:c", "label=", "label=a%00", "label=:v"])
async def test_bad_selectors_are_422(api: Api, query: str) -> None:
    key = await api.register()
    res = await api.request("GET", f"/v1/cues?{query}", key)
    assert_error(res, 422, "validation_error")


async def test_bulk_pause_and_resume_by_labels(api: Api) -> None:
    key = await api.register()
    g1 = await create(api, key, webhook_cue("g1", labels={"team": "growth"}))
    g2 = await create(api, key, webhook_cue("g2", labels={"team": "growth", "env": "prod"}))
    o1 = await create(api, key, webhook_cue("o1", labels={"team": "ops"}))
    other = await api.register()
    theirs = await create(api, other, webhook_cue("t", labels={"team": "growth"}))

    res = await api.request("POST", "/v1/cues/pause", key, json={"labels": {"team": "growth"}})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["matched"] == 2 and body["changed"] == 2
    assert sorted(body["ids"]) == sorted([g1["id"], g2["id"]])
    for c in (g1, g2):
        got = (await api.request("GET", f"/v1/cues/{c['id']}", key)).json()
        assert got["status"] == "paused" and got["next_run"] is None
    assert (await api.request("GET", f"/v1/cues/{o1['id']}", key)).json()["status"] == "active"
    assert (await api.request("GET", f"/v1/cues/{theirs['id']}", other)).json()["status"] == "active"
    # a second pause matches them and changes nothing
    body = (await api.request("POST", "/v1/cues/pause", key, json={"labels": {"team": "growth"}})).json()
    assert (body["matched"], body["changed"], body["ids"]) == (2, 0, [])
    # resume the prod one only (AND of the labels)
    res = await api.request(
        "POST", "/v1/cues/resume", key, json={"labels": {"team": "growth", "env": "prod"}}
    )
    assert res.json() == {"matched": 1, "changed": 1, "ids": [g2["id"]]}
    got = (await api.request("GET", f"/v1/cues/{g2['id']}", key)).json()
    assert got["status"] == "active" and got["next_run"] is not None
    assert await names(api, key, "label=team:growth&status=paused") == (["g1"], 1)


async def test_bulk_by_ids_never_touches_another_account(api: Api) -> None:
    key = await api.register()
    mine = [await create(api, key, webhook_cue(f"m{i}")) for i in range(3)]
    other = await api.register()
    theirs = await create(api, other, webhook_cue("t"))
    ids = [c["id"] for c in mine] + [theirs["id"], "cue_zzzzzzzzzzzz", "not-an-id", mine[0]["id"]]
    res = await api.request("POST", "/v1/cues/pause", key, json={"ids": ids})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["matched"] == 3 and body["changed"] == 3
    assert body["ids"] == [c["id"] for c in mine]
    got = (await api.request("GET", f"/v1/cues/{theirs['id']}", other)).json()
    assert got["status"] == "active" and got["next_run"] is not None
    # the other account's own call works on its cue only
    res = await api.request("POST", "/v1/cues/pause", other, json={"ids": [mine[1]["id"], theirs["id"]]})
    assert res.json() == {"matched": 1, "changed": 1, "ids": [theirs["id"]]}
    res = await api.request("POST", "/v1/cues/resume", key, json={"ids": [c["id"] for c in mine]})
    assert res.json()["changed"] == 3
    for c in mine:
        got = (await api.request("GET", f"/v1/cues/{c['id']}", key)).json()
        assert got["status"] == "active" and got["next_run"] == c["next_run"]


async def test_bulk_resume_skips_a_fired_one_time_cue_and_resumes_a_future_one(api: Api) -> None:
    key = await api.register()
    once = await create(
        api, key, {"name": "o", "transport": "worker", "schedule": {"type": "once", "at": future()}}
    )
    await api.request("POST", "/v1/cues/pause", key, json={"ids": [once["id"]]})
    res = await api.request("POST", "/v1/cues/resume", key, json={"ids": [once["id"]]})
    assert res.json() == {"matched": 1, "changed": 1, "ids": [once["id"]]}
    got = (await api.request("GET", f"/v1/cues/{once['id']}", key)).json()
    assert got["status"] == "active" and got["next_run"] == once["next_run"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ids": ["cue_aaaaaaaaaaaa"], "labels": {"a": "b"}},
        {"ids": []},
        {"ids": "cue_aaaaaaaaaaaa"},
        {"ids": [1]},
        {"ids": ["a\x00"]},
        {"ids": ["cue_aaaaaaaaaaaa"] * 1001},
        {"labels": {}},
        {"labels": {"-x": "y"}},
        {"labels": ["a"]},
        {"labels": {"a": 1}},
        {"ids": ["cue_aaaaaaaaaaaa"], "extra": 1},
        [],
        "x",
    ],
)
async def test_bulk_bad_bodies_are_422(api: Api, body: Any) -> None:
    key = await api.register()
    for verb in ("pause", "resume"):
        res = await api.request("POST", f"/v1/cues/{verb}", key, json=body)
        assert res.status_code in (400, 422), res.text
        assert_error(res, res.status_code, res.json()["error"]["code"])


async def test_bulk_needs_a_key(api: Api) -> None:
    res = await api.request("POST", "/v1/cues/pause", None, json={"ids": ["cue_aaaaaaaaaaaa"]})
    assert res.status_code == 401


async def test_a_crash_between_the_steps_leaves_a_superset_that_readers_repair(settings: Settings) -> None:
    """The index is a superset (docs/DESIGN.md "Cue labels"): an entry whose cue never got (or
    lost) the label is never listed, and a listing repairs it once it is older than 30 s."""
    clock = FrozenClock(1_795_434_122_000_000)
    api, rt = await make_api(settings, clock)
    try:
        key = await api.register()
        cue = await create(api, key, webhook_cue("a", labels={"team": "x"}))
        cues = rt.store.cues
        stored = await cues.get(cue["id"])
        assert stored is not None
        acct = stored["acct"]
        now = clock.now_us()
        # a PATCH to team=y that crashed after its first step (the cue still says team=x)
        await cues.index_labels(acct, cue["id"], now, {"team": "y"}, now, add=True)
        # a create that crashed after its first step (no cue at all)
        await cues.index_labels(acct, "cue_zzzzzzzzzzzz", now, {"team": "y"}, now, add=True)
        assert await names(api, key, "label=team:y") == ([], 0)  # every candidate checked
        assert await names(api, key, "label=team:x") == (["a"], 1)
        # bulk pause by the stale label changes nothing
        res = await api.request("POST", "/v1/cues/pause", key, json={"labels": {"team": "y"}})
        assert res.json() == {"matched": 0, "changed": 0, "ids": []}
        # young entries are left alone (they may be a write in progress) ...
        assert set(await cues.label_candidates(acct, [("team", "y")])) == {cue["id"], "cue_zzzzzzzzzzzz"}
        clock.advance(31)
        await names(api, key, "label=team:y")  # ... older ones are repaired by the listing
        assert await cues.label_candidates(acct, [("team", "y")]) == []
        assert await cues.label_candidates(acct, [("team", "x")]) == [cue["id"]]
        assert await names(api, key, "label=team:x") == (["a"], 1)
    finally:
        await api.client.aclose()
        await rt.close()


async def test_bulk_pause_rereads_a_cue_a_concurrent_patch_moved(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PATCH landing between the bulk path's read and its write (the cue's version moved:
    CONFLICT from cues_update.lua) is not overwritten: that cue is re-read and written again."""
    key = await api.register()
    a = await create(api, key, webhook_cue("a", labels={"team": "x"}))
    b = await create(api, key, webhook_cue("b", labels={"team": "x"}))
    cues = api.rt.store.cues
    real = cues.update_many
    calls: list[int] = []

    async def racing(account_id: str, writes: Any) -> Any:
        calls.append(len(writes))
        if len(calls) == 1:  # a PATCH wins the race for cue a
            res = await api.request("PATCH", f"/v1/cues/{a['id']}", key, json={"description": "raced"})
            assert res.status_code == 200, res.text
        return await real(account_id, writes)

    monkeypatch.setattr(cues, "update_many", racing)
    res = await api.request("POST", "/v1/cues/pause", key, json={"labels": {"team": "x"}})
    body = res.json()
    assert (body["matched"], body["changed"], sorted(body["ids"])) == (2, 2, sorted([a["id"], b["id"]]))
    assert calls == [2, 1]  # the second round wrote only the cue that conflicted
    got = (await api.request("GET", f"/v1/cues/{a['id']}", key)).json()
    assert got["status"] == "paused" and got["description"] == "raced" and got["next_run"] is None
