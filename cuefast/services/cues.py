"""Cues: create, read, list, PATCH, delete (CONTRACT.md §7), without HTTP.

Create and PATCH follow the contract's check order, first failure wins:
schema (422) → duplicate name (409) → cue limit (403, create only) → callback SSRF (400)
→ payload (400) → timezone (422) → schedule (400) → on_failure webhook SSRF (400).

Everything that needs no Redis is checked before anything is written, so a failed
request leaves nothing behind. The happy path costs two scripts: reserve the name on
the account's slot, then write the cue on its partition. A name reservation whose cue
never appeared (a crash between the two) is taken over after ``STALE_RESERVATION_US``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec

from cuefast import cron, ssrf
from cuefast.clock import Clock
from cuefast.config import Settings
from cuefast.errors import (
    CuefastError,
    CueLimitExceeded,
    CueNotFound,
    DuplicateCueName,
    InvalidCallbackURL,
    InvalidPayload,
    InvalidPayloadSize,
    InvalidSchedule,
    UnsafeURL,
    ValidationFailed,
)
from cuefast.ids import is_cue_id, new_cue_id
from cuefast.models import (
    CONFIG_DECODER,
    Account,
    Callback,
    CueConfig,
    Delivery,
    OnFailure,
    Retry,
    Schedule,
    Verification,
    schedule_summary,
    stored_config,
    summary_schedule,
)
from cuefast.services.cue_input import (
    CALLBACK_URL_REQUIRED,
    CallbackInput,
    CueDraft,
    ScheduleInput,
    merged_alerts,
    merged_config,
    merged_delivery,
    merged_on_failure,
    merged_retry,
)
from cuefast.services.cue_labels import Selector, list_labelled
from cuefast.services.cue_status import next_run_after
from cuefast.services.executions import ExecutionFilters, ExecutionService, render_executions
from cuefast.services.render import data_error, render_rows, stored_int, stored_json, stored_time
from cuefast.services.validate import MISSING, has_bad_text
from cuefast.store import Status, Store
from cuefast.times import MAX_INSTANT_TEXT, InstantOutOfRange, fmt_offset, fmt_z, parse_datetime

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 1_048_576
STALE_RESERVATION_US = 30_000_000
NO_WORKER_WARNING = "No active workers found. Start a cueapi-worker to process this cue."
_ENCODE = msgspec.json.encode


def stored_cue_config(h: dict[str, str]) -> CueConfig:
    """A stored cue's config; one that cannot be read (a corrupted record) is a logged data
    error and renders as its schedule alone (from ``sch`` when that still parses) with every
    other section at its default, so the cue can still be seen — and deleted — by its owner."""
    try:
        return CONFIG_DECODER.decode(h["cfg"])
    except (KeyError, msgspec.DecodeError):
        data_error("cue", h["id"], "config")
    try:
        schedule, catch_up = summary_schedule(h.get("sch", ""))
    except ValueError:
        schedule, catch_up = Schedule(type="recurring"), "latest"
    return CueConfig(schedule=schedule, catch_up=catch_up)


def _verification(v: Verification) -> dict[str, Any]:
    """The cue's ``verification``: its mode, and cuefast's ``checks`` when it has some."""
    if v.checks is None:
        return {"mode": v.mode}
    return {"mode": v.mode, "checks": msgspec.to_builtins(v.checks)}


def _delivery(d: Delivery) -> dict[str, Any]:
    """The cue's ``delivery``: the contract's two fields, and cuefast's caps when it has them."""
    out: dict[str, Any] = {
        "timeout_seconds": d.timeout_seconds,
        "outcome_deadline_seconds": d.outcome_deadline_seconds,
    }
    if d.max_concurrency is not None:
        out["max_concurrency"] = d.max_concurrency
    if d.max_concurrency_per_host is not None:
        out["max_concurrency_per_host"] = d.max_concurrency_per_host
    if d.max_per_second is not None:
        out["max_per_second"] = d.max_per_second
    return out


