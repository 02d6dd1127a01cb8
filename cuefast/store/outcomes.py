"""Outcomes: an execution's outcome recorded once, atomically with its status effect."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from cuefast.store.repository import Repository, pairs
from cuefast.store.scripts import Arg, Call, Script
from cuefast.store.status import Status

RECORD = Script(
    "outcomes_record",
    keys=("execution",),
    argv=("now", "prefix", "outcome", "success", "outcome_state", "error", "account_id"),
    rest="states",
)
RECORD_MANY = Script(
    "outcomes_record_many", keys=("claims",), argv=("now", "prefix", "account_id"), rest="outcomes"
)


class Outcome(NamedTuple):
    """An outcome to record: the execution, the outcome JSON, its success, outcome_state and
    error text."""

    execution_id: str
    outcome_json: str
    success: bool
    state: str
    error: str


class Recorded(NamedTuple):
    """OK (``execution_status``: the execution's status now) | EXISTS (an outcome is already
    recorded) | NOT_FOUND."""

    status: Status
    execution_status: str


class Reported(NamedTuple):
    """``Recorded`` plus the outcome_state written and the execution's created_at µs (None:
    not stored)."""

    status: Status
    execution_status: str
    state: str
    created_us: int | None


class Outcomes(Repository):
    SCRIPTS = (RECORD, RECORD_MANY)

    async def record(self, outcome: Outcome, now_us: int) -> Recorded:
        res = await self.report(outcome, now_us)
        return Recorded(res.status, res.execution_status)

    async def report(
        self,
        outcome: Outcome,
        now_us: int,
        *,
        account_id: str = "",
        states: Mapping[str, str] | None = None,
    ) -> Reported:
        """Record ``outcome`` of an execution of ``account_id`` ("" = any account's; another
        account's is NOT_FOUND). ``states`` (verification mode → outcome_state) overrides
        ``outcome.state`` for the mode of the execution's cue, read in the same script call.
        Every recorded outcome is counted in the monthly usage counters by the same call (the
        partition's hash: ``Keys.usage_part``, which ``Usage.counts`` adds up), as by
        ``record_many`` and ``delivery_finish.lua``'s body outcomes: lib/record_outcome.lua."""
        k = self.keys
        p = k.execution_partition(outcome.execution_id)
        if p is None:
            return Reported(Status.NOT_FOUND, "", "", None)
        res = await self.scripts.run(
            RECORD,
            [k.execution(p, outcome.execution_id)],
            [
                now_us,
                k.part(p) + ":",
                outcome.outcome_json,
                int(outcome.success),
                outcome.state,
                outcome.error,
                account_id,
                *pairs(states or {}),
            ],
        )
        status = Status(int(res[0]))
        if status is not Status.OK:
            return Reported(status, "", "", None)
        return Reported(status, str(res[1]), str(res[2]), int(res[3]) if res[3] else None)

    async def record_many(self, account_id: str, outcomes: Sequence[Outcome], now_us: int) -> list[Recorded]:
        """Many outcomes of the account's executions (ids with a partition), one
        ``outcomes_record_many.lua`` call per partition, one round trip; a result per outcome
        (each recorded one counted in the usage counters by the same call, as ``report``)."""
        k = self.keys
        by_p: dict[int, list[int]] = {}
        for i, o in enumerate(outcomes):
            p = k.execution_partition(o.execution_id)
            assert p is not None
            by_p.setdefault(p, []).append(i)
        calls: list[Call] = []
        for p, idx in by_p.items():
            args: list[Arg] = [now_us, k.part(p) + ":", account_id]
            for i in idx:
                o = outcomes[i]
                args += [o.execution_id, o.outcome_json, int(o.success), o.state, o.error]
            calls.append((RECORD_MANY, [k.claims(p)], args))
        out = [Recorded(Status.NOT_FOUND, "")] * len(outcomes)
        for idx, res in zip(by_p.values(), await self.scripts.run_many(calls), strict=True):
            for n, i in enumerate(idx):
                out[i] = Recorded(Status(int(res[2 * n])), str(res[2 * n + 1]))
        return out
