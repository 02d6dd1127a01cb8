"""Executions: the wire object (CONTRACT.md §8.1) and the read side (get, list, cue page).

Stored execution hash fields (partition slot, ``exec:<id>``): ``cue acct tr sf st tb att
hs em sa da la ca ua pl os oc cw cla lh lx nxr od rf`` — scheduled_for, status,
triggered_by, attempts, http_status, error_message, started/delivered/last-attempt,
created/updated, payload JSON, outcome_state, outcome JSON (null members left out),
claimed_by_worker, claimed_at, last heartbeat, lease expiry, next retry, outcome deadline,
replayed_from; ``ft`` fire_at (jitter: written only when the cue has ``jitter_seconds``, the
wire's ``fire_at`` key is absent otherwise). Times are µs; an absent field is null on the wire
(attempts 0, triggered_by scheduled, updated = created). The id is the key's (``Executions.get``
adds it; hashes written before layout 2 also held an ``id`` field).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from cuefast.clock import Clock
from cuefast.errors import (
    Conflict,
    CueNotFound,
    ExecutionNotFound,
    InvalidPayload,
    InvalidPayloadSize,
    InvalidSchedule,
    api_error,
)
from cuefast.ids import is_cue_id, is_execution_id, new_execution_id
from cuefast.metrics import EXECUTIONS_CREATED, Metrics
from cuefast.models import Account
from cuefast.services.outcomes import render_outcome
from cuefast.services.render import (
    data_error,
    data_errors,
    render_rows,
    stored_int,
    stored_json,
    stored_time,
)
from cuefast.services.validate import MISSING, Checker, has_bad_text, require_object
from cuefast.store import Status, Store
from cuefast.store.executions import Listing, execution_of
from cuefast.times import RANGE_TEXT, InstantOutOfRange, fmt_offset, fmt_z, parse_datetime

if TYPE_CHECKING:
    from cuefast.durability.history import History

MAX_PAYLOAD_BYTES = 1_048_576
TERMINAL = frozenset({"success", "failed", "missed", "outcome_timeout", "skipped", "cancelled"})
"""final statuses: the contract's four and the overlap policy's (lib/overlap.lua OV_FINAL)"""


def triggered_by(tb: str | None) -> str:
    """An execution's ``triggered_by`` from its stored ``tb`` field, which the scheduler's
    executions do not carry (the default, ``scheduled``): the one definition, read by every
    Python reader (Lua: ``lua/lib/one_time.lua``)."""
    return tb or "scheduled"


_JSON = msgspec.json.Decoder()


def stored_outcome(raw: str | None, eid: str) -> Any:
    """A stored outcome JSON (its null members left out: ``outcomes.outcome_json``) as the
    contract's Outcome object; None when absent or unreadable (a logged data error)."""
    if not raw:
        return None
    try:
        return render_outcome(_JSON.decode(raw))
    except msgspec.DecodeError:
        data_error("execution", eid, "outcome")
        return None


def render_execution(h: dict[str, str]) -> dict[str, Any]:
    """A stored execution hash → the contract's Execution object (§8.1); a stored value that
    cannot be rendered is null (``{}`` for the payload) and a logged data error."""
    eid = h["id"]
    get = h.get

    def time(field: str, name: str) -> str | None:  # stored_time, its usual case inlined
        raw = get(field)
        if not raw:
            return None
        try:
            text = fmt_z(int(raw))
        except ValueError:
            text = None
        return text if text is not None else stored_time(raw, fmt_z, "execution", eid, name)

    created = time("ca", "created_at")
    out = {
        "id": eid,
        "cue_id": h["cue"],
        "scheduled_for": time("sf", "scheduled_for"),
        "status": h["st"],
        "http_status": stored_int(h.get("hs"), "execution", eid, "http_status", None),
        "attempts": stored_int(h.get("att"), "execution", eid, "attempts"),
        "error_message": h.get("em") or None,
        "started_at": time("sa", "started_at"),
        "delivered_at": time("da", "delivered_at"),
        "last_attempt_at": time("la", "last_attempt_at"),
        "outcome": stored_outcome(h.get("oc"), eid),
        "created_at": created,
        "updated_at": time("ua", "updated_at") if get("ua") else created,
        "triggered_by": triggered_by(h.get("tb")),
        "payload": stored_json(h.get("pl"), "execution", eid, "payload", "{}"),
        "outcome_state": h.get("os") or None,
        "claimed_by_worker": h.get("cw") or None,
        "claimed_at": time("cla", "claimed_at"),
        "last_heartbeat_at": time("lh", "last_heartbeat_at"),
        "lease_expires_at": time("lx", "lease_expires_at"),
        "next_retry": time("nxr", "next_retry"),
        "outcome_deadline_at": time("od", "outcome_deadline_at"),
        "replayed_from": h.get("rf") or None,
    }
    if get("ft"):  # jitter: only a jittered scheduled execution has a fire_at apart from its slot
        out["fire_at"] = time("ft", "fire_at")
    return out


