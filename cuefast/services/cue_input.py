"""Cue create and PATCH bodies → checked, typed drafts (schema stage, 422).

Only the schema stage lives here, and the merge of a PATCH draft onto a stored config; the
later stages of the contract's check order (name, limit, SSRF, payload, timezone, schedule,
on_failure SSRF) need Redis, DNS or the clock and run in ``cues.py``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import msgspec

from cuefast.cron import MAX_JITTER_SECONDS
from cuefast.models import (
    Alerts,
    Callback,
    CueConfig,
    Delivery,
    OnFailure,
    Retry,
    Schedule,
    Verification,
    VerificationChecks,
)
from cuefast.services.validate import MISSING, Checker, require_object
from cuefast.times import InstantOutOfRange, parse_datetime

TRANSPORTS = ("webhook", "worker")
METHODS = ("POST", "GET", "PUT", "PATCH")
VERIFICATION_MODES = ("none", "require_external_id", "require_result_url", "require_artifacts", "manual")
CATCH_UP = ("latest", "all", "none")
OVERLAP = ("allow", "skip", "buffer_one", "cancel_previous")
CALLBACK_URL_REQUIRED = "Value error, callback.url is required for webhook transport"
MAX_DESCRIPTION = 10_000
MAX_LABELS = 32
_LABEL_NAME = r"[a-zA-Z0-9](?:[-a-zA-Z0-9_.]{0,61}[a-zA-Z0-9])?"
LABEL_KEY = re.compile(rf"(?:[a-z0-9](?:[-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}")
"""a Kubernetes label key: an optional DNS prefix (≤ 253 chars, lower case) and ``/``, then
1-63 chars ``[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?``"""
LABEL_VALUE = re.compile(f"(?:{_LABEL_NAME})?")
"""a label value: empty, or a name as above (0-63 chars)"""
LABEL_KEY_TEXT = (
    "Label keys must be 1-63 characters [a-zA-Z0-9._-], starting and ending alphanumeric, "
    "with an optional DNS prefix and '/'"
)
LABEL_VALUE_TEXT = "Label values must be 0-63 characters [a-zA-Z0-9._-], starting and ending alphanumeric"


class ScheduleInput(msgspec.Struct, kw_only=True):
    """Schedule fields as sent (types checked, meaning not yet)."""

    type: Any = MISSING  # str when present; its value is checked in the schedule stage
    cron: Any = MISSING  # str | None
    at: Any = MISSING  # str | None
    timezone: Any = MISSING  # str
    jitter_seconds: Any = MISSING  # int 0..3600 (cuefast; null = not sent)


class CallbackInput(msgspec.Struct, kw_only=True):
    url: Any = MISSING  # str | None
    method: Any = MISSING  # str (upper case)
    headers: Any = MISSING  # dict[str, str]


class CueDraft(msgspec.Struct, kw_only=True):
    """A create body (every field) or a PATCH body (MISSING = not provided)."""

    name: Any = MISSING
    description: Any = MISSING
    transport: Any = MISSING
    status: Any = MISSING
    schedule: ScheduleInput | Any = MISSING
    callback: CallbackInput | Any | None = MISSING
    payload: Any = MISSING
    retry: Any = MISSING  # dict[str, Any]
    on_failure: Any = MISSING  # dict[str, Any]
    verification: Verification | Any | None = MISSING
    delivery: Any = MISSING  # dict[str, Any]
    alerts: Any = MISSING  # dict[str, Any]
    catch_up: Any = MISSING
    overlap: Any = MISSING
    labels: Any = MISSING  # dict[str, str]; {} clears


PATCH_FIELDS = frozenset(
    {
        "name",
        "description",
        "status",
        "schedule",
        "callback",
        "payload",
        "retry",
        "on_failure",
        "verification",
        "delivery",
        "alerts",
        "catch_up",
        "overlap",
        "labels",
    }
)


def _schedule(c: Checker, value: Any, *, create: bool) -> ScheduleInput | Any:
    sched = c.obj("body.schedule", value)
    if sched is MISSING:
        return MISSING
    out = ScheduleInput()
    if "type" in sched and sched["type"] is not None:
        out.type = c.string("body.schedule.type", sched["type"])
    elif create:
        c.add("body.schedule.type", "Field required")
    if sched.get("cron") is not None:
        out.cron = c.string("body.schedule.cron", sched["cron"], clean=True)
    if sched.get("at") is not None:
        out.at = c.string("body.schedule.at", sched["at"])
        if out.at is not MISSING:
            try:
                parse_datetime(out.at)
            except InstantOutOfRange:
                pass  # well-formed: the schedule stage answers invalid_schedule (its zone counts)
            except ValueError:
                c.add("body.schedule.at", "Input should be a valid datetime")
                out.at = MISSING
    if sched.get("timezone") is not None:
        out.timezone = c.string("body.schedule.timezone", sched["timezone"])
    if sched.get("jitter_seconds") is not None:  # cuefast: null = not sent (PATCH keeps it)
        out.jitter_seconds = c.integer(
            "body.schedule.jitter_seconds", sched["jitter_seconds"], ge=0, le=MAX_JITTER_SECONDS
        )
    return out


def _callback(c: Checker, value: Any) -> CallbackInput | Any:
    cb = c.obj("body.callback", value)
    if cb is MISSING:
        return MISSING
    if "transport" in cb:
        c.add("body.callback.transport", "transport must be specified at the top level, not inside callback")
        return MISSING
    out = CallbackInput()
    if cb.get("url") is not None:
        out.url = c.http_url("body.callback.url", cb["url"])
    elif "url" in cb:
        out.url = None
    if cb.get("method") is not None:
        method = cb["method"]
        if isinstance(method, str) and method.upper() in METHODS:
            out.method = method.upper()
        else:
            c.add("body.callback.method", "Input should be 'POST', 'GET', 'PUT' or 'PATCH'")
    if cb.get("headers") is not None:
        out.headers = c.headers("body.callback.headers", cb["headers"])
    return out


def _retry(c: Checker, value: Any) -> dict[str, Any] | Any:
    r = c.obj("body.retry", value)
    if r is MISSING:
        return MISSING
    out: dict[str, Any] = {}
    if r.get("max_attempts") is not None:
        v = c.integer("body.retry.max_attempts", r["max_attempts"], ge=1, le=10)
        if v is not MISSING:
            out["max_attempts"] = v
    if r.get("backoff_minutes") is not None:
        lst = r["backoff_minutes"]
        if not isinstance(lst, list):
            c.add("body.retry.backoff_minutes", "Input should be a valid list")
        elif len(lst) > 10:
            c.add("body.retry.backoff_minutes", "List should have at most 10 items after validation")
        else:
            items = [
                c.integer(f"body.retry.backoff_minutes.{i}", x, ge=0, le=10080) for i, x in enumerate(lst)
            ]
            if all(x is not MISSING for x in items):
                out["backoff_minutes"] = items
    return out


def _on_failure(c: Checker, value: Any) -> dict[str, Any] | Any:
    o = c.obj("body.on_failure", value)
    if o is MISSING:
        return MISSING
    out: dict[str, Any] = {}
    if o.get("email") is not None:
        v = c.boolean("body.on_failure.email", o["email"])
        if v is not MISSING:
            out["email"] = v
    if o.get("pause") is not None:
        v = c.boolean("body.on_failure.pause", o["pause"])
        if v is not MISSING:
            out["pause"] = v
    if "webhook" in o:
        hook = o["webhook"]
        if isinstance(hook, dict):
            url = c.http_url("body.on_failure.webhook.url", hook.get("url"))
            if url is not MISSING:
                out["webhook"] = url
        elif hook is None:
            out["webhook"] = None
        else:
            url = c.http_url("body.on_failure.webhook", hook)
            if url is not MISSING:
                out["webhook"] = url
    return out


def _verification(c: Checker, value: Any) -> Verification | Any:
    v = c.obj("body.verification", value)
    if v is MISSING:
        return MISSING
    mode = v.get("mode")
    checked = "none" if mode is None else c.choice("body.verification.mode", mode, VERIFICATION_MODES)
    checks = None if v.get("checks") is None else _checks(c, v["checks"])
    if checked is MISSING or checks is MISSING:
        return MISSING
    return Verification(mode=checked, checks=checks)


MAX_SCHEMA_BYTES = 16_384
MAX_PATTERN = 256


def _checks(c: Checker, value: Any) -> VerificationChecks | Any | None:
    """``verification.checks`` (cuefast): each given check checked; {} or all off = None."""
    loc = "body.verification.checks"
    v = c.obj(loc, value)
    if v is MISSING:
        return MISSING
    for name in v:
        if name not in ("result_url_reachable", "result_schema", "external_id_pattern"):
            c.add(f"{loc}.{name}", "Extra inputs are not permitted")
    out = VerificationChecks()
    if v.get("result_url_reachable") is not None:
        ok = c.boolean(f"{loc}.result_url_reachable", v["result_url_reachable"])
        out.result_url_reachable = ok is True
    if v.get("result_schema") is not None:
        schema = c.obj(f"{loc}.result_schema", v["result_schema"])
        if schema is not MISSING:
            problem = schema_problem(schema)
            if problem:
                c.add(f"{loc}.result_schema", problem)
            else:
                out.result_schema = schema
    if v.get("external_id_pattern") is not None:
        text = c.string(
            f"{loc}.external_id_pattern", v["external_id_pattern"], min_len=1, max_len=MAX_PATTERN
        )
        if text is not MISSING:
            try:
                id_pattern(text)
                out.external_id_pattern = text
            except ValueError as exc:
                c.add(f"{loc}.external_id_pattern", f"Input should be a valid regular expression ({exc})")
    if out == VerificationChecks():
        return None
    return out


PATTERN_BACKTRACK_LIMIT = 100_000
"""Most backtracking steps one ``external_id_pattern`` match may take; past it: no match."""


@functools.lru_cache(maxsize=256)
def id_pattern(text: str) -> Any:
    """The matcher of an ``external_id_pattern``: a JSON Schema validator of strings that match
    it whole. The engine is jsonschema-rs's (fancy-regex, the dialect of JSON Schema's
    ``pattern``): linear time unless the pattern uses backreferences or lookaround, and then at
    most PATTERN_BACKTRACK_LIMIT steps. Never Python's ``re``, which backtracks exponentially on
    ``(a+)+`` — the check runs on the dispatcher's event loop. ValueError: not a pattern (the
    pattern must compile alone, so anchoring it cannot change what it means)."""
    opts = jsonschema_rs.FancyRegexOptions(backtrack_limit=PATTERN_BACKTRACK_LIMIT)
    try:
        jsonschema_rs.validator_for({"pattern": text}, pattern_options=opts)
        whole = {"type": "string", "pattern": f"^(?:{text})$"}
        return jsonschema_rs.validator_for(whole, pattern_options=opts)
    except (jsonschema_rs.ValidationError, ValueError) as exc:
        raise ValueError(str(exc).splitlines()[0][:200]) from exc


def schema_problem(schema: dict[str, Any]) -> str:
    """Why ``schema`` is no usable JSON Schema ("" = it is one)."""
    try:
        size = len(msgspec.json.encode(schema))
    except (TypeError, ValueError):
        return "Input should be a JSON object"
    if size > MAX_SCHEMA_BYTES:
        return f"JSON Schema should be at most {MAX_SCHEMA_BYTES} bytes"
    try:
        jsonschema_rs.validator_for(schema)
    except Exception as exc:  # the library's ValidationError / ValueError for a bad schema
        return f"Input should be a valid JSON Schema ({str(exc).splitlines()[0][:200]})"
    return ""


def _int_section(
    c: Checker, section: str, value: Any, fields: tuple[tuple[str, int, bool], ...]
) -> dict[str, Any] | Any:
    """An optional object of bounded integers (``1..le``): each given field checked; a field
    marked nullable keeps an explicit null (it disarms), the others treat null as absent."""
    d = c.obj(f"body.{section}", value)
    if d is MISSING:
        return MISSING
    out: dict[str, Any] = {}
    for name, le, nullable in fields:
        if name not in d or (d[name] is None and not nullable):
            continue
        if d[name] is None:
            out[name] = None
            continue
        v = c.integer(f"body.{section}.{name}", d[name], ge=1, le=le)
        if v is not MISSING:
            out[name] = v
    return out


MAX_CONCURRENCY = 1000
"""the largest ``delivery.max_concurrency`` (a cap's permits are one zset in the cue's slot)"""
MAX_PER_SECOND = 1000
"""the largest ``delivery.max_per_second`` (attempts 1 ms apart)"""


def _delivery(c: Checker, value: Any) -> dict[str, Any] | Any:
    return _int_section(
        c,
        "delivery",
        value,
        (
            ("timeout_seconds", 3600, False),
            ("outcome_deadline_seconds", 86400, True),
            ("max_concurrency", MAX_CONCURRENCY, True),
            ("max_concurrency_per_host", MAX_CONCURRENCY, True),
            ("max_per_second", MAX_PER_SECOND, True),
        ),
    )


def _alerts(c: Checker, value: Any) -> dict[str, Any] | Any:
    return _int_section(
        c, "alerts", value, (("consecutive_failures", 100, False), ("missed_window_multiplier", 100, True))
    )


def _payload(c: Checker, payload: Any, *, create: bool) -> dict[str, Any] | Any:
    if payload is None:
        return {} if create else None
    if not isinstance(payload, dict):
        c.add("body.payload", "Input should be a valid dictionary")
        return MISSING
    return payload


def is_label_key(key: str) -> bool:
    return len(key) <= 317 and LABEL_KEY.fullmatch(key) is not None


def is_label_value(value: str) -> bool:
    return LABEL_VALUE.fullmatch(value) is not None


def checked_labels(c: Checker, loc: str, value: Any) -> dict[str, str] | Any:
    """A labels object (``null`` = none): at most 32 pairs, keys and values as
    ``LABEL_KEY`` / ``LABEL_VALUE`` say. A bad key is reported at ``loc`` without echoing it
    (it may hold text the error envelope must not carry)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        c.add(loc, "Input should be a valid dictionary")
        return MISSING
    if len(value) > MAX_LABELS:
        c.add(loc, f"Dictionary should have at most {MAX_LABELS} items")
        return MISSING
    out: dict[str, str] = {}
    for key, v in value.items():
        if not isinstance(key, str) or not is_label_key(key):
            c.add(loc, LABEL_KEY_TEXT)
            return MISSING
        if not isinstance(v, str):
            c.add(f"{loc}.{key}", "Input should be a valid string")
            return MISSING
        if not is_label_value(v):
            c.add(f"{loc}.{key}", LABEL_VALUE_TEXT)
            return MISSING
        out[key] = v
    return out


