"""How a cue is stored (docs/DESIGN.md "Why a cue is two keys"): a listpack hash of small fields
plus one string with the config and payload — and everything reading a cue sees the same cue."""

from __future__ import annotations

import pytest

from cuefast.clock import FrozenClock
from cuefast.config import Settings
from cuefast.engine.scheduler import Scheduler
from cuefast.models import (
    CONFIG_DECODER,
    Alerts,
    Callback,
    CueConfig,
    Delivery,
    OnFailure,
    Retry,
    Schedule,
    Verification,
    config_json,
    schedule_summary,
    stored_config,
)
from cuefast.store.delivery import Lease
from cuefast.times import parse_datetime
from tests.api.test_cues import HOOK, create, webhook_cue
from tests.conftest import Api, make_api


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


@pytest.mark.parametrize(
    "cfg",
    [
        CueConfig(schedule=Schedule(type="recurring", cron="*/5 * * * *", timezone="America/New_York")),
        CueConfig(schedule=Schedule(type="once", at=1_900_000_000_000_000), catch_up="none"),
        CueConfig(
            description='line\nbreak "quoted" \\ back',
            schedule=Schedule(type="recurring", cron="0 9 * * 1-5", timezone="Asia/Kolkata"),
            callback=Callback(url="https://x.example/h?a=1", method="PUT", headers={"X-A": "b"}),
            retry=Retry(max_attempts=0, backoff_minutes=[2]),
            on_failure=OnFailure(email=False, webhook="https://y.example/f", pause=True),
            verification=Verification(mode="none"),
            delivery=Delivery(timeout_seconds=5, outcome_deadline_seconds=None),
            alerts=Alerts(consecutive_failures=1, missed_window_multiplier=2),
            catch_up="all",
        ),
    ],
)
def test_stored_config_and_summary_give_back_the_config(cfg: CueConfig) -> None:
    stored, sch = stored_config(cfg), schedule_summary(cfg)
    assert "\n" not in stored and "schedule" not in stored
    assert CONFIG_DECODER.decode(config_json(stored, sch)) == cfg


def test_defaults_are_not_stored() -> None:
    cfg = CueConfig(schedule=Schedule(type="recurring", cron="* * * * *"), callback=Callback(url=HOOK))
    assert stored_config(cfg) == '{"callback":{"url":"' + HOOK + '"},"retry":{"backoff_minutes":[1,5,15]}}'


async def test_cue_keys_stay_compact_and_follow_create_patch_delete(api: Api) -> None:
    r, keys = api.rt.store.redis, api.rt.keys
    key = await api.register()
    body = webhook_cue(
        "daily-digest",
        schedule={"type": "recurring", "cron": "*/5 * * * *", "timezone": "America/New_York"},
        payload={"task": "daily-digest", "channel": "ops", "limit": 20},
        retry={"max_attempts": 5, "backoff_minutes": [1, 5, 30]},
    )
    cue = await create(api, key, body)
    cid = cue["id"]
    assert await r.object("encoding", keys.cue(cid)) == "listpack"
    fields = await r.hgetall(keys.cue(cid))
    assert set(fields) == {"acct", "name", "status", "tr", "nr", "ca", "sch", "pl"}  # defaults omitted
    assert all(len(v) <= 64 for v in fields.values())
    assert fields["pl"] == '{"task":"daily-digest","channel":"ops","limit":20}'
    stored = await r.get(keys.cue_config(cid))
    assert "\n" not in stored and "schedule" not in stored
    got = (await api.request("GET", f"/v1/cues/{cid}", key)).json()
    assert {k: got[k] for k in cue if k != "warning"} == {k: v for k, v in cue.items() if k != "warning"}
    listed = (await api.request("GET", "/v1/cues", key)).json()
    assert listed["total"] == 1 and listed["cues"][0]["id"] == cid

    res = await api.request(
        "PATCH",
        f"/v1/cues/{cid}",
        key,
        json={"payload": {"n": 2}, "catch_up": "none", "schedule": {"timezone": "UTC"}, "status": "paused"},
    )
    assert res.status_code == 200, res.text
    patched = res.json()
    assert patched["payload"] == {"n": 2} and patched["catch_up"] == "none"
    assert patched["schedule"] == {"type": "recurring", "timezone": "UTC", "cron": "*/5 * * * *"}
    assert (await api.request("GET", f"/v1/cues/{cid}", key)).json()["payload"] == {"n": 2}
    assert await r.hget(keys.cue(cid), "sch") == "recurring|UTC|none||*/5 * * * *"
    assert (await api.request("GET", "/v1/cues?status=paused", key)).json()["total"] == 1
    assert (await api.request("GET", "/v1/cues", key)).json()["total"] == 1
    res = await api.request("PATCH", f"/v1/cues/{cid}", key, json={"description": "only config"})
    assert res.json()["payload"] == {"n": 2}  # the payload is kept when only the config changes
    assert await r.object("encoding", keys.cue(cid)) == "listpack"
    # a payload over 64 B moves to the config string (and back): the hash stays a listpack
    big = {"text": "x" * 100}
    res = await api.request("PATCH", f"/v1/cues/{cid}", key, json={"payload": big})
    assert res.json()["payload"] == big
    assert await r.hget(keys.cue(cid), "pl") is None
    assert (await r.get(keys.cue_config(cid))).endswith('\n{"text":"' + "x" * 100 + '"}')
    assert await r.object("encoding", keys.cue(cid)) == "listpack"
    assert (await api.request("GET", f"/v1/cues/{cid}", key)).json()["payload"] == big
    res = await api.request("PATCH", f"/v1/cues/{cid}", key, json={"payload": {"n": 3}, "description": "d"})
    assert res.json()["payload"] == {"n": 3} and await r.hget(keys.cue(cid), "pl") == '{"n":3}'
    assert "\n" not in await r.get(keys.cue_config(cid))

    assert (await api.request("DELETE", f"/v1/cues/{cid}", key)).status_code == 204
    assert await r.exists(keys.cue(cid), keys.cue_config(cid)) == 0


@pytest.mark.parametrize("payload", [{"n": 1}, {"text": "y" * 200}])
async def test_scheduler_and_dispatcher_read_short_and_long_payloads(
    settings: Settings, payload: dict[str, object]
) -> None:
    clock = FrozenClock(parse_datetime("2031-01-06T08:59:30Z"))
    api, rt = await make_api(settings, clock)
    try:
        key = await api.register()
        cue = await create(
            api, key, webhook_cue("p", schedule={"type": "recurring", "cron": "* * * * *"}, payload=payload)
        )
        clock.set(parse_datetime("2031-01-06T09:00:00.2Z"))
        assert await Scheduler(rt.store, clock).tick() == 1
        res = await api.request("GET", f"/v1/executions?cue_id={cue['id']}", key)
        (e,) = res.json()["executions"]
        assert e["payload"] == payload
        p = rt.keys.cue_partition(cue["id"])
        (row,) = (await rt.store.delivery.start({p: [e["id"]]}, clock.now_us(), timeout_s=30, stale_s=60))[p]
        assert isinstance(row, Lease)
        assert CONFIG_DECODER.decode(row.config).callback.url == HOOK and row.name == "p"
    finally:
        await api.client.aclose()
        await rt.close()
