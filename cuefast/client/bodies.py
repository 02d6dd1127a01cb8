"""Request bodies the API accepts, as msgspec Structs (CONTRACT.md §6–§9).

They document the wire (``/openapi.json`` is generated from them) and can be encoded to
build a body (``msgspec.json.encode(CueCreate(...))``). Constraints are the contract's
(``Meta``); the server is more lenient than the types say where the contract asks for it:
booleans also as ``"true"``/``"false"``/``0``/``1``, a top-level ``null`` means "not given",
``callback.method`` in any case, a ``schedule.at`` without an offset. The server checks
bodies with its own parser (``cuefast/services/*_input.py``), which keeps the contract's
exact 422 texts; these Structs are the schema, not the parser.

Like the response models they import nothing but msgspec.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from cuefast.client.models import OutcomeReport

WorkerId = Annotated[str, Meta(min_length=1, max_length=255, description="1-255 characters, one line")]
Text255 = Annotated[str, Meta(min_length=1, max_length=255)]
Url = Annotated[str, Meta(min_length=1, max_length=2048, description="absolute http(s) URL")]
ExecutionIds = Annotated[list[str], Meta(max_length=500)]


class Body(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base of the request bodies: fields left at their default are not encoded."""


# --- auth and account (§6) -------------------------------------------------------------------


class RegisterRequest(Body, kw_only=True):
    email: Annotated[str, Meta(max_length=254, description="an e-mail address")]


class AccountUpdate(Body, kw_only=True):
    """At least one field (else 422 ``no_fields``); ``alert_webhook_url: ""`` clears it."""

    email: Annotated[str, Meta(max_length=254)] | None = None
    alert_webhook_url: Annotated[str, Meta(max_length=2048)] | None = None


# --- login (§16) ---------------------------------------------------------------------------------
DeviceCodeText = Annotated[
    str, Meta(min_length=6, max_length=128, description="6-128 characters, client-chosen")
]


class DeviceCodeRequest(Body, kw_only=True):
    device_code: DeviceCodeText


class SubmitEmailRequest(Body, kw_only=True):
    device_code: DeviceCodeText
    email: Annotated[str, Meta(max_length=254, description="an e-mail address")]


class SessionRequest(Body, kw_only=True):
    token: Annotated[str, Meta(description="the one-time `session_token` of an approved device-code poll")]


# --- cues (§7) ---------------------------------------------------------------------------------


class ScheduleInput(Body, kw_only=True):
    """``recurring`` needs ``cron``, ``once`` needs ``at`` (in the future; without an offset it
    is wall-clock time in ``timezone``)."""

    type: Literal["once", "recurring"]
    cron: Annotated[str, Meta(max_length=100)] | None = None
    at: dt.datetime | None = None
    timezone: str = "UTC"
    jitter_seconds: Annotated[int, Meta(ge=0, le=3600)] = 0
    """cuefast: spread each fire by a deterministic offset in [0, jitter_seconds) s"""


class ScheduleChange(Body, kw_only=True):
    """PATCH: merged into the cue's schedule (``type`` and ``timezone`` kept when omitted)."""

    type: Literal["once", "recurring"] | None = None
    cron: Annotated[str, Meta(max_length=100)] | None = None
    at: dt.datetime | None = None
    timezone: str | None = None
    jitter_seconds: Annotated[int, Meta(ge=0, le=3600)] | None = None
    """cuefast: 0 turns jitter off; omitted keeps it"""


class CallbackInput(Body, kw_only=True):
    url: Url | None = None
    method: Literal["POST", "GET", "PUT", "PATCH"] = "POST"
    headers: Annotated[dict[str, str], Meta(max_length=100)] | None = None


class RetryInput(Body, kw_only=True):
    max_attempts: Annotated[int, Meta(ge=1, le=10)] = 3
    backoff_minutes: Annotated[list[Annotated[int, Meta(ge=0, le=10080)]], Meta(max_length=10)] = (
        msgspec.field(default_factory=lambda: [1, 5, 15])
    )


class OnFailureWebhook(Body, kw_only=True):
    """The object form of ``on_failure.webhook``; only ``url`` is kept."""

    url: Url
    method: str | None = None


class OnFailureInput(Body, kw_only=True):
    email: bool = True
    webhook: Url | OnFailureWebhook | None = None
    pause: bool = False