def _catch_up(c: Checker, value: Any) -> str | Any:
    return c.choice("body.catch_up", value, CATCH_UP)


def _overlap(c: Checker, value: Any) -> str | Any:
    return c.choice("body.overlap", value, OVERLAP)


_SECTIONS: dict[str, Callable[[Checker, Any], Any]] = {
    "retry": _retry,
    "on_failure": _on_failure,
    "verification": _verification,
    "delivery": _delivery,
    "alerts": _alerts,
    "catch_up": _catch_up,
    "overlap": _overlap,
}
"""Optional fields after ``payload``: each parsed when present and not null."""


def _common(c: Checker, body: dict[str, Any], draft: CueDraft, *, create: bool) -> None:
    """Fields shared by create and PATCH; a top-level null means "not provided"."""
    if body.get("name") is not None:
        draft.name = c.string("body.name", body["name"], min_len=1, max_len=255, single_line=True)
    elif create:
        c.add("body.name", "Field required")
    if "description" in body:
        desc = body["description"]
        draft.description = (
            None if desc is None else c.string("body.description", desc, max_len=MAX_DESCRIPTION)
        )
    if body.get("schedule") is not None:
        draft.schedule = _schedule(c, body["schedule"], create=create)
    elif create:
        c.add("body.schedule", "Field required")
    if body.get("callback") is not None:
        draft.callback = _callback(c, body["callback"])
    if "payload" in body:
        draft.payload = _payload(c, body["payload"], create=create)
    for field, parse in _SECTIONS.items():  # in this order: the 422's details follow it
        if body.get(field) is not None:
            setattr(draft, field, parse(c, body[field]))
    if "labels" in body:  # null clears (PATCH) / none (create)
        draft.labels = checked_labels(c, "body.labels", body["labels"])