def render_executions(rows: list[dict[str, str] | None]) -> list[dict[str, Any]]:
    """A listing's rows; one that cannot be rendered at all is logged and left out."""
    return render_rows(rows, render_execution, "execution", lambda h: h.get("id", "?"))


_ENCODER = msgspec.json.Encoder()
_RENDERED: dict[tuple[str, str], msgspec.Raw] = {}
_RENDERED_BYTES = [0]
RENDERED_MAX_BYTES = 4 << 20
"""what the rendered rows a process remembers may hold (hash + JSON + their objects; emptied
when full): a few thousand rows — the pages dashboards and agents poll — filled within minutes,
so a serving process's memory levels off early (16 MiB took a soak's whole 10 minutes)"""
_ROW_OBJECTS = 256
"""bytes of the key tuple, the strings' headers, the Raw and the dict slot of one row"""
RENDERED_ROW_MAX = 16 << 10
"""a row bigger than this (a large payload or outcome) is rendered every time"""


Rows = list[Any]
"""a listing's rendered rows (dicts, or their JSON as ``msgspec.Raw``)"""


class Cursor(NamedTuple):
    """Where a cursor-paged listing goes on: after ``after`` = (created µs, id) in Redis, or at
    offset ``history`` into the PostgreSQL history (exactly one is set)."""

    after: tuple[int, str] | None
    history: int | None

    def encode(self) -> str:
        text = f"h{self.history}" if self.after is None else f"r{self.after[0]}.{self.after[1]}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @staticmethod
    def decode(token: str) -> Cursor | None:
        """The cursor a ``next_cursor`` spelt; None for anything else."""
        if not 0 < len(token) <= 96 or not token.isascii():
            return None
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        except ValueError:
            return None
        if text[:1] == "h" and text[1:].isdigit() and len(text) < 12:
            return Cursor(None, int(text[1:]))
        us, _, eid = text[1:].partition(".")
        if text[:1] == "r" and us.isdigit() and len(us) < 20 and is_execution_id(eid):
            return Cursor((int(us), eid), None)
        return None


def _last_created(listing: Listing, limit: int) -> tuple[int, str]:
    """(created µs, id) of the ``limit``-th id of a listing asked for ``limit + 1``."""
    eid = listing.ids[limit - 1]
    if listing.created_us is not None:
        return listing.created_us[limit - 1], eid
    assert listing.rows is not None
    h = execution_of(eid, listing.rows[limit - 1])
    return int((h or {}).get("ca") or 0), eid


def render_listed(ids: Sequence[str], rows: Sequence[str]) -> list[Any]:
    """A listing's rows as a script returned them (``Listing.rows``), each rendered to JSON once
    per distinct stored hash: the key is the id with the hash's JSON text, so any change to
    the hash is a new key, and ``render_execution`` reads nothing else. A listing polled again
    (an agent's loop, a dashboard) re-renders only what changed. Bounded in bytes; a row with a
    large payload, or whose render logged a data error (it logs again next time), is not
    remembered; gone and unrenderable rows are left out."""
    out: list[Any] = []
    for eid, row in zip(ids, rows, strict=True):
        if not row:
            continue
        key = (eid, row)
        raw = _RENDERED.get(key)
        if raw is None:
            h = execution_of(eid, row)
            assert h is not None
            errors = data_errors()
            try:
                raw = msgspec.Raw(_ENCODER.encode(render_execution(h)))
            except Exception:
                data_error("execution", eid, "*")
                continue
            size = len(raw) * 2 + _ROW_OBJECTS  # the hash's text is about as long as its JSON
            if data_errors() == errors and size <= RENDERED_ROW_MAX:
                if _RENDERED_BYTES[0] + size > RENDERED_MAX_BYTES:
                    _RENDERED.clear()
                    _RENDERED_BYTES[0] = 0
                _RENDERED[key] = raw
                _RENDERED_BYTES[0] += size
        out.append(raw)
    return out


class ExecutionFilters(msgspec.Struct, kw_only=True):
    cue_id: str | None = None
    statuses: frozenset[str] | None = None
    worker_id: str | None = None
    outcome_state: str | None = None
    triggered_by: str | None = None


