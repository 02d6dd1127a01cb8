"""The login scripts against real Redis (one server and the cluster): login_limit's sliding window,
login_device_create's "live code" rule, login_device_step's guarded transitions and
login_device_poll's count-then-claim (store/login.py)."""

from __future__ import annotations

from cuefast.store import Status, Store
from cuefast.store.login import Limited, Poll

S = 1_000_000
T0 = 1_795_434_122_000_000
CODE = "c" * 64  # a device code's SHA-256, as the service passes it


async def test_login_limit_is_a_sliding_window_that_does_not_count_refusals(store: Store) -> None:
    login = store.login
    take = lambda t: login.take("dc", "203.0.113.9", limit=2, window_us=60 * S, now_us=t)  # noqa: E731
    assert await take(T0) == Limited(True, 0)
    assert await take(T0 + 10 * S) == Limited(True, 0)
    assert await take(T0 + 20 * S) == Limited(False, T0)  # the oldest says when to retry
    assert await store.redis.llen(store.keys.login_window("dc", "203.0.113.9")) == 2  # not counted
    assert await take(T0 + 60 * S) == Limited(True, 0)  # the first left the window
    assert await take(T0 + 61 * S) == Limited(False, T0 + 10 * S)
    await login.give_back("dc", "203.0.113.9", T0 + 60 * S)
    assert await take(T0 + 61 * S) == Limited(True, 0)
    assert 0 < await store.redis.pttl(store.keys.login_window("dc", "203.0.113.9")) <= 61_000


async def test_login_device_create_refuses_a_live_code_only(store: Store) -> None:
    login = store.login
    create = lambda t: login.create_device(CODE, now_us=t, expires_us=t + 900 * S, keep_s=4500)  # noqa: E731
    assert await create(T0) is True
    assert await store.redis.hgetall(store.keys.device_code(CODE)) == {
        "st": "pending",
        "ca": str(T0),
        "exp": str(T0 + 900 * S),
    }
    assert 4490 < await store.redis.ttl(store.keys.device_code(CODE)) <= 4500
    assert await create(T0 + 899 * S) is False
    assert await create(T0 + 900 * S) is True  # expired: replaced
    await login.step(CODE, now_us=T0 + 901 * S, from_status="pending", to_status="claimed")
    assert await create(T0 + 902 * S) is True  # claimed: replaced
    assert (await login.device(CODE) or {})["st"] == "pending"


async def test_login_device_step_checks_status_expiry_and_token(store: Store) -> None:
    login = store.login
    assert await login.step(CODE, now_us=T0, from_status="pending", to_status="email_sent") == (
        Status.NOT_FOUND,
        "",
    )
    await login.create_device(CODE, now_us=T0, expires_us=T0 + 900 * S, keep_s=4500)
    ok = await login.step(
        CODE,
        now_us=T0,
        from_status="pending",
        to_status="email_sent",
        fields={"tok": "t1", "email": "a@x.io"},
    )
    assert ok == (Status.OK, "")
    assert await login.step(CODE, now_us=T0, from_status="pending", to_status="email_sent") == (
        Status.WRONG_STATE,
        "email_sent",
    )
    assert await login.step(CODE, now_us=T0, from_status="email_sent", to_status="verifying", tok="t2") == (
        Status.CONFLICT,
        "",
    )
    late = T0 + 900 * S
    assert await login.step(CODE, now_us=late, from_status="email_sent", to_status="verifying", tok="t1") == (
        Status.WRONG_STATE,
        "expired",
    )
    done = await login.step(
        CODE, now_us=T0 + S, from_status="email_sent", to_status="verifying", tok="t1", fields={"tok": ""}
    )
    assert done == (Status.OK, "")
    held = await login.device(CODE)
    assert held is not None and held["st"] == "verifying" and "tok" not in held and held["email"] == "a@x.io"


async def test_login_device_poll_counts_then_hands_over_once(store: Store) -> None:
    login = store.login
    assert await login.poll(CODE, limit=3, now_us=T0) == Poll("expired")  # unknown
    await login.create_device(CODE, now_us=T0, expires_us=T0 + 900 * S, keep_s=4500)
    assert await login.poll(CODE, limit=3, now_us=T0 + S) == Poll("pending")
    assert await login.poll(CODE, limit=3, now_us=T0 + 2 * S) == Poll("pending")
    assert await login.poll(CODE, limit=3, now_us=T0 + 3 * S) == Limited(False, T0)  # 3 a minute
    await login.step(
        CODE,
        now_us=T0 + 2 * S,
        from_status="pending",
        to_status="approved",
        fields={"sealed": "SEALED", "acct": "acct-1", "email": "a@x.io", "new": 1},
    )
    after = T0 + 62 * S
    assert await login.poll(CODE, limit=3, now_us=after) == Poll(
        "approved", "SEALED", "acct-1", "a@x.io", True
    )
    held = await login.device(CODE)
    assert held is not None and held["st"] == "claimed" and "sealed" not in held
    assert await login.poll(CODE, limit=3, now_us=after + S) == Poll("claimed")
    assert await login.poll(CODE, limit=3, now_us=T0 + 2000 * S) == Poll("claimed")  # stays claimed
    other = "d" * 64
    await login.create_device(other, now_us=T0, expires_us=T0 + 900 * S, keep_s=4500)
    assert await login.poll(other, limit=3, now_us=T0 + 900 * S) == Poll("expired")