def parse_create(body: Any) -> CueDraft:
    """Schema stage of ``POST /v1/cues``; unknown top-level fields are ignored."""
    obj = require_object(body)
    c = Checker()
    draft = CueDraft()
    transport = obj.get("transport")
    draft.transport = "webhook" if transport is None else c.choice("body.transport", transport, TRANSPORTS)
    _common(c, obj, draft, create=True)
    if draft.payload is MISSING:
        draft.payload = {}
    c.raise_if_any()
    if draft.transport == "webhook":
        cb = draft.callback
        if not isinstance(cb, CallbackInput) or not isinstance(cb.url, str):
            c.add("body", CALLBACK_URL_REQUIRED)
            c.raise_if_any()
    return draft


def parse_patch(body: Any) -> CueDraft:
    """Schema stage of ``PATCH /v1/cues/{id}``; unknown top-level keys are 422."""
    obj = require_object(body)
    c = Checker()
    for key in obj:
        if key not in PATCH_FIELDS:
            c.add(f"body.{key}", "Extra inputs are not permitted")
    draft = CueDraft()
    _common(c, obj, draft, create=False)
    if obj.get("status") is not None:
        status = obj["status"]
        if status in ("active", "paused"):
            draft.status = status
        else:
            c.add("body.status", "Value error, status must be 'active' or 'paused'")
    c.raise_if_any()
    return draft