class FireRequest(msgspec.Struct, kw_only=True):
    payload_override: dict[str, Any] | None = None
    merge_strategy: str = "merge"
    send_at: int | None = None
    send_at_text: str | None = None
    idempotency_key: str | None = None


def parse_fire(body: Any) -> FireRequest:
    """Body of ``POST /v1/cues/{id}/fire`` (optional; unknown keys and exit_criteria ignored)."""
    obj = require_object(body)
    c = Checker()
    req = FireRequest()
    override = obj.get("payload_override")
    if override is not None:
        if isinstance(override, dict):
            req.payload_override = override
        else:
            c.add("body.payload_override", "Input should be a valid dictionary")
    if obj.get("merge_strategy") is not None:
        strategy = c.choice("body.merge_strategy", obj["merge_strategy"], ("merge", "replace"))
        if strategy is not MISSING:
            req.merge_strategy = strategy
    out_of_range = False
    if obj.get("send_at") is not None:
        text = c.string("body.send_at", obj["send_at"])
        if text is not MISSING:
            try:
                req.send_at = parse_datetime(text)
                req.send_at_text = fmt_offset(req.send_at)
            except InstantOutOfRange:
                out_of_range = True
            except ValueError:
                c.add("body.send_at", "Input should be a valid datetime")
    if obj.get("idempotency_key") is not None:
        key = c.string("body.idempotency_key", obj["idempotency_key"], min_len=1, max_len=256)
        if key is not MISSING:
            req.idempotency_key = key
    c.raise_if_any()
    if out_of_range:
        raise InvalidSchedule(f"send_at {RANGE_TEXT}")
    return req


