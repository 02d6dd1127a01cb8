"""Bulk replay (cuefast): select finished executions by filter, replay them at a bounded rate."""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

import msgspec

from cuefast.clock import Clock
from cuefast.errors import CuefastError, ReplayNotFound, api_error
from cuefast.ids import is_cue_id
from cuefast.models import Account
from cuefast.services.executions import ExecutionService
from cuefast.services.validate import MISSING, Checker, require_object
from cuefast.store import Status, Store
from cuefast.times import InstantOutOfRange, fmt_offset, parse_datetime

log = logging.getLogger("cuefast.replays")

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
MAX_RATE = 1_000
DEFAULT_RATE = 100
LEASE_US = 60_000_000
"""a runner's hold on a batch: another may take it again after this (then re-running it is
harmless: each replay is idempotent per (job, source))"""
_FILTERS = ("cue_id", "status", "status__in", "outcome_state", "triggered_by", "since", "until")
_PAGE = 1_000
_AFTER_EVERY_ID = "g"
"""a keyset id after every execution id (ids are lowercase hex): from ``until`` inclusive"""


class _Selection(msgspec.Struct, kw_only=True):
    cue_id: str | None = None
    statuses: list[str] | None = None
    outcome_state: str | None = None
    triggered_by: str | None = None
    since_us: int | None = None
    until_us: int | None = None


def _instant(c: Checker, loc: str, value: Any) -> int | None:
    text = c.string(loc, value, min_len=1, max_len=64)
    if text is MISSING:
        return None
    try:
        return parse_datetime(text)
    except InstantOutOfRange:
        c.add(loc, "Input should be between 1970 and 2199")
    except ValueError:
        c.add(loc, "Input should be a valid datetime")
    return None


def _read_filter(c: Checker, flt: dict[str, Any]) -> dict[str, Any]:
    """The filter's fields, checked and normalised (what the job shows back)."""
    shown: dict[str, Any] = {}
    for name in flt:
        if name not in _FILTERS:
            c.add(f"body.filter.{name}", "Extra inputs are not permitted")
    for name in ("cue_id", "status", "outcome_state", "triggered_by"):
        if flt.get(name) is not None:
            value = c.string(f"body.filter.{name}", flt[name], min_len=1, max_len=64, single_line=True)
            if value is not MISSING:
                shown[name] = value
    items = flt.get("status__in")
    if isinstance(items, str):
        items = [s.strip() for s in items.split(",") if s.strip()]
    if items is not None:
        if isinstance(items, list) and items and all(isinstance(s, str) and 0 < len(s) <= 64 for s in items):
            shown["status__in"] = sorted(set(items))
        else:
            c.add("body.filter.status__in", "Input should be a non-empty list of statuses")
    for name in ("since", "until"):
        if flt.get(name) is not None:
            us = _instant(c, f"body.filter.{name}", flt[name])
            if us is not None:
                shown[name] = us
    return shown


def _read(body: Any) -> tuple[_Selection, dict[str, Any], int, int, str | None]:
    """The request's selection, its filter as given (normalised), limit, rate and idempotency
    key; 422 with every problem, 400 ``conflicting_filters`` for ``status`` with ``status__in``."""
    body = require_object(body)
    c = Checker()
    for name in body:
        if name not in ("filter", "limit", "rate_per_second", "idempotency_key"):
            c.add(f"body.{name}", "Extra inputs are not permitted")
    raw = body.get("filter")
    flt = c.obj("body.filter", {} if raw is None else raw)
    shown = _read_filter(c, {} if flt is MISSING else flt)
    limit = c.integer("body.limit", body.get("limit", DEFAULT_LIMIT), ge=1, le=MAX_LIMIT)
    rate = c.integer("body.rate_per_second", body.get("rate_per_second", DEFAULT_RATE), ge=1, le=MAX_RATE)
    key = None
    if body.get("idempotency_key") is not None:
        key = c.string("body.idempotency_key", body["idempotency_key"], min_len=1, max_len=256)
    c.raise_if_any()
    if "status" in shown and "status__in" in shown:
        raise api_error(400, "conflicting_filters", "Pass either `status` or `status__in`, not both.")
    sel = _Selection(
        cue_id=shown.get("cue_id"),
        statuses=[shown["status"]] if "status" in shown else shown.get("status__in"),
        outcome_state=shown.get("outcome_state"),
        triggered_by=shown.get("triggered_by"),
        since_us=shown.get("since"),
        until_us=shown.get("until"),
    )
    for name in ("since", "until"):
        if name in shown:
            shown[name] = fmt_offset(shown[name])
    return sel, shown, int(limit), int(rate), key