def merged_retry(current: Retry, patch: dict[str, Any]) -> Retry:
    return msgspec.structs.replace(current, **patch)


def merged_on_failure(current: OnFailure, patch: dict[str, Any]) -> OnFailure:
    return msgspec.structs.replace(current, **patch)


def merged_delivery(current: Delivery | None, patch: dict[str, Any]) -> Delivery:
    return msgspec.structs.replace(current or Delivery(), **patch)


def merged_alerts(current: Alerts | None, patch: dict[str, Any]) -> Alerts:
    return msgspec.structs.replace(current or Alerts(), **patch)


@dataclass
class Patched:
    """A PATCH draft merged onto a stored config, and which checked parts it touched."""

    config: CueConfig
    at_text: str | None = None
    """``schedule.at`` as sent (resolved in its timezone by the schedule stage)"""
    schedule_changed: bool = False
    callback_changed: bool = False
    on_failure_changed: bool = False
    labels_changed: bool = False


def merged_config(cfg: CueConfig, draft: CueDraft) -> Patched:
    """``draft`` applied to ``cfg`` (changed in place): each section merges field by field."""
    out = Patched(cfg, schedule_changed=draft.schedule is not MISSING)
    if draft.description is not MISSING:
        cfg.description = draft.description
    if isinstance(draft.schedule, ScheduleInput):
        cfg.schedule, out.at_text = _merged_schedule(cfg.schedule, draft.schedule)
    if isinstance(draft.callback, CallbackInput):
        out.callback_changed = _merge_callback(cfg.callback, draft.callback)
    if draft.retry is not MISSING:
        cfg.retry = merged_retry(cfg.retry, draft.retry)
    if draft.on_failure is not MISSING:
        out.on_failure_changed = "webhook" in draft.on_failure
        cfg.on_failure = merged_on_failure(cfg.on_failure, draft.on_failure)
    if draft.verification is not MISSING:
        cfg.verification = draft.verification
    if draft.delivery is not MISSING:
        cfg.delivery = merged_delivery(cfg.delivery, dict(draft.delivery or {}))
    if draft.alerts is not MISSING:
        cfg.alerts = merged_alerts(cfg.alerts, dict(draft.alerts or {}))
    if draft.catch_up is not MISSING:
        cfg.catch_up = draft.catch_up
    if draft.overlap is not MISSING:
        cfg.overlap = draft.overlap
    if draft.labels is not MISSING:
        out.labels_changed = draft.labels != cfg.labels
        cfg.labels = dict(draft.labels)
    return out


