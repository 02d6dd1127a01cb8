"""Typed SDK response models: msgspec Structs decoded from the wire (CONTRACT.md §7–§13).

These are client-side views of the wire shapes. They are separate from ``cuefast.models``
(the server's *stored* layout, e.g. ``schedule.at`` in µs) and import nothing but msgspec.
Unknown keys are ignored and almost every field has a default, so a newer server that
adds keys, or an older one that omits cuefast additions, still decodes. ``to_dict()``
gives the plain JSON values (timestamps as ISO strings).

The API declares these same Structs as its response types (``/openapi.json`` is generated
from them), and tests/contract decodes every response the test suite sees into them with
unknown fields forbidden, so a key the server sends and the Struct lacks is a test failure.
Request bodies are in ``cuefast.client.bodies``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from cuefast.client._model import Model

# --- cues (§7) ---------------------------------------------------------------------


class Schedule(Model, kw_only=True):
    type: str
    timezone: str = "UTC"
    cron: str | None = None
    at: dt.datetime | None = None
    jitter_seconds: int = 0
    """cuefast: fires are spread by a deterministic offset in [0, jitter_seconds) s; absent on
    the wire (0 here) when off"""


class Callback(Model, kw_only=True):
    url: str | None = None
    method: str = "POST"
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class Retry(Model, kw_only=True):
    max_attempts: int = 3
    backoff_minutes: list[int] = msgspec.field(default_factory=lambda: [1, 5, 15])


class OnFailure(Model, kw_only=True):
    email: bool = True
    webhook: str | None = None
    pause: bool = False


class VerificationChecks(Model, kw_only=True):
    """cuefast: evidence the server checks after a successful outcome."""

    result_url_reachable: bool = False
    result_schema: dict[str, Any] | None = None
    external_id_pattern: str | None = None


class Verification(Model, kw_only=True):
    mode: str = "none"
    checks: VerificationChecks | None = None


class Delivery(Model, kw_only=True):
    timeout_seconds: int = 30
    outcome_deadline_seconds: int | None = None
    max_concurrency: int | None = None
    """cuefast: the cue's concurrency cap (absent from the response when none)"""
    max_concurrency_per_host: int | None = None
    """cuefast: the cue's concurrency cap per callback host (absent from the response when none)"""
    max_per_second: int | None = None
    """cuefast: the cue's rate cap per callback host (absent from the response when none)"""


class AlertConfig(Model, kw_only=True):
    consecutive_failures: int = 3
    missed_window_multiplier: int | None = None


class Outcome(Model, kw_only=True):
    success: bool
    result: str | None = None
    error: str | None = None
    metadata: dict[str, Any] | None = None
    recorded_at: dt.datetime | None = None
    external_id: str | None = None
    result_url: str | None = None
    result_ref: str | None = None
    result_type: str | None = None
    summary: str | None = None
    artifacts: list[Any] | None = None


class Execution(Model, kw_only=True):
    id: str
    cue_id: str
    scheduled_for: dt.datetime | None = None
    status: str = "pending"
    http_status: int | None = None
    attempts: int = 0
    error_message: str | None = None
    started_at: dt.datetime | None = None
    delivered_at: dt.datetime | None = None
    last_attempt_at: dt.datetime | None = None
    outcome: Outcome | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    triggered_by: str | None = None
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    outcome_state: str | None = None
    claimed_by_worker: str | None = None
    claimed_at: dt.datetime | None = None
    last_heartbeat_at: dt.datetime | None = None
    lease_expires_at: dt.datetime | None = None
    next_retry: dt.datetime | None = None
    outcome_deadline_at: dt.datetime | None = None
    replayed_from: str | None = None
    fire_at: dt.datetime | None = None
    """cuefast: when a jittered scheduled execution is delivered or claimable (``scheduled_for``
    stays its slot); absent on the wire, None here, for every other execution — it fires at
    ``scheduled_for``"""


class Cue(Model, kw_only=True):
    id: str
    name: str
    description: str | None = None
    status: str
    transport: str = "webhook"
    schedule: Schedule
    callback: Callback = msgspec.field(default_factory=Callback)
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    retry: Retry = msgspec.field(default_factory=Retry)
    next_run: dt.datetime | None = None
    last_run: dt.datetime | None = None
    run_count: int = 0
    fired_count: int = 0
    on_failure: OnFailure | None = None
    verification: Verification | None = None
    delivery: Delivery | None = None
    alerts: AlertConfig | None = None
    catch_up: str = "latest"
    overlap: str = "allow"
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    warning: str | None = None
    created_at: dt.datetime
    updated_at: dt.datetime
    # only on GET /v1/cues/{id}
    executions: list[Execution] | None = None
    execution_total: int | None = None
    execution_limit: int | None = None
    execution_offset: int | None = None


