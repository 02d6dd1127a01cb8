"""Monthly usage counters: each account's executions and outcomes per calendar month."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from cuefast.store.batch import Batch
from cuefast.store.repository import Repository

USAGE_TTL_S = 62 * 86400
"""a month's counters outlive the month long enough to be read for it"""


class UsageCounts(NamedTuple):
    """Active and paused cues, and the month's counters (``executions``, ``reported``,
    ``succeeded``, ``failed``)."""

    active: int
    paused: int
    counters: dict[str, int]


class Usage(Repository):
    async def counts(self, account_id: str, month: str) -> UsageCounts:
        """The cue counts and the month's usage counters (the account's hash plus each
        partition's outcome counters): one round trip."""
        k = self.keys
        pipe = self.wire.pipeline()
        for p in range(k.partitions):
            pipe.zcard(k.cue_index(p, account_id, "active"))
            pipe.zcard(k.cue_index(p, account_id, "paused"))
            pipe.hgetall(k.usage_part(p, account_id, month))
        pipe.hgetall(k.usage(account_id, month))
        res = await pipe.execute()
        counters: dict[str, int] = {}
        for hash_ in (*res[2:-1:3], res[-1]):
            for f, v in hash_.items():
                counters[str(f)] = counters.get(str(f), 0) + int(v)
        return UsageCounts(sum(res[0:-1:3]), sum(res[1:-1:3]), counters)

    async def add(self, field: str, counts: Mapping[tuple[str, str], int]) -> None:
        """``field`` += n on each (account, "YYYY-MM") monthly counter, one pipeline."""
        if not counts:
            return
        pipe = self.wire.pipeline()
        self._add(pipe, field, counts)
        await pipe.execute()

    async def count_executions(self, month: str, previous_month: str, counts: Mapping[str, int]) -> None:
        """Add to the month's executions counter of each account ({account id: n}), one pipeline.
        Every increment of ``executions`` goes through here: it is mirrored into the account
        hash (field ``ex:<month>``, ``previous_month``'s field dropped) so
        ``accounts_authenticate.lua`` can set the usage warning without reading another slot,
        and the account is marked dirty with it (the snapshot's copy of the hash stays exact)."""
        if not counts:
            return
        k = self.keys
        pipe = self.wire.pipeline()
        self._add(pipe, "executions", {(account_id, month): n for account_id, n in counts.items()})
        for account_id, n in counts.items():
            key = k.account(account_id)
            pipe.hincrby(key, f"ex:{month}", n)
            pipe.hdel(key, f"ex:{previous_month}")
            pipe.sadd(k.dirty(k.account_slot(account_id)), f"acct:{account_id}")
        await pipe.execute()

    def _add(self, pipe: Batch, field: str, counts: Mapping[tuple[str, str], int]) -> None:
        for (account_id, month), n in counts.items():
            key = self.keys.usage(account_id, month)
            pipe.hincrby(key, field, n)
            pipe.expire(key, USAGE_TTL_S)