def render_cue(
    h: dict[str, str], cfg: CueConfig | None = None, *, warning: str | None = None
) -> dict[str, Any]:
    """A stored cue hash → the contract's Cue object (§7.1); a stored value that cannot be
    rendered is null (``{}`` for the payload) and a logged data error (``cuefast.services.render``)."""
    cid = h["id"]
    cfg = cfg or stored_cue_config(h)
    s = cfg.schedule
    schedule: dict[str, Any] = {"type": s.type, "timezone": s.timezone}
    if s.cron is not None:
        schedule["cron"] = s.cron
    at = stored_time(s.at, fmt_offset, "cue", cid, "schedule.at")
    if at is not None:
        schedule["at"] = at
    if s.jitter_seconds:  # cuefast: absent when off, as the contract leaves out unset keys here
        schedule["jitter_seconds"] = s.jitter_seconds
    cb = cfg.callback
    return {
        "id": h["id"],
        "name": h["name"],
        "description": cfg.description,
        "status": h["status"],
        "transport": h["tr"],
        "schedule": schedule,
        "callback": {"url": cb.url, "method": cb.method, "headers": cb.headers},
        "payload": stored_json(h.get("pl"), "cue", cid, "payload", "{}"),
        "retry": {"max_attempts": cfg.retry.max_attempts, "backoff_minutes": cfg.retry.backoff_minutes},
        "next_run": stored_time(h.get("nr"), fmt_z, "cue", cid, "next_run"),
        "last_run": stored_time(h.get("lr"), fmt_z, "cue", cid, "last_run"),
        "run_count": stored_int(h.get("rc"), "cue", cid, "run_count"),
        "fired_count": stored_int(h.get("fc"), "cue", cid, "fired_count"),
        "on_failure": {
            "email": cfg.on_failure.email,
            "webhook": cfg.on_failure.webhook,
            "pause": cfg.on_failure.pause,
        },
        "verification": None if cfg.verification is None else _verification(cfg.verification),
        "delivery": None if cfg.delivery is None else _delivery(cfg.delivery),
        "alerts": None
        if cfg.alerts is None
        else {
            "consecutive_failures": cfg.alerts.consecutive_failures,
            "missed_window_multiplier": cfg.alerts.missed_window_multiplier,
        },
        "catch_up": cfg.catch_up,
        "overlap": cfg.overlap,
        "labels": dict(cfg.labels),
        "warning": warning,
        "created_at": stored_time(h.get("ca"), fmt_z, "cue", cid, "created_at"),
        "updated_at": stored_time(h.get("ua") or h.get("ca"), fmt_z, "cue", cid, "updated_at"),
    }


def new_cue_fields(
    account_id: str,
    name: str,
    *,
    transport: str,
    next_run: int | None,
    config: CueConfig,
    payload_json: bytes,
    now: int,
) -> dict[str, str | int]:
    """What a create stores (``store.cues.create`` splits ``cfg`` and ``pl`` off the hash).
    Absent fields mean their defaults: no last run, run and fired counts 0, updated = created,
    config version 1."""
    return {
        "acct": account_id,
        "name": name,
        "status": "active",
        "tr": transport,
        "nr": "" if next_run is None else next_run,
        "ca": now,
        "cfg": stored_config(config),
        "sch": schedule_summary(config),
        "pl": payload_json.decode(),
        **({"ov": config.overlap} if config.overlap != "allow" else {}),
    }


def checked_schedule(sched: Schedule, at_text: str | None, now: int) -> Schedule:
    """The schedule stage (its timezone already valid): the schedule with ``at`` resolved from
    ``at_text`` in its zone, or InvalidSchedule."""
    if sched.type == "recurring":
        if not sched.cron:
            raise InvalidSchedule("Cron expression is required for recurring schedules")
        cron.validate_cron(sched.cron, now)
        return msgspec.structs.replace(sched, at=None)
    if sched.type != "once":
        raise InvalidSchedule("Schedule type must be 'once' or 'recurring'")
    if at_text is not None:
        sched = msgspec.structs.replace(sched, at=_future_instant(at_text, sched.timezone, now))
    elif sched.at is None:
        raise InvalidSchedule("Timestamp is required for one-time schedules")
    return msgspec.structs.replace(sched, cron=None)