def fire_fingerprint(req: FireRequest) -> str:
    canonical = json.dumps(
        {
            "merge_strategy": req.merge_strategy,
            "payload_override": req.payload_override,
            "send_at": req.send_at_text,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _checked_payload(payload: Any) -> str:
    if has_bad_text(payload):
        raise InvalidPayload()
    raw = msgspec.json.encode(payload)
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise InvalidPayloadSize()
    return raw.decode()


def _fire_answer(eid: str, cue_id: str, scheduled_for: str | None) -> dict[str, Any]:
    """A fire's answer without its payload (``payload`` is its last member)."""
    return {
        "id": eid,
        "cue_id": cue_id,
        "scheduled_for": scheduled_for,
        "status": "pending",
        "triggered_by": "manual_fire",
    }


def _fire_response_head(answer: dict[str, Any]) -> str:
    """A fire's response JSON up to its payload member's value (the last member, as ``fire``
    answers it)."""
    return msgspec.json.encode(answer)[:-1].decode() + ',"payload":'


class ExecutionService:
    def __init__(self, store: Store, clock: Clock, metrics: Metrics | None = None) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.history: History | None = None
        """Executions beyond Redis retention (PostgreSQL); set by the runtime."""

    async def purge_cue(self, account: Account, cue_id: str) -> None:
        """A deleted cue's executions go (Redis, then its history): the claimed ones give their
        task cap permits back at once (their claims ended with the cue)."""
        claimed: list[str] = []
        await self.store.executions.purge_cue(cue_id, account.id, claimed=claimed)
        if claimed and account.tcaps:
            await self.store.task_caps.after_reap(account.id, [], claimed, self.clock.now_us())
        if self.history is not None:
            await self.history.forget_cue(cue_id)

    async def fire(self, account: Account, cue_id: str, req: FireRequest) -> dict[str, Any]:
        """A manual execution now (or at ``send_at``), with the effective payload (§7.10). Without
        ``payload_override`` one script call reads the cue (owner, payload) and creates it; a
        merge or replace reads the cue first (its owner is checked before the override's)."""
        if not is_cue_id(cue_id):
            raise CueNotFound()
        payload_json = ""  # the cue's, read by the script
        if req.payload_override is not None:
            cue = await self.store.cues.get(cue_id)
            if cue is None or cue.get("acct") != account.id:
                raise CueNotFound()
            if req.merge_strategy == "replace":
                payload_json = _checked_payload(req.payload_override)
            else:
                merged = msgspec.json.decode(cue["pl"])
                merged.update(req.payload_override)
                payload_json = _checked_payload(merged)
        now = self.clock.now_us()
        scheduled = req.send_at if req.send_at is not None and req.send_at > now else now
        eid = new_execution_id(self.store.keys.cue_byte(cue_id))
        answer = _fire_answer(eid, cue_id, fmt_offset(scheduled))
        digest = response = ""
        if req.idempotency_key:  # remembered with the key (the script appends the cue's payload)
            digest = hashlib.sha256(req.idempotency_key.encode()).hexdigest()
            response = _fire_response_head(answer) + (payload_json + "}" if payload_json else "")
        outcome, detail = await self.store.executions.create(
            execution_id=eid,
            cue_id=cue_id,
            account_id=account.id,
            scheduled_us=scheduled,
            payload_json=payload_json,
            triggered_by="manual_fire",
            idem_digest=digest,
            fingerprint=fire_fingerprint(req) if req.idempotency_key else "",
            response_json=response,
            now_us=now,
        )
        if outcome is Status.NOT_FOUND:
            raise CueNotFound()
        if outcome is Status.CONFLICT:
            raise Conflict(
                "idempotency_key_conflict",
                f"Idempotency key reused with a different request. Existing execution: {detail}",
            )
        if outcome is Status.REPEAT:
            return dict(msgspec.json.decode(detail))
        if scheduled > now:  # a send_at fire waits in `delayed`: wake the schedulers if it is due soon
            await self.store.wake.due(scheduled, now)
        self.metrics.inc(EXECUTIONS_CREATED, ("manual_fire",))
        return {**answer, "payload": msgspec.Raw(payload_json or detail)}

    async def replay(self, account: Account, execution_id: str) -> dict[str, Any]:
        """A new execution for the same cue with the source's effective payload (§8.10)."""
        return await self.replay_one(account.id, execution_id)

    async def replay_one(self, account_id: str, execution_id: str, *, job_id: str = "") -> dict[str, Any]:
        """``replay`` for an account id; with ``job_id`` (a bulk replay's batch) idempotent per
        (job, source): a batch run again after a crash makes no second execution."""
        src = await self.store.executions.get(execution_id)
        if src is None or src.get("acct") != account_id:
            raise ExecutionNotFound()
        if src["st"] not in TERMINAL:
            raise api_error(
                409, "execution_in_flight", "Cannot replay an execution that is still in progress"
            )
        cue_id = src["cue"]
        now = self.clock.now_us()
        eid = new_execution_id(self.store.keys.cue_byte(cue_id))
        digest = hashlib.sha256(f"replay:{job_id}:{execution_id}".encode()).hexdigest() if job_id else ""
        outcome, _ = await self.store.executions.create(
            execution_id=eid,
            cue_id=cue_id,
            account_id=account_id,
            scheduled_us=now,
            payload_json=src.get("pl") or "{}",
            triggered_by="replay",
            replayed_from=execution_id,
            idem_digest=digest,
            fingerprint="replay" if job_id else "",
            response_json="{}" if job_id else "",
            now_us=now,
        )
        if outcome is Status.REPEAT:
            return {}
        if outcome is not Status.OK:
            raise ExecutionNotFound()  # the cue is gone
        self.metrics.inc(EXECUTIONS_CREATED, ("replay",))
        return {
            "id": eid,
            "cue_id": cue_id,
            "scheduled_for": fmt_offset(now),
            "status": "pending",
            "triggered_by": "replay",
            "replayed_from": execution_id,
        }

    async def get(self, account: Account, execution_id: str) -> dict[str, Any]:
        h = await self.store.executions.get(execution_id)
        if (
            h is None
            and self.history is not None
            and self.store.keys.execution_partition(execution_id) is not None
        ):
            h = await self.history.get(account.id, execution_id)
            if h is not None and not await self.store.cues.exists(h.get("cue", "")):
                h = None  # its cue was deleted: the snapshot has not dropped the row yet
        if h is None or h.get("acct") != account.id:
            raise ExecutionNotFound()
        return render_execution(h)

    async def cue_page(self, cue_id: str, ids: list[str]) -> list[dict[str, Any]]:
        rows = await self.store.executions.get_many(ids)
        return render_executions([h for h in rows if h and h.get("cue") == cue_id])

    async def _with_history(
        self,
        account: Account,
        filters: ExecutionFilters,
        offset: int,
        limit: int,
        redis_total: int,
        *,
        flags: tuple[int, int] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """The page's rows past what Redis holds, from PostgreSQL, and the combined total
        (``flags``: the history flags, when read already)."""
        if self.history is None:
            return [], redis_total
        rows, older = await self.history.merge(account.id, filters, offset, limit, redis_total, flags=flags)
        return render_executions(list(rows)), redis_total + older

    async def list(
        self, account: Account, filters: ExecutionFilters, limit: int, offset: int
    ) -> tuple[list[Any], int, str | None]:
        """A page (newest first; a row is a dict or its JSON, ``msgspec.Raw``), the filtered total,
        and the earliest ``claimed_at``: the listing
        indexes answer every filter (no scan), on the partitions the account may have executions
        on (``Account.partitions``), in one round trip with the cue's owner and the history
        flags — and the page's rows when one partition holds them all, else one more round trip."""
        found = await self._redis_page(account, filters, offset, limit, None)
        if found is None:
            return [], 0, None
        listing, items, flags = found
        older, total = await self._with_history(account, filters, offset, limit, listing.total, flags=flags)
        return items + older, total, fmt_offset(listing.oldest_claimed_us)

    async def list_after(
        self, account: Account, filters: ExecutionFilters, limit: int, cursor: Cursor | None
    ) -> tuple[Rows, int, str | None, Cursor | None]:
        """``list`` by cursor (cuefast's ``cursor`` / ``next_cursor``): the page after
        ``cursor`` (None: the first), the filtered total, the earliest ``claimed_at``, and the
        cursor of the next page (None: this is the last). In Redis a cursor is a keyset —
        (created µs, id) of the last row — so a page costs the same however deep it is; past
        what Redis holds, it continues as an offset into the PostgreSQL history."""
        if cursor is not None and cursor.history is not None:
            found = await self._redis_page(account, filters, 0, 0, None)
            if found is None:
                return [], 0, None, None
            listing, _, flags = found
            start = listing.total + cursor.history
            older, total = await self._with_history(
                account, filters, start, limit + 1, listing.total, flags=flags
            )
            more = len(older) > limit
            nxt = Cursor(None, cursor.history + limit) if more else None
            return older[:limit], total, fmt_offset(listing.oldest_claimed_us), nxt
        after = None if cursor is None else cursor.after
        found = await self._redis_page(account, filters, 0, limit + 1, after, render=limit)
        if found is None:
            return [], 0, None, None
        listing, items, flags = found
        if len(listing.ids) > limit:  # more in Redis: the next page starts after this one's last row
            last = _last_created(listing, limit)
            _, total = await self._with_history(
                account, filters, listing.total, 0, listing.total, flags=flags
            )
            return items, total, fmt_offset(listing.oldest_claimed_us), Cursor(last, None)
        # Redis holds no more after this page: the rest of it (and what follows) from the history
        start = listing.total  # the history's first row
        older, total = await self._with_history(
            account, filters, start, limit - len(items) + 1, listing.total, flags=flags
        )
        more = len(older) > limit - len(items)
        page = items + older[: limit - len(items)]
        nxt = Cursor(None, limit - len(items)) if more else None
        return page, total, fmt_offset(listing.oldest_claimed_us), nxt

    async def _redis_page(
        self,
        account: Account,
        filters: ExecutionFilters,
        offset: int,
        limit: int,
        after: tuple[int, str] | None,
        *,
        render: int | None = None,
    ) -> tuple[Listing, Rows, tuple[int, int] | None] | None:
        """The Redis part of a listing: the store's ``Listing``, its rendered rows (of the first
        ``render`` ids only, when given) and the history flags read in the same round trip; None
        when ``cue_id`` is not the account's."""
        store = self.store
        cue_id = filters.cue_id
        if cue_id is not None and not is_cue_id(cue_id):
            return None
        also = []
        if cue_id is not None:
            also.append(partial(store.cues.queue_owner, cue_id=cue_id))
        if self.history is not None:
            also.append(partial(store.snapshots.queue_history_flags, account_id=account.id))
        listing = await store.executions.listing(
            account.id,
            offset=offset,
            limit=limit,
            cue_id=cue_id,
            worker_id=filters.worker_id,
            statuses=sorted(filters.statuses) if filters.statuses is not None else None,
            outcome_state=filters.outcome_state,
            triggered_by=filters.triggered_by,
            partitions=account.partitions,
            rows=True,
            after=after,
            created=after is not None or render is not None,
            also=also,
        )
        extra = listing.extra
        if cue_id is not None:
            if extra[0] != account.id:
                return None
            extra = extra[1:]
        flags = store.snapshots.history_flags(extra) if self.history is not None else None
        ids = listing.ids if render is None else listing.ids[:render]
        if listing.rows is not None:
            items = render_listed(ids, listing.rows[: len(ids)])
        else:
            items = render_executions(await store.executions.get_many(ids))
        return listing, items, flags