class CueList(Model, kw_only=True):
    cues: list[Cue]
    total: int
    limit: int
    offset: int


class FireResult(Model, kw_only=True):
    id: str
    cue_id: str
    scheduled_for: dt.datetime
    status: str
    triggered_by: str
    payload: dict[str, Any] = msgspec.field(default_factory=dict)


# --- executions (§8) -----------------------------------------------------------------


class ExecutionList(Model, kw_only=True):
    executions: list[Execution]
    total: int
    limit: int
    offset: int
    has_more: bool = False
    oldest_claimed_at: dt.datetime | None = None
    next_cursor: str | None = None
    """cuefast: set on a page asked for with ``cursor`` when another page follows"""


class OutcomeResult(Model, kw_only=True):
    execution_id: str
    outcome_recorded: bool
    outcome_state: str | None = None
    reason: str | None = None


class EvidenceResult(Model, kw_only=True):
    execution_id: str
    outcome_state: str | None = None
    evidence_updated: bool = True


class VerifyResult(Model, kw_only=True):
    execution_id: str
    outcome_state: str | None = None
    valid: bool | None = None
    reason: str | None = None


class ReplayJob(Model, kw_only=True):
    """cuefast: a bulk replay and its progress (``GET /v1/replays/{id}``)."""

    id: str
    status: str
    filter: dict[str, Any]
    limit: int
    rate_per_second: int
    selected: int
    replayed: int
    skipped: int
    last_error: str | None = None
    created_at: dt.datetime
    finished_at: dt.datetime | None = None


class ReplayResult(Model, kw_only=True):
    id: str
    cue_id: str
    scheduled_for: dt.datetime
    status: str
    triggered_by: str
    replayed_from: str | None = None


# --- worker transport (§9) -------------------------------------------------------------


class ClaimableExecution(Model, kw_only=True):
    execution_id: str
    cue_id: str
    cue_name: str | None = None
    task: str | None = None
    scheduled_for: dt.datetime | None = None
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    attempt: int = 0


class ClaimableList(Model, kw_only=True):
    executions: list[ClaimableExecution]


class ClaimResult(Model, kw_only=True):
    claimed: bool
    execution_id: str
    lease_seconds: int


class HeartbeatResult(Model, kw_only=True):
    execution_id: str
    lease_extended_until: dt.datetime | None = None
    acknowledged: bool = True


class WorkerHeartbeatResult(Model, kw_only=True):
    acknowledged: bool = True
    server_time: dt.datetime | None = None


class WorkerInfo(Model, kw_only=True):
    worker_id: str
    last_heartbeat: dt.datetime | None = None
    seconds_since_heartbeat: int | None = None
    heartbeat_status: str | None = None
    handlers: list[str] | None = None
    registered_since: dt.datetime | None = None


class WorkerList(Model, kw_only=True):
    workers: list[WorkerInfo]


# cuefast batch pull (POST /v1/worker/claim, /outcomes, /leases, /release)


class ClaimedExecution(Model, kw_only=True):
    execution_id: str
    cue_id: str
    cue_name: str | None = None
    task: str | None = None
    scheduled_for: dt.datetime | None = None
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    attempt: int = 0
    lease_expires_at: dt.datetime | None = None


class ClaimBatch(Model, kw_only=True):
    executions: list[ClaimedExecution]
    lease_seconds: int


class OutcomeReport(msgspec.Struct, kw_only=True):
    """One item of ``POST /v1/worker/outcomes`` (a request body, so not frozen)."""

    execution_id: str
    success: bool
    result: str | None = None
    error: str | None = None
    metadata: dict[str, Any] | None = None
    external_id: str | None = None
    result_url: str | None = None
    artifacts: list[Any] | None = None
    summary: str | None = None
    result_ref: str | None = None
    result_type: str | None = None


class ErrorInfo(Model, kw_only=True):
    code: str
    message: str = ""


class OutcomeItemResult(Model, kw_only=True):
    execution_id: str | None = None  # null when the item's id was not a well-formed one
    outcome_recorded: bool
    outcome_state: str | None = None
    error: ErrorInfo | None = None


class OutcomeBatchResult(Model, kw_only=True):
    results: list[OutcomeItemResult]


class LeaseExtension(Model, kw_only=True):
    execution_id: str
    lease_expires_at: dt.datetime | None = None


class LeaseResult(Model, kw_only=True):
    extended: list[LeaseExtension]
    lost: list[str]
    cancelled: list[str] = msgspec.field(default_factory=list)
    """cancelled by their cue's overlap policy (``cancel_previous``): stop their handlers"""


class ReleaseResult(Model, kw_only=True):
    released: int


class TaskCap(Model, kw_only=True):
    """A worker task's claim cap (cuefast): ``max_concurrency`` None = not capped; ``held``:
    claims of the task holding a permit now."""

    task: str
    max_concurrency: int | None
    held: int