class VerificationChecksInput(Body, kw_only=True):
    """cuefast: evidence the server checks after a successful outcome (README "Evidence that is
    checked"); at least one check, or the object means none."""

    result_url_reachable: bool = False
    result_schema: (
        Annotated[
            dict[str, Any],
            Meta(description="a JSON Schema (at most 16,384 bytes) the outcome's `result` must satisfy"),
        ]
        | None
    ) = None
    external_id_pattern: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=256,
                description="a regular expression (JSON Schema `pattern` dialect) the outcome's "
                "`external_id` must match whole",
            ),
        ]
        | None
    ) = None


class VerificationInput(Body, kw_only=True):
    mode: Literal["none", "require_external_id", "require_result_url", "require_artifacts", "manual"] = "none"
    checks: VerificationChecksInput | None = None


class DeliveryInput(Body, kw_only=True):
    timeout_seconds: Annotated[int, Meta(ge=1, le=3600)] = 30
    outcome_deadline_seconds: Annotated[int, Meta(ge=1, le=86400)] | None = 300
    max_concurrency: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=1000,
                description="cuefast: at most this many of the cue's delivery attempts in flight at once "
                "(across every dispatcher; the others wait, pending, in order); null removes the cap",
            ),
        ]
        | None
    ) = None
    max_concurrency_per_host: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=1000,
                description="cuefast: at most this many attempts in flight to the cue's callback host, "
                "counted over the account's cues on that host; null removes the cap",
            ),
        ]
        | None
    ) = None
    max_per_second: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=1000,
                description="cuefast: the cue's attempts reach its callback host at most this often, evenly "
                "spaced, in a window per (account, host); null removes the cap",
            ),
        ]
        | None
    ) = None


class AlertsInput(Body, kw_only=True):
    consecutive_failures: Annotated[int, Meta(ge=1, le=100)] = 3
    missed_window_multiplier: Annotated[int, Meta(ge=1, le=100)] | None = None


CatchUp = Literal["latest", "all", "none"]
Overlap = Literal["allow", "skip", "buffer_one", "cancel_previous"]
Description = Annotated[str, Meta(max_length=10_000)]
LabelKey = Annotated[
    str,
    Meta(
        max_length=317,
        pattern=r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,61}[a-zA-Z0-9])?$",
        description="1-63 characters [a-zA-Z0-9._-], alphanumeric at both ends; optional DNS prefix and '/'",
    ),
]
LabelValue = Annotated[
    str,
    Meta(
        max_length=63,
        pattern=r"^([a-zA-Z0-9]([-a-zA-Z0-9_.]{0,61}[a-zA-Z0-9])?)?$",
        description="0-63 characters [a-zA-Z0-9._-], alphanumeric at both ends",
    ),
]
Labels = Annotated[
    dict[LabelKey, LabelValue],
    Meta(
        max_length=32,
        description="at most 32 labels, `{key: value}`; selectable with `?label=` and bulk pause/resume",
    ),
]


class CueCreate(Body, kw_only=True):
    """``POST /v1/cues``; unknown top-level fields are ignored. A webhook cue needs
    ``callback.url``."""

    name: Text255
    description: Description | None = None
    transport: Literal["webhook", "worker"] = "webhook"
    schedule: ScheduleInput
    callback: CallbackInput | None = None
    payload: dict[str, Any] | None = None
    retry: RetryInput | None = None
    on_failure: OnFailureInput | None = None
    verification: VerificationInput | None = None
    delivery: DeliveryInput | None = None
    alerts: AlertsInput | None = None
    catch_up: CatchUp = "latest"
    overlap: Overlap = "allow"
    labels: Labels | None = None


class CueUpdate(Body, kw_only=True, forbid_unknown_fields=True):
    """``PATCH /v1/cues/{id}``: only the fields sent change (``null`` = not sent); unknown keys
    are 422."""

    name: Text255 | None = None
    description: Description | None = None
    status: Literal["active", "paused"] | None = None
    schedule: ScheduleChange | None = None
    callback: CallbackInput | None = None
    payload: dict[str, Any] | None = None
    retry: RetryInput | None = None
    on_failure: OnFailureInput | None = None
    verification: VerificationInput | None = None
    delivery: DeliveryInput | None = None
    alerts: AlertsInput | None = None
    catch_up: CatchUp | None = None
    overlap: Overlap | None = None
    labels: Labels | None = None  # replaces the cue's labels; {} (or an explicit null) clears them


class BulkDeleteRequest(Body, kw_only=True):
    ids: Annotated[list[str], Meta(min_length=1, max_length=100)]


