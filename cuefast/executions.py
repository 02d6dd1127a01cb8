"""Executions: the wire object (CONTRACT.md §8.1) and the read side (get, list, cue page).

Stored execution hash fields (partition slot, ``exec:<id>``): ``id cue acct tr sf st tb att
hs em sa da la ca ua pl os oc cw cla lh lx nxr od rf`` — scheduled_for, status,
triggered_by, attempts, http_status, error_message, started/delivered/last-attempt,
created/updated, payload JSON, outcome_state, outcome JSON, claimed_by_worker,
claimed_at, last heartbeat, lease expiry, next retry, outcome deadline, replayed_from.
Times are µs; an absent field is null on the wire.
"""

from __future__ import annotations

from typing import Any

import msgspec

from cuefast.errors import ExecutionNotFound
from cuefast.models import Account
from cuefast.store import Store
from cuefast.times import fmt_offset, fmt_z

_FILTER_FIELDS = ("st", "cw", "os", "tb", "cla")


def _int(value: str | None) -> int | None:
    return int(value) if value else None


def _time(h: dict[str, str], field: str) -> str | None:
    return fmt_z(_int(h.get(field)))


def render_execution(h: dict[str, str]) -> dict[str, Any]:
    outcome = h.get("oc")
    return {
        "id": h["id"],
        "cue_id": h["cue"],
        "scheduled_for": fmt_z(int(h["sf"])),
        "status": h["st"],
        "http_status": _int(h.get("hs")),
        "attempts": int(h.get("att") or 0),
        "error_message": h.get("em") or None,
        "started_at": _time(h, "sa"),
        "delivered_at": _time(h, "da"),
        "last_attempt_at": _time(h, "la"),
        "outcome": msgspec.Raw(outcome) if outcome else None,
        "created_at": fmt_z(int(h["ca"])),
        "updated_at": fmt_z(int(h["ua"])),
        "triggered_by": h.get("tb") or "scheduled",
        "payload": msgspec.Raw(h.get("pl") or "{}"),
        "outcome_state": h.get("os") or None,
        "claimed_by_worker": h.get("cw") or None,
        "claimed_at": _time(h, "cla"),
        "last_heartbeat_at": _time(h, "lh"),
        "lease_expires_at": _time(h, "lx"),
        "next_retry": _time(h, "nxr"),
        "outcome_deadline_at": _time(h, "od"),
        "replayed_from": h.get("rf") or None,
    }


class ExecutionFilters(msgspec.Struct, kw_only=True):
    cue_id: str | None = None
    statuses: frozenset[str] | None = None
    worker_id: str | None = None
    outcome_state: str | None = None
    triggered_by: str | None = None

    @property
    def only_cue(self) -> bool:
        return (
            self.statuses is None
            and self.worker_id is None
            and self.outcome_state is None
            and self.triggered_by is None
        )

    def match(self, st: str | None, cw: str | None, os_: str | None, tb: str | None) -> bool:
        return (
            (self.statuses is None or st in self.statuses)
            and (self.worker_id is None or cw == self.worker_id)
            and (self.outcome_state is None or os_ == self.outcome_state)
            and (self.triggered_by is None or (tb or "scheduled") == self.triggered_by)
        )


class ExecutionService:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, account: Account, execution_id: str) -> dict[str, Any]:
        h = await self.store.get_execution(execution_id)
        if h is None or h.get("acct") != account.id:
            raise ExecutionNotFound()
        return render_execution(h)

    async def cue_page(self, cue_id: str, ids: list[str]) -> list[dict[str, Any]]:
        rows = await self.store.get_executions(ids)
        return [render_execution(h) for h in rows if h and h.get("cue") == cue_id]

    async def list(
        self, account: Account, filters: ExecutionFilters, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int, str | None]:
        """A page (newest first), the filtered total, and the earliest ``claimed_at``."""
        keys = self.store.keys
        if filters.cue_id is not None:
            cue = await self.store.get_cue(filters.cue_id) if filters.cue_id.startswith("cue_") else None
            if cue is None or cue.get("acct") != account.id:
                return [], 0, None
            index_keys = [keys.cue_executions(filters.cue_id)]
        else:
            index_keys = [keys.execution_index(p, account.id) for p in range(keys.partitions)]
        members = await self.store.index_members(index_keys)  # [(created µs, id)], newest first
        fields = await self.store.execution_fields([eid for _, eid in members], _FILTER_FIELDS)
        matched: list[str] = []
        oldest: int | None = None
        for (_, eid), vals in zip(members, fields, strict=True):
            if vals is None:
                continue
            st, cw, os_, tb, cla = vals
            if not filters.match(st, cw, os_, tb):
                continue
            matched.append(eid)
            if cla:
                oldest = int(cla) if oldest is None else min(oldest, int(cla))
        page_ids = matched[offset : offset + limit]
        rows = await self.store.get_executions(page_ids)
        items = [render_execution(h) for h in rows if h]
        return items, len(matched), fmt_offset(oldest)
