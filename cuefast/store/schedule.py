"""The scheduler's timed sets: due cues, retries, delayed fires, outcome deadlines, what is next."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from cuefast.store.connect import UNREACHABLE
from cuefast.store.repository import Repository
from cuefast.store.scripts import Script

MATERIALIZE = Script(
    "schedule_materialize", keys=("due", "outbox"), argv=("now", "prefix", "members", "read"), rest="plan"
)
MOVE_RETRIES = Script("schedule_move_retries", keys=("retries", "outbox"), argv=("now", "prefix", "batch"))
MOVE_DELAYED = Script("schedule_move_delayed", keys=("delayed", "outbox"), argv=("now", "batch"))
EXPIRE_DEADLINES = Script("schedule_expire_deadlines", keys=("deadlines",), argv=("now", "prefix", "batch"))

UNREACHABLE_RETRY_US = 250_000
"""a partition whose node could not be reached is looked at again this soon"""
DUE_PATIENCE_S = 1.0
"""on Redis Cluster, how long the read of what is due waits for a node: one that hangs (not
refusing, so no error comes) is left out of that pass like a dead one"""

STEPS = frozenset({"cues", "retries", "delayed", "deadlines", "leases", "unclaimed"})
"""the timed sets a scheduler pass works on (``Schedule.due_work``)"""


class DueCue(NamedTuple):
    """A due cue: its next run µs, schedule summary (the ``sch`` field) and account ("" both
    when the cue is gone)."""

    cue_id: str
    due_us: int
    summary: str
    account_id: str


class Materialized(NamedTuple):
    """Executions created, cues skipped, per account the executions created blocked by the
    monthly limit (created as failed), the due cues read after the plan (``read``), and the
    (account, execution id) of claims ``cancel_previous`` ended (their task cap permits to give)."""

    created: int
    skipped: int
    blocked: dict[str, int]
    due: tuple[DueCue, ...] = ()
    ended: tuple[tuple[str, str], ...] = ()


class DueWork(NamedTuple):
    """{partition: due steps} (steps named in ``STEPS``) and µs until the earliest head of any
    timed set, due or not (None: nothing scheduled)."""

    due: dict[int, frozenset[str]]
    wait_us: int | None


class Schedule(Repository):
    SCRIPTS = (MATERIALIZE, MOVE_RETRIES, MOVE_DELAYED, EXPIRE_DEADLINES)

    async def due_cues(self, p: int, now_us: int, limit: int) -> list[DueCue]:
        """Up to ``limit`` due cues of partition ``p`` (``schedule_materialize.lua`` with no plan)."""
        return list((await self.materialize_words(p, now_us, [], read=limit)).due)

    async def materialize(
        self, p: int, now_us: int, plan: Sequence[Sequence[str]], members: bytes = b"", read: int = 0
    ) -> Materialized:
        """``materialize_words`` for a plan given as each cue's words."""
        return await self.materialize_words(p, now_us, [w for cue in plan for w in cue], members, read)

    async def materialize_words(
        self, p: int, now_us: int, words: Sequence[str], members: bytes = b"", read: int = 0
    ) -> Materialized:
        """Run ``schedule_materialize.lua`` for one partition: ``words`` are the plan's words, each
        sent as its own argument, ``members`` the 16-byte index member of every slot in plan order
        (``index_member``; empty: the script spells them, slower); then read up to ``read`` due
        cues in the same call."""
        k = self.keys
        args: list[str | int | bytes] = [now_us, k.part(p) + ":", members, read, *words]
        res = await self.scripts.run(MATERIALIZE, [k.due(p), k.outbox(p)], args)
        bl, rows = res[2], res[3]
        blocked = {str(bl[i]): int(bl[i + 1]) for i in range(0, len(bl), 2)}
        due = tuple(
            DueCue(str(rows[i]), int(float(rows[i + 1])), str(rows[i + 2]), str(rows[i + 3]))
            for i in range(0, len(rows), 4)
        )
        ended = tuple((str(res[4][i]), str(res[4][i + 1])) for i in range(0, len(res[4]), 2))
        return Materialized(int(res[0]), int(res[1]), blocked, due, ended)

    async def move_retries(self, p: int, now_us: int, batch: int) -> int:
        k = self.keys
        return int(
            await self.scripts.run(
                MOVE_RETRIES, [k.retries(p), k.outbox(p)], [now_us, k.part(p) + ":", batch]
            )
        )

    async def move_delayed(self, p: int, now_us: int, batch: int) -> int:
        k = self.keys
        return int(await self.scripts.run(MOVE_DELAYED, [k.delayed(p), k.outbox(p)], [now_us, batch]))

    async def expire_deadlines(self, p: int, now_us: int, batch: int) -> list[str]:
        """Executions whose outcome deadline passed → outcome_timeout; returns their ids."""
        k = self.keys
        res = await self.scripts.run(EXPIRE_DEADLINES, [k.deadlines(p)], [now_us, k.part(p) + ":", batch])
        return [str(v) for v in res[1:]]

    async def due_work(self, now_us: int, unclaimed_window_us: int | None) -> DueWork:
        """What the scheduler has to do now, from the head of every partition's timed sets in
        one pipeline. Lease expiries and missed-claim timeouts only with ``unclaimed_window_us``
        (a scheduler that runs the worker steps): unclaimed entries are due that long after
        their score. On Redis Cluster a partition whose primary cannot be reached is left out
        (looked at again ``UNREACHABLE_RETRY_US`` later), and so is one whose node has not
        answered within ``DUE_PATIENCE_S``; the call raises only when none can."""
        k = self.keys
        sets = [("cues", k.due), ("retries", k.retries), ("delayed", k.delayed), ("deadlines", k.deadlines)]
        if unclaimed_window_us is not None:
            sets += [("leases", k.claims), ("unclaimed", k.unclaimed)]
        async with self.wire.pipeline() as pipe:  # follows ASK while a slot migrates
            for p in range(k.partitions):
                for _, key in sets:
                    pipe.zrange(key(p), 0, 0, withscores=True)
            rows = await pipe.execute(raise_on_error=False, patience_s=DUE_PATIENCE_S)
        due: dict[int, frozenset[str]] = {}
        earliest: int | None = None
        for p in range(k.partitions):
            steps: set[str] = set()
            for (step, _), row in zip(sets, rows[p * len(sets) : (p + 1) * len(sets)], strict=True):
                if isinstance(row, UNREACHABLE):  # its node is down (a cluster failing over): look
                    at = now_us + UNREACHABLE_RETRY_US  # again soon, the other partitions meanwhile
                    earliest = at if earliest is None else min(earliest, at)
                    continue
                if isinstance(row, Exception):
                    raise row
                if not row:
                    continue
                at = int(float(row[0][1])) + ((unclaimed_window_us or 0) if step == "unclaimed" else 0)
                earliest = at if earliest is None else min(earliest, at)
                if at <= now_us:
                    steps.add(step)
            if steps:
                due[p] = frozenset(steps)
        return DueWork(due, None if earliest is None else earliest - now_us)
