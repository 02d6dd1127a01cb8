"""Pausing and resuming cues: what a status change does to next_run, for one cue or many.

``PATCH /v1/cues/{id}`` (``CueService._update_once``) and the bulk ``POST /v1/cues/pause`` /
``/resume`` decide each cue's new ``next_run`` with ``next_run_after`` and write it with the
same script (``cues_update.lua``: the cue's version must not have moved); the bulk path reads
and writes a batch of cues per round trip and re-reads only the cues a concurrent write moved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cuefast.errors import CuefastError, InvalidSchedule
from cuefast.ids import is_cue_id, scheduled_execution_id
from cuefast.models import Account
from cuefast.services.cue_input import Patched
from cuefast.store import Status

if TYPE_CHECKING:
    from cuefast.services.cues import CueService

BATCH = 500
"""cues read and written per round trip by the bulk path"""
MAX_IDS = 1000


async def next_run_after(
    svc: CueService,
    account: Account,
    h: dict[str, str],
    patch: Patched,
    *,
    status: str,
    scheduled: int | None,
    now: int,
) -> tuple[str | int, CuefastError | None]:
    """What PATCH does to next_run (§7.7); an error for a fired one-time cue. ``scheduled``
    is the next run of a changed schedule (from the schedule stage)."""
    if status == "paused":
        return "", None
    resuming = status == "active" and h["status"] != "active"
    if not resuming and not (patch.schedule_changed and status == "active"):
        return "keep", None
    sched = patch.config.schedule
    if sched.type == "recurring":
        nr = scheduled if patch.schedule_changed else svc.next_run_for(sched, now)
        return ("" if nr is None else nr), None
    # one-time
    assert sched.at is not None
    if patch.at_text is None and await fired(svc, account, h, sched.at):
        if resuming:
            return "", InvalidSchedule("One-time cue has already fired; set a new schedule.at")
        return "keep", None
    return sched.at, None


async def fired(svc: CueService, account: Account, h: dict[str, str], at: int) -> bool:
    """Whether the scheduled execution of a one-time cue's ``at`` exists or existed: the
    cue's ``fa`` (set by ``schedule_materialize.lua`` when it fired; survives the execution's retention
    trim and a restore), else the execution in Redis or in history (a cue that fired before
    ``fa`` was recorded)."""
    if h.get("fa") == str(at):
        return True
    cue_id = h["id"]
    k = svc.store.keys
    # the slot's id, and the one written before ids carried ``cue_byte`` (the partition itself)
    for byte in dict.fromkeys((k.cue_byte(cue_id), k.cue_partition(cue_id))):
        eid = scheduled_execution_id(cue_id, at, byte)
        if await svc.store.executions.exists(eid):
            return True
        history = svc.executions.history
        if history is not None and await history.get(account.id, eid) is not None:
            return True
    return False


async def set_status_many(
    svc: CueService,
    account: Account,
    status: str,
    *,
    ids: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Pause (``status`` "paused": active cues) or resume ("active": paused cues) the account's
    cues among ``ids``, or those carrying every one of ``labels``. ``matched``: the account's
    cues selected; ``changed`` / ``ids``: those this call moved (a cue already in ``status``,
    completed, failed, or a one-time cue that already fired is matched, not changed)."""
    from cuefast.services.cues import stored_cue_config  # cues.py imports this module

    store = svc.store
    if labels is not None:
        candidates = await store.cues.label_candidates(account.id, list(labels.items()))
    else:
        candidates = [c for c in dict.fromkeys(ids) if is_cue_id(c)]
    matched: set[str] = set()
    changed: list[str] = []
    wake: int | None = None
    for start in range(0, len(candidates), BATCH):
        pending = candidates[start : start + BATCH]
        for _ in range(10):  # re-read only the cues a concurrent write moved
            now = svc.clock.now_us()
            rows = await store.cues.get_many(pending)
            writes: list[tuple[str, str, str, str, dict[str, str | int]]] = []
            for cue_id, h in zip(pending, rows, strict=True):
                if h is None or h.get("acct") != account.id:
                    continue  # gone, or another account's: never touched
                cfg = stored_cue_config(h)
                if labels is not None and any(cfg.labels.get(k) != v for k, v in labels.items()):
                    continue  # the index held more than the cue (docs/DESIGN.md "Cue labels")
                matched.add(cue_id)
                if h["status"] != ("active" if status == "paused" else "paused"):
                    continue
                next_run, error = await next_run_after(
                    svc, account, h, Patched(cfg), status=status, scheduled=None, now=now
                )
                if error is not None:
                    continue
                fields: dict[str, str | int] = {"ua": now, "v": int(h.get("v") or 1) + 1}
                writes.append((cue_id, h.get("v") or "1", status, str(next_run), fields))
            results = await store.cues.update_many(account.id, writes)
            pending = []
            for (cue_id, _, _, next_run, _), res in zip(writes, results, strict=True):
                if res is Status.OK:
                    changed.append(cue_id)
                    if next_run not in ("", "keep"):
                        wake = int(next_run) if wake is None else min(wake, int(next_run))
                elif res is Status.CONFLICT:
                    pending.append(cue_id)
            if not pending:
                break
    if wake is not None:
        await store.wake.due(wake, svc.clock.now_us())  # due soon: wake the schedulers
    return {"matched": len(matched), "changed": len(changed), "ids": changed}