# --- alerts (§12.5) and usage (§13.1) --------------------------------------------------


class Alert(Model, kw_only=True):
    id: str
    cue_id: str | None = None
    execution_id: str | None = None
    alert_type: str
    severity: str = "warning"
    message: str = ""
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    acknowledged: bool = False
    created_at: dt.datetime | None = None


class AlertList(Model, kw_only=True):
    alerts: list[Alert]
    total: int
    limit: int
    offset: int


class BillingPeriod(Model, kw_only=True):
    start: dt.date
    end: dt.date
    days_remaining: int | None = None


class CueUsage(Model, kw_only=True):
    used: int = 0
    active: int = 0
    limit: int = 0
    remaining: int = 0
    percent_used: int = 0


class ExecutionUsage(Model, kw_only=True):
    used: int = 0
    limit: int = 0
    remaining: int = 0
    percent_used: int = 0
    percentage: float = 0.0
    projected_month_end: int = 0
    will_exceed_limit: bool = False


class OutcomeUsage(Model, kw_only=True):
    reported: int = 0
    succeeded: int = 0
    failed: int = 0


class RateLimitUsage(Model, kw_only=True):
    requests_per_minute: int = 0
    limit: int = 0
    current_usage: int = 0


class Usage(Model, kw_only=True):
    plan: str
    billing_period: BillingPeriod | None = None
    period: BillingPeriod | None = None
    cues: CueUsage = msgspec.field(default_factory=CueUsage)
    executions: ExecutionUsage = msgspec.field(default_factory=ExecutionUsage)
    outcomes: OutcomeUsage = msgspec.field(default_factory=OutcomeUsage)
    rate_limit: RateLimitUsage = msgspec.field(default_factory=RateLimitUsage)
    upgrade_url: str | None = None


# --- errors (§3.5) ----------------------------------------------------------------------


class ErrorDetail(Model, kw_only=True):
    """One problem of a 422 ``validation_error``: ``field`` is the dotted location
    (``body.retry.max_attempts``, ``query.limit``), ``message`` the text."""

    field: str
    message: str


class ErrorBody(Model, kw_only=True):
    code: str
    message: str
    status: int
    details: list[ErrorDetail] | None = None


class ErrorResponse(Model, kw_only=True):
    """Every error: ``{"error": {"code", "message", "status"}}`` (``details`` on 422)."""

    error: ErrorBody


# --- health, status, info (§5) ------------------------------------------------------------


class HealthServices(Model, kw_only=True):
    redis: str
    postgres: str
    poller: str
    worker: str


class PollerHealth(Model, kw_only=True):
    """The scheduler's last cycle; only ``status: "unknown"`` before the first one."""

    status: str | None = None
    last_run: dt.datetime | None = None
    seconds_ago: int | None = None
    cues_last_cycle: int | None = None
    cycle_duration_ms: int | None = None


class WorkersHealth(Model, kw_only=True):
    active_count: int = 0
    last_heartbeat: dt.datetime | None = None


class QueueHealth(Model, kw_only=True):
    pending_outbox: int = 0
    stale_executions: int = 0
    pending_retries: int = 0
    pending_worker_claims: int = 0


class Health(Model, kw_only=True):
    status: str
    version: str
    timestamp: dt.datetime
    services: HealthServices
    poller: PollerHealth
    workers: WorkersHealth = msgspec.field(default_factory=WorkersHealth)
    queue: QueueHealth = msgspec.field(default_factory=QueueHealth)


class Readiness(Model, kw_only=True):
    """``GET /status``: ``healthy``, ``degraded`` (200) or ``down`` (503), with a reason."""

    status: str
    reason: str | None = None


class AuthenticationPaths(Model, kw_only=True):
    per_user_api_key: bool = True
    internal_token_with_on_behalf_of: bool = False


class ServerInfo(Model, kw_only=True):
    version: str
    authorization_backend: str = ""
    authentication_paths: AuthenticationPaths = msgspec.field(default_factory=AuthenticationPaths)
    disabled_primitives: list[str] = msgspec.field(default_factory=list)


# --- cues: bulk delete (§7.9) and echo (§16.5) --------------------------------------------------


class BulkDeleteResult(Model, kw_only=True):
    deleted: list[str]
    skipped: list[str]


class BulkStatusResult(Model, kw_only=True):
    """``POST /v1/cues/pause`` / ``/resume``: the account's cues selected (``matched``) and
    those the call paused or resumed (``changed``, their ids in ``ids``)."""

    matched: int
    changed: int
    ids: list[str]


class EchoStored(Model, kw_only=True):
    stored: bool = True


class Echo(Model, kw_only=True):
    """``waiting``, or ``delivered`` with what was received (headers as the caller may see
    them)."""

    status: str
    payload: Any = None
    headers: dict[str, str] | None = None
    received_at: dt.datetime | None = None
