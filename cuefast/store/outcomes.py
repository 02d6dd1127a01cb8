"""Outcomes: an execution's outcome recorded once, atomically with its status effect."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from cuefast.store.repository import Repository, pairs
from cuefast.store.scripts import Arg, Call, Script
from cuefast.store.status import Status
from cuefast.store.turn_batches import Batches

RECORD = Script("outcomes_record", keys=("claims",), argv=("now", "prefix", "account_id"), rest="outcomes")


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
    SCRIPTS = (RECORD,)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batches: Batches[tuple[int, str], tuple[Outcome, Mapping[str, str] | None], Reported] = Batches(
            self._report
        )

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
        ``record_many`` and ``delivery_finish.lua``'s body outcomes: lib/record_outcome.lua.
        Outcomes of one account's executions of one partition that arrive in the same
        event-loop iteration share one call (``turn_batches``), recorded in arrival order —
        each answered as its own call, sent after the others, would have been."""
        p = self.keys.execution_partition(outcome.execution_id)
        if p is None:
            return Reported(Status.NOT_FOUND, "", "", None)
        return await self._batches.join((p, account_id), now_us, (outcome, states))

    async def _report(
        self, group: tuple[int, str], asked: Sequence[tuple[Outcome, Mapping[str, str] | None]], now_us: int
    ) -> list[Reported]:
        """One ``outcomes_record.lua`` call for ``asked`` (of one partition and account), in order."""
        p, account_id = group
        return _reported(await self.scripts.run(*self._call(p, account_id, asked, now_us)))

    def _call(
        self, p: int, account_id: str, asked: Sequence[tuple[Outcome, Mapping[str, str] | None]], now_us: int
    ) -> Call:
        """The ``outcomes_record.lua`` call recording ``asked`` on partition ``p``, in order."""
        k = self.keys
        args: list[Arg] = [now_us, k.part(p) + ":", account_id]
        for o, states in asked:
            args += [o.execution_id, o.outcome_json, int(o.success), o.state, o.error, len(states or ())]
            args += pairs(states or {})
        return RECORD, [k.claims(p)], args

    async def record_many(self, account_id: str, outcomes: Sequence[Outcome], now_us: int) -> list[Recorded]:
        """Many outcomes of the account's executions (ids with a partition), one
        ``outcomes_record.lua`` call per partition (no verification-mode states: each outcome
        carries its state), one round trip; a result per outcome
        (each recorded one counted in the usage counters by the same call, as ``report``)."""
        k = self.keys
        by_p: dict[int, list[int]] = {}
        for i, o in enumerate(outcomes):
            p = k.execution_partition(o.execution_id)
            assert p is not None
            by_p.setdefault(p, []).append(i)
        calls = [
            self._call(p, account_id, [(outcomes[i], None) for i in idx], now_us) for p, idx in by_p.items()
        ]
        out = [Recorded(Status.NOT_FOUND, "")] * len(outcomes)
        for idx, res in zip(by_p.values(), await self.scripts.run_many(calls), strict=True):
            for i, r in zip(idx, _reported(res), strict=True):
                out[i] = Recorded(r.status, r.execution_status)
        return out


def _reported(res: Sequence[Any]) -> list[Reported]:
    """An ``outcomes_record.lua`` reply: four values per outcome, in the call's order."""
    out = []
    for i in range(0, len(res), 4):
        status, st, state, created = Status(int(res[i])), str(res[i + 1]), str(res[i + 2]), res[i + 3]
        out.append(Reported(status, st, state, int(created) if created else None))
    return out
