"""echo_save against real Redis: an echo record kept for its TTL, at most ``limit`` per client IP
and clock hour; a refused one is neither stored nor counted."""

from __future__ import annotations

from cuefast.store import Status, Store
from cuefast.store.echo import SAVE

IP = "198.51.100.7"
HOUR = 500_000


async def save(store: Store, token: str, limit: int = 2, hour: int = HOUR) -> Status:
    k = store.keys
    res = await store.scripts.run(SAVE, [k.echo_rate(IP, hour), k.echo(token)], [limit, '{"m":"GET"}', 300])
    return Status(int(res[0]))


async def test_save_keeps_the_record_and_counts_the_hour(store: Store) -> None:
    k = store.keys
    assert await save(store, "tok-1") is Status.OK
    assert await store.redis.get(k.echo("tok-1")) == '{"m":"GET"}'
    assert 299 <= await store.redis.ttl(k.echo("tok-1")) <= 300
    assert await store.redis.get(k.echo_rate(IP, HOUR)) == "1"
    assert 3599 <= await store.redis.ttl(k.echo_rate(IP, HOUR)) <= 3600


async def test_save_over_the_limit_stores_and_counts_nothing(store: Store) -> None:
    k = store.keys
    assert [await save(store, t) for t in ("a", "b", "c")] == [Status.OK, Status.OK, Status.LIMIT]
    assert await store.redis.exists(k.echo("c")) == 0
    assert await store.redis.get(k.echo_rate(IP, HOUR)) == "2"
    assert await save(store, "c", hour=HOUR + 1) is Status.OK  # the next hour counts afresh
    assert await store.redis.get(k.echo("c")) == '{"m":"GET"}'