def render_job(job_id: str, h: dict[str, str]) -> dict[str, Any]:
    return {
        "id": job_id,
        "status": h.get("status", "running"),
        "filter": msgspec.json.decode(h.get("filter", "{}")),
        "limit": int(h.get("limit", "0")),
        "rate_per_second": int(h.get("rate", "0")),
        "selected": int(h.get("selected", "0")),
        "replayed": int(h.get("replayed", "0")),
        "skipped": int(h.get("skipped", "0")),
        "last_error": h.get("err") or None,
        "created_at": fmt_offset(int(h.get("created", "0"))),
        "finished_at": fmt_offset(int(h["finished"])) if h.get("finished") else None,
    }


class ReplayService:
    """``POST /v1/executions/replay`` and ``GET /v1/replays/{id}``; ``step`` is the runner's."""

    def __init__(self, store: Store, clock: Clock, executions: ExecutionService) -> None:
        self.store = store
        self.clock = clock
        self.executions = executions

    async def start(self, account: Account, body: Any) -> dict[str, Any]:
        """Select the sources and store the job (with an idempotency key used before for the
        same request: that job, as it is now)."""
        sel, shown, limit, rate, idempotency_key = _read(body)
        key_digest = fingerprint = ""
        if idempotency_key is not None:
            key_digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
            fingerprint = hashlib.sha256(
                msgspec.json.encode({"f": shown, "l": limit, "r": rate}, order="sorted")
            ).hexdigest()[:32]
        sources = await self._select(account, sel, limit)
        now = self.clock.now_us()
        job_id = "rpl_" + os.urandom(9).hex()
        fields: dict[str, str | int] = {
            "acct": account.id,
            "status": "running" if sources else "done",
            "filter": msgspec.json.encode(shown).decode(),
            "limit": limit,
            "rate": rate,
            "selected": len(sources),
            "replayed": 0,
            "skipped": 0,
            "pos": 0,
            "created": now,
        }
        if not sources:
            fields["finished"] = now
        status, held = await self.store.replays.create(
            job_id, account.id, fields, sources, key_digest=key_digest, fingerprint=fingerprint, now_us=now
        )
        if status is Status.CONFLICT:
            raise api_error(
                409,
                "idempotency_key_conflict",
                f"Idempotency key reused with a different request. Existing replay: {held}",
            )
        if status is Status.REPEAT:
            return await self.get(account, held)
        return render_job(job_id, {k: str(v) for k, v in fields.items()})

    async def get(self, account: Account, job_id: str) -> dict[str, Any]:
        if not (job_id.startswith("rpl_") and len(job_id) == 22 and job_id[4:].isalnum()):
            raise ReplayNotFound()
        h = await self.store.replays.get(job_id)
        if h.get("acct") != account.id:
            raise ReplayNotFound()
        return render_job(job_id, h)

    async def _select(self, account: Account, sel: _Selection, limit: int) -> list[str]:
        """The matching executions Redis holds, newest first, from the listing indexes: pages of
        up to 1,000 by keyset cursor, from ``until`` down to ``since``."""
        if sel.cue_id is not None:
            if not is_cue_id(sel.cue_id):
                return []
            if await self.store.cues.owner(sel.cue_id) != account.id:
                return []
        after = None if sel.until_us is None else (sel.until_us, _AFTER_EVERY_ID)
        picked: list[str] = []
        while len(picked) < limit:
            want = min(_PAGE, limit - len(picked))
            listing = await self.store.executions.listing(
                account.id,
                offset=0,
                limit=want,
                cue_id=sel.cue_id,
                statuses=sel.statuses,
                outcome_state=sel.outcome_state,
                triggered_by=sel.triggered_by,
                partitions=account.partitions,
                after=after,
                created=True,
            )
            created = listing.created_us or []
            for eid, us in zip(listing.ids, created, strict=True):
                if sel.since_us is not None and us < sel.since_us:
                    return picked
                picked.append(eid)
            if len(listing.ids) < want:
                break
            after = (created[-1], listing.ids[-1])
        return picked

    async def step(self) -> int:
        """One runner pass: a batch of every due job (``rate_per_second`` sources each, one
        batch per job per second). The number of sources handled."""
        done = 0
        for job_id in await self.store.replays.due(self.clock.now_us()):
            batch = await self.store.replays.take(job_id, self.clock.now_us(), LEASE_US)
            if batch is None:
                continue
            replayed = skipped = 0
            last_error = ""
            for src in batch.ids:
                try:
                    await self.executions.replay_one(batch.account_id, src, job_id=job_id)
                    replayed += 1
                except CuefastError as exc:
                    skipped += 1
                    last_error = f"{src}: {exc.code}"
            now = self.clock.now_us()
            await self.store.replays.advance(
                job_id,
                batch,
                replayed=replayed,
                skipped=skipped,
                next_at_us=now + 1_000_000,
                last_error=last_error,
                now_us=now,
            )
            done += len(batch.ids)
        return done
