"""API keys on the auth shards: issued keys resolve on their account's shard, and an install of
the layout before the shards upgrades at start with its issued keys still working."""

from __future__ import annotations

import secrets
import time

from cuefast.config import Settings
from cuefast.ids import key_sha
from cuefast.store.system import CURRENT_LAYOUT
from tests.conftest import Api, make_api


async def test_issued_and_regenerated_keys_are_on_their_accounts_shard(api: Api) -> None:
    k = api.rt.keys
    key = await api.register()
    account_id = await api.rt.store.accounts.account_of_key(key_sha(key))
    assert account_id is not None
    assert k.key_shard(key_sha(key)) == k.account_shard(account_id)
    new = await api.request("POST", "/v1/auth/key/regenerate", key, headers={"X-Confirm-Destructive": "true"})
    assert new.status_code == 200, new.text
    new_key = new.json()["api_key"]
    assert k.key_shard(key_sha(new_key)) == k.account_shard(account_id)
    assert (await api.request("GET", "/v1/auth/me", new_key)).status_code == 200


async def test_an_old_install_upgrades_at_start_and_its_keys_keep_working(settings_on: Settings) -> None:
    first, rt = await make_api(settings_on)
    k = rt.keys
    try:  # an account as the layout before the shards wrote it, with a key of another shard
        while True:
            key = "cue_sk_" + secrets.token_hex(16)
            if k.key_shard(key_sha(key)) != k.account_shard("acct_old"):
                break
        old = k.auth + ":"
        await rt.store.redis.hset(
            old + "acct:acct_old",
            mapping={
                "id": "acct_old",
                "email": "old@example.com",
                "email_lc": "old@example.com",
                "slug": "old",
                "plan": "free",
                "cue_limit": 10,
                "exec_limit": 1000,
                "rate_limit": 100,
                "wh_secret": "whsec_x",
                "alert_secret": "x",
                "key_sha": key_sha(key),
                "key_prefix": key[:12],
                "key_enc": "",
                "created": 1,
                "updated": 1,
            },
        )
        await rt.store.redis.hset(old + "keys", key_sha(key), "acct_old")
        await rt.store.redis.hset(k.emails, "old@example.com", "acct_old")
        await rt.store.redis.hset(k.slugs, "old", "acct_old")
        # a cue name reserved in the account slot, as the layout before 4 kept them
        held = f"cue_aaaaaaaaaaaa:{int(time.time())}"
        await rt.store.redis.hset(k.legacy_cue_names("acct_old"), "taken", held)
        await rt.store.system.set_layout(2)
    finally:
        await first.client.aclose()
        await rt.close()
    api, rt = await make_api(settings_on)
    try:
        assert await rt.store.system.layout() == CURRENT_LAYOUT
        assert await rt.store.redis.exists(k.legacy_cue_names("acct_old")) == 0
        assert list(await rt.store.redis.hgetall(k.cue_names("acct_old"))) == ["taken"]
        me = await api.request("GET", "/v1/auth/me", key)
        assert me.status_code == 200 and me.json()["email"] == "old@example.com"
        assert await rt.store.redis.get(k.cue_partitions("acct_old")) == ""  # backfilled: no cues
        res = await api.request("POST", "/v1/auth/register", json={"email": "OLD@example.com"})
        assert res.status_code == 409  # its e-mail is still taken
        limited = await api.request("GET", "/v1/cues", key)
        assert limited.status_code == 200 and limited.headers["X-RateLimit-Remaining"] == "98"
        body = {
            "name": "taken",
            "transport": "worker",
            "schedule": {"type": "recurring", "cron": "0 0 * * *"},
        }
        for _ in range(2):  # the key's first create, then one reserved by the auth script
            res = await api.request("POST", "/v1/cues", key, json=body)
            assert res.status_code == 409 and res.json()["error"]["code"] == "duplicate_cue_name"
    finally:
        await api.client.aclose()
        await rt.close()