def _merged_schedule(current: Schedule, sent: ScheduleInput) -> tuple[Schedule, str | None]:
    """The schedule after a PATCH, and ``at`` as sent: type and timezone kept unless sent; a
    cue that becomes one-time needs a new ``at``, and a recurring one drops it."""
    new_type = sent.type if sent.type is not MISSING else current.type
    at_text = sent.at if sent.at is not MISSING else None
    keeps_at = new_type == "once" and (at_text is not None or current.type == "once")
    schedule = Schedule(
        type=new_type,
        timezone=sent.timezone if sent.timezone is not MISSING else current.timezone,
        cron=sent.cron if sent.cron is not MISSING else (current.cron if new_type == "recurring" else None),
        at=current.at if keeps_at else None,
        jitter_seconds=sent.jitter_seconds if sent.jitter_seconds is not MISSING else current.jitter_seconds,
    )
    return schedule, at_text


def _merge_callback(callback: Callback, sent: CallbackInput) -> bool:
    """Apply the sent callback fields; whether the URL changed (it is SSRF-checked again)."""
    changed = False
    if sent.url is not MISSING:
        changed = sent.url != callback.url
        callback.url = sent.url
    if sent.method is not MISSING:
        callback.method = sent.method
    if sent.headers is not MISSING:
        callback.headers = sent.headers
    return changed