def _future_instant(text: str, timezone: str, now: int) -> int:
    """A one-time cue's ``at`` (µs), which must lie after ``now`` and within range."""
    try:
        at = parse_datetime(text, cron.resolve_timezone(timezone))
    except InstantOutOfRange as exc:
        if exc.late:
            raise InvalidSchedule(f"Scheduled time must not be after {MAX_INSTANT_TEXT}") from None
        raise InvalidSchedule("Scheduled time must be in the future") from None
    if at <= now:
        raise InvalidSchedule("Scheduled time must be in the future")
    return at


@dataclass
class _Checked:
    """Outcome of the stages after the name/limit checks (for create and PATCH)."""

    config: CueConfig
    payload_json: bytes | None
    next_run: int | None
    error: CuefastError | None


class CueService:
    def __init__(self, store: Store, settings: Settings, clock: Clock, executions: ExecutionService) -> None:
        self.store = store
        self.executions = executions
        self.settings = settings
        self.clock = clock
        self.policy = ssrf.Policy(
            allow_private=settings.allow_private_callbacks, allow_http=settings.allow_http_callbacks
        )

    # ---- shared stages -----------------------------------------------------------
    async def _ssrf(self, url: str, *, prefix: str = "") -> CuefastError | None:
        try:
            await ssrf.check_url(url, self.policy)
        except UnsafeURL as exc:
            return InvalidCallbackURL(prefix + exc.message)
        return None

    def _payload(self, payload: Any) -> bytes | CuefastError:
        if has_bad_text(payload):
            return InvalidPayload()
        raw = _ENCODE(payload)
        if len(raw) > MAX_PAYLOAD_BYTES:
            return InvalidPayloadSize()
        return raw

    def _schedule(
        self, sched: Schedule, at_text: str | None, now: int, tz_error: CuefastError | None
    ) -> tuple[Schedule, CuefastError | None]:
        """Timezone stage then schedule stage; returns the schedule with ``at`` resolved."""
        if tz_error is not None:
            return sched, tz_error
        try:
            return checked_schedule(sched, at_text, now), None
        except InvalidSchedule as exc:
            return sched, exc

    def _tz_error(self, name: str) -> CuefastError | None:
        try:
            cron.resolve_timezone(name)
        except CuefastError as exc:
            return exc
        return None

    def next_run_for(self, sched: Schedule, after: int) -> int | None:
        if sched.type == "recurring" and sched.cron:
            return cron.next_fire(sched.cron, cron.resolve_timezone(sched.timezone), after)
        return sched.at

    async def _check_name_and_limit(self, account: Account, name: str, own_cue: str | None) -> None:
        """The 409 and 403 stages, read-only (used when a later stage already failed)."""
        holder = await self.store.cues.name_holder(account.id, name)
        if holder is not None and await self._holder_is_live(holder, own_cue):
            raise DuplicateCueName(name)
        if (
            own_cue is None
            and self.settings.enforce_quotas
            and await self.store.cues.count_live(account.id) >= account.cue_limit
        ):
            raise CueLimitExceeded(account.cue_limit)

    async def _holder_is_live(self, holder: str, own_cue: str | None) -> bool:
        cue_id, _, reserved = holder.partition(":")
        if cue_id == own_cue:
            return False
        at = int(reserved or 0)  # seconds (µs in reservations written before they were seconds)
        if self.clock.now_us() - (at if at > 10**14 else at * 1_000_000) < STALE_RESERVATION_US:
            return True
        return await self.store.cues.exists(cue_id)

    async def _reserve(self, account: Account, name: str, cue_id: str, *, check_limit: bool) -> None:
        """Reserve ``name`` for ``cue_id`` (409 / 403 as the contract orders them)."""
        now = self.clock.now_us()
        hint = account.cue_limit if check_limit else -1
        replace_if = ""
        for _ in range(5):
            res, current = await self.store.cues.reserve_name(
                account.id, name, cue_id, now, limit_hint=hint, replace_if=replace_if
            )
            if res is Status.OK:
                return
            if res is Status.EXISTS:
                if await self._holder_is_live(current, cue_id):
                    raise DuplicateCueName(name)
                replace_if = current  # a reservation whose cue never appeared: take it over
                continue
            # COUNT: too many names to prove the limit from them alone; count exactly
            if await self.store.cues.count_live(account.id) >= account.cue_limit:
                raise CueLimitExceeded(account.cue_limit)
            hint = -1
        raise DuplicateCueName(name)

    # ---- create ------------------------------------------------------------------
    async def create(
        self, account: Account, draft: CueDraft, reserved: tuple[str, Status | None] | None = None
    ) -> dict[str, Any]:
        """``reserved``: (cue id, OK/EXISTS/COUNT or None unknown) of the name reservation the
        edge folded into the auth script (api/fast.py): the cue takes that id; not OK, reserved here."""
        now = self.clock.now_us()
        name: str = draft.name
        transport: str = draft.transport
        cb_in = draft.callback if isinstance(draft.callback, CallbackInput) else CallbackInput()
        callback = Callback(
            url=cb_in.url if isinstance(cb_in.url, str) else None,
            method=cb_in.method if cb_in.method is not MISSING else "POST",
            headers=cb_in.headers if cb_in.headers is not MISSING else {},
        )
        s_in: ScheduleInput = draft.schedule
        sched = Schedule(
            type=s_in.type,
            timezone=s_in.timezone if s_in.timezone is not MISSING else "UTC",
            cron=s_in.cron if s_in.cron is not MISSING else None,
            jitter_seconds=s_in.jitter_seconds if s_in.jitter_seconds is not MISSING else 0,
        )
        at_text = s_in.at if s_in.at is not MISSING else None
        on_failure = merged_on_failure(OnFailure(), draft.on_failure or {})
        config = CueConfig(
            description=draft.description if draft.description is not MISSING else None,
            schedule=sched,
            callback=callback,
            retry=merged_retry(Retry(), draft.retry or {}),
            on_failure=on_failure,
            verification=draft.verification if draft.verification is not MISSING else None,
            delivery=None if draft.delivery is MISSING else merged_delivery(None, draft.delivery),
            alerts=None if draft.alerts is MISSING else merged_alerts(None, draft.alerts),
            catch_up=draft.catch_up if draft.catch_up is not MISSING else "latest",
            overlap=draft.overlap if draft.overlap is not MISSING else "allow",
            labels=draft.labels if draft.labels is not MISSING else {},
        )
        checked = await self._later_stages(
            config, draft.payload, at_text, now, check_callback=transport == "webhook"
        )
        if checked.error is not None:
            if reserved is not None:  # the name is not this request's: freed first
                await self.store.cues.release_name(account.id, name, reserved[0])
            await self._check_name_and_limit(account, name, None)
            raise checked.error
        cue_id = new_cue_id(self.store.keys.cue_group(account.id)) if reserved is None else reserved[0]
        if reserved is None or reserved[1] is not Status.OK:
            await self._reserve(account, name, cue_id, check_limit=self.settings.enforce_quotas)
        payload_json, next_run = checked.payload_json or b"{}", checked.next_run
        fields = new_cue_fields(
            account.id, name, transport=transport, next_run=next_run, config=checked.config,
            payload_json=payload_json, now=now,
        )  # fmt: skip
        p = self.store.keys.cue_partition(cue_id)
        if account.partitions is None or p not in account.partitions:  # bits are never cleared
            await self.store.accounts.note_cue_partition(account.id, p)
        labels = checked.config.labels
        try:
            if labels:  # indexed before the cue exists (docs/DESIGN.md "Cue labels")
                await self.store.cues.index_labels(account.id, cue_id, now, labels, now, add=True)
            created = await self.store.cues.create(cue_id, fields)
        except BaseException:
            await self.store.cues.release_name(account.id, name, cue_id, unindex=bool(labels))
            raise
        if created is not Status.OK:  # pragma: no cover - a 62-bit random id collision
            await self.store.cues.release_name(account.id, name, cue_id)
            raise RuntimeError("cue id collision")
        if checked.next_run is not None:
            await self.store.wake.due(checked.next_run, now)  # due soon: wake the schedulers
        warning = (
            NO_WORKER_WARNING if transport == "worker" and not await self._worker_alive(account) else None
        )
        return render_cue(
            {"id": cue_id, **{k: str(v) for k, v in fields.items()}}, checked.config, warning=warning
        )

    async def _worker_alive(self, account: Account) -> bool:
        """Whether the account has a pull worker alive (worker registry: §9.6)."""
        return await self.store.workers.any_alive(
            account.id, self.clock.now_us(), self.settings.worker_alive_seconds
        )

    async def _later_stages(
        self,
        config: CueConfig,
        payload: Any,
        at_text: str | None,
        now: int,
        *,
        check_callback: bool,
        check_payload: bool = True,
        schedule_changed: bool = True,
        on_failure_changed: bool = True,
    ) -> _Checked:
        """Stages after name/limit, in order; the first error wins."""
        error: CuefastError | None = None
        if check_callback and config.callback.url is not None:
            error = await self._ssrf(config.callback.url)
        payload_json: bytes | None = None
        if check_payload:
            p = self._payload(payload)
            if isinstance(p, CuefastError):
                error = error or p
            else:
                payload_json = p
        next_run: int | None = None
        if schedule_changed:
            tz_error = self._tz_error(config.schedule.timezone)
            sched, sched_error = self._schedule(config.schedule, at_text, now, tz_error)
            error = error or sched_error
            if sched_error is None:
                config.schedule = sched
                next_run = self.next_run_for(sched, now)
        if on_failure_changed and error is None and config.on_failure.webhook:
            error = await self._ssrf(config.on_failure.webhook, prefix="on_failure.webhook: ")
        return _Checked(config=config, payload_json=payload_json, next_run=next_run, error=error)

    # ---- read --------------------------------------------------------------------
    async def get_owned(self, account: Account, cue_id: str) -> dict[str, str]:
        if not is_cue_id(cue_id):
            raise CueNotFound()
        h = await self.store.cues.get(cue_id)
        if h is None or h.get("acct") != account.id:
            raise CueNotFound()
        return h

    async def cap_state(self, cue_id: str) -> tuple[int, int]:
        """(attempts holding a permit, executions waiting for one) of a cue with a
        ``delivery.max_concurrency`` (the caller has checked the cue is the account's)."""
        return await self.store.delivery.cap_state(cue_id)

    async def get(
        self, account: Account, cue_id: str, execution_limit: int, execution_offset: int
    ) -> dict[str, Any]:
        """A cue plus a page of its executions (newest first)."""
        if not is_cue_id(cue_id):
            raise CueNotFound()
        history = self.executions.history
        snapshots = self.store.snapshots
        also = [partial(snapshots.queue_history_flags, account_id=account.id)] if history is not None else []
        h, ids, total, extra = await self.store.cues.get_with_executions(
            cue_id, execution_limit, execution_offset, also
        )
        if h is None or h.get("acct") != account.id:
            raise CueNotFound()
        out = render_cue(h)
        out["executions"] = await self.executions.cue_page(cue_id, ids) if ids else []
        if history is not None:  # executions beyond Redis retention (PostgreSQL)
            filters = ExecutionFilters(cue_id=cue_id)
            older, more = await history.merge(
                account.id,
                filters,
                execution_offset,
                execution_limit,
                total,
                flags=snapshots.history_flags(extra),
            )
            out["executions"] += render_executions(list(older))
            total += more
        out["execution_total"] = total
        out["execution_limit"] = execution_limit
        out["execution_offset"] = execution_offset
        return out

    async def list(
        self,
        account: Account,
        status: str | None,
        limit: int,
        offset: int,
        labels: list[Selector] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        if status is not None and status not in ("active", "paused", "completed", "failed"):
            return [], 0
        if labels:
            return await list_labelled(self, account, status, labels, limit=limit, offset=offset)
        ids, total = await self.store.cues.list_ids(account.id, status, offset, limit)
        rows = await self.store.cues.get_many(ids)
        mine = [h for h in rows if h and h.get("acct") == account.id]
        return render_rows(mine, render_cue, "cue", lambda h: h["id"]), total

    # ---- PATCH -------------------------------------------------------------------
    async def update(self, account: Account, cue_id: str, draft: CueDraft) -> dict[str, Any]:
        for _ in range(10):
            h = await self.get_owned(account, cue_id)
            result = await self._update_once(account, cue_id, h, draft)
            if result is not None:
                return result
        raise RuntimeError("cue kept changing under PATCH")  # pragma: no cover

    async def _update_once(
        self, account: Account, cue_id: str, h: dict[str, str], draft: CueDraft
    ) -> dict[str, Any] | None:
        now = self.clock.now_us()
        patch = merged_config(stored_cue_config(h), draft)
        cfg = patch.config
        if h["tr"] == "webhook" and cfg.callback.url is None:
            raise ValidationFailed([("body", CALLBACK_URL_REQUIRED)])
        payload_sent = draft.payload is not MISSING and draft.payload is not None
        checked = await self._later_stages(
            cfg,
            draft.payload if payload_sent else None,
            patch.at_text,
            now,
            check_callback=patch.callback_changed and h["tr"] == "webhook",
            check_payload=payload_sent,
            schedule_changed=patch.schedule_changed,
            on_failure_changed=patch.on_failure_changed,
        )
        old_name, name = h["name"], draft.name if draft.name is not MISSING else h["name"]
        status: str = draft.status if draft.status is not MISSING else h["status"]
        next_run: str | int = "keep"
        error = checked.error
        if error is None:
            next_run, error = await next_run_after(
                self, account, h, patch, status=status, scheduled=checked.next_run, now=now
            )
        if error is not None:
            if name != old_name:
                await self._check_name_and_limit(account, name, cue_id)
            raise error
        if name != old_name:
            await self._reserve(account, name, cue_id, check_limit=False)
        created = int(h.get("ca") or 0)
        if patch.labels_changed and cfg.labels:  # the index first: a superset while the cue changes
            await self.store.cues.index_labels(account.id, cue_id, created, cfg.labels, now, add=True)
        fields: dict[str, str | int] = {
            "cfg": stored_config(cfg),
            "sch": schedule_summary(cfg),
            "ua": now,
            "v": int(h.get("v") or 1) + 1,
            **({"name": name} if name != old_name else {}),
            # the config and the payload are stored together: a PATCH rewrites both
            "pl": h["pl"] if checked.payload_json is None else checked.payload_json.decode(),
            # the scheduler's copy of the overlap policy (absent = allow)
            **({"ov": cfg.overlap} if cfg.overlap != "allow" or "ov" in h else {}),
        }
        res = await self.store.cues.update(
            cue_id,
            account.id,
            h.get("v") or "1",
            status="" if status == h["status"] else status,
            next_run=str(next_run),
            fields=fields,
        )
        if res is not Status.OK:
            if name != old_name:
                await self.store.cues.release_name(account.id, name, cue_id)
            if res is Status.NOT_FOUND:
                raise CueNotFound()
            return None  # concurrent PATCH: re-read and apply again
        if name != old_name:
            await self.store.cues.release_name(account.id, old_name, cue_id)
        if patch.labels_changed:  # then exactly the cue's labels
            await self.store.cues.index_labels(account.id, cue_id, created, cfg.labels, now, add=False)
        if isinstance(next_run, int):
            await self.store.wake.due(next_run, now)  # due soon: wake the schedulers
        h = {**h, **{k: str(v) for k, v in fields.items()}, "status": status}
        if next_run != "keep":
            h["nr"] = str(next_run)
        return render_cue(h, cfg)

    # ---- delete ------------------------------------------------------------------
    async def delete(self, account: Account, cue_id: str) -> None:
        if not is_cue_id(cue_id):
            raise CueNotFound()
        name = await self.store.cues.delete(cue_id, account.id)
        if name is None:
            raise CueNotFound()
        await self.store.cues.release_name(account.id, name, cue_id, unindex=True)
        await self.executions.purge_cue(account, cue_id)
