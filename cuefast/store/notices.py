"""Notices: the streams of alert webhooks and on_failure webhooks and e-mails to send, their retries."""

from __future__ import annotations

from typing import Any, NamedTuple

from cuefast.store.scripts import Script
from cuefast.store.streams import GroupStreams

MOVE_DUE = Script("notices_move_due", keys=("retries", "notices"), argv=("now", "batch"))
FINISH = Script("notices_finish", keys=("notices", "retries"), argv=("group", "entry_id", "retry", "due"))


class Notice(NamedTuple):
    """One notice to send: ``kind`` "a" alert webhook | "w" on_failure webhook | "f" on_failure
    e-mail, ``ident`` the alert or execution id, the attempt, and the event µs (0: none)."""

    partition: int
    entry_id: str
    kind: str
    ident: str
    attempt: int
    at: int


def _notices(rows: list[tuple[int, str, Any]]) -> list[Notice]:
    return [
        Notice(
            p, entry_id, str(f.get("k", "")), str(f.get("i", "")), int(f.get("n") or 1), int(f.get("t") or 0)
        )
        for p, entry_id, f in rows
        if f
    ]


class Notices(GroupStreams):
    SCRIPTS = (MOVE_DUE, FINISH)
    GROUP = "notifiers"

    def streams(self) -> list[str]:
        return [self.keys.notices(p) for p in range(self.keys.partitions)]

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Notice]:
        """New notices for this consumer (``block_ms`` 0: do not block)."""
        return _notices(await self.read_group(consumer, count, block_ms if block_ms > 0 else None))

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[Notice]:
        """Notices another sender read but never finished (it died): take them over."""
        return _notices(await self.claim_group(consumer, min_idle_ms, count))

    async def finish(self, p: int, entry_id: str, retry: str = "", due_us: int = 0) -> None:
        """Acknowledge a notice entry; ``retry`` ("<kind>|<id>|<attempt>[|<event µs>]") schedules
        it again at ``due_us``."""
        k = self.keys
        await self.scripts.run(
            FINISH, [k.notices(p), k.notice_retries(p)], [self.GROUP, entry_id, retry, due_us]
        )

    async def move_due(self, now_us: int, batch: int = 500) -> int:
        """Retries that are due → back onto each partition's notices stream (one round trip)."""
        k = self.keys
        res = await self.scripts.run_many(
            [(MOVE_DUE, [k.notice_retries(p), k.notices(p)], [now_us, batch]) for p in range(k.partitions)],
            partial=True,  # a partition whose node is down is moved by a later sweep
        )
        return sum(int(n) for n in res if not isinstance(n, Exception))

    async def count_mail(self, account_id: str, hour: int) -> int:
        """Count one on_failure e-mail in the account's clock hour; returns the count so far."""
        key = self.keys.mail_count(account_id, hour)
        async with self.wire.pipeline() as pipe:  # the key has its TTL from its first write on
            pipe.execute_command("SET", key, 0, "EX", 3600, "NX")
            pipe.incr(key)
            _, n = await pipe.execute()
        return int(n)