class BulkStatusRequest(Body, kw_only=True):
    """``POST /v1/cues/pause`` and ``/v1/cues/resume``: exactly one of ``ids`` (1-1,000 of the
    account's cue ids; others are skipped) and ``labels`` (1-32 labels; the cues carrying all)."""

    ids: Annotated[list[str], Meta(min_length=1, max_length=1000)] | None = None
    labels: Annotated[dict[LabelKey, LabelValue], Meta(min_length=1, max_length=32)] | None = None


class FireRequest(Body, kw_only=True):
    """Optional body of ``POST /v1/cues/{id}/fire`` (empty = ``{}``)."""

    payload_override: dict[str, Any] | None = None
    merge_strategy: Literal["merge", "replace"] | None = None
    send_at: dt.datetime | None = None
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=256)] | None = None


# --- executions (§8) -----------------------------------------------------------------------------

Str500 = Annotated[str, Meta(max_length=500)]


class ReplayFilter(Body, kw_only=True):
    """Which executions a bulk replay selects (all given ones must match; none = every one)."""

    cue_id: str | None = None
    status: str | None = None
    status__in: list[str] | None = None
    outcome_state: str | None = None
    triggered_by: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


class BulkReplayRequest(Body, kw_only=True):
    """cuefast: ``POST /v1/executions/replay`` — replay up to ``limit`` matching executions Redis
    holds (newest first), ``rate_per_second`` at a time; finished ones only (others are skipped)."""

    filter: ReplayFilter | None = None
    limit: Annotated[int, Meta(ge=1, le=10_000)] | None = None
    rate_per_second: Annotated[int, Meta(ge=1, le=1_000)] | None = None
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=256)] | None = None


class OutcomeRequest(Body, kw_only=True):
    """``result``/``error`` longer than 16,384 characters are truncated, never refused;
    ``metadata`` at most 32,768 bytes of JSON."""

    success: bool
    result: str | None = None
    error: str | None = None
    metadata: dict[str, Any] | None = None
    external_id: Str500 | None = None
    result_url: Url | None = None
    result_ref: Str500 | None = None
    result_type: Annotated[str, Meta(max_length=100)] | None = None
    summary: Str500 | None = None
    artifacts: list[Any] | None = None


class EvidenceRequest(Body, kw_only=True):
    external_id: Str500 | None = None
    result_url: Url | None = None
    result_ref: Str500 | None = None
    result_type: Annotated[str, Meta(max_length=100)] | None = None
    summary: Str500 | None = None
    artifacts: list[Any] | None = None
    metadata: dict[str, Any] | None = None


class VerifyRequest(Body, kw_only=True):
    """Optional body (empty = ``{}`` = valid)."""

    valid: bool = True
    reason: str | None = None


# --- worker transport (§9) and the batch pull --------------------------------------------------


class ClaimNextRequest(Body, kw_only=True):
    worker_id: WorkerId
    task: Text255 | None = None
    agent: Text255 | None = None


class ClaimRequest(Body, kw_only=True):
    worker_id: WorkerId


class WorkerHeartbeatRequest(Body, kw_only=True):
    worker_id: WorkerId
    handlers: list[str] | None = None


class BatchClaimRequest(Body, kw_only=True):
    """``tasks: null`` = any task; ``lease_seconds`` at most (and by default)
    ``CUEFAST_WORKER_LEASE_SECONDS``."""

    worker_id: WorkerId
    tasks: Annotated[list[Text255], Meta(max_length=100)] | None = None
    agent: Text255 | None = None
    max: Annotated[int, Meta(ge=1, le=500)] = 50
    wait_seconds: Annotated[float, Meta(ge=0, le=30)] = 0.0
    lease_seconds: Annotated[int, Meta(ge=1)] | None = None


class OutcomeBatchRequest(Body, kw_only=True):
    worker_id: WorkerId
    outcomes: Annotated[list[OutcomeReport], Meta(min_length=1, max_length=500)]


class LeaseRequest(Body, kw_only=True):
    """``POST /v1/worker/leases`` and ``/v1/worker/release``."""

    worker_id: WorkerId
    execution_ids: ExecutionIds


class TaskCapRequest(Body, kw_only=True):
    """``PUT /v1/worker/task-caps/{task}``: the most claims of the task held at once."""

    max_concurrency: Annotated[int, Meta(ge=1, le=10000)]
