"""Examples shown in ``/openapi.json`` (the contract's own, CONTRACT.md §5–§13)."""

from __future__ import annotations

from typing import Any

EXECUTION_ID = "f2653324-1c5e-4d0b-9a77-6f3e0c1d2b88"
CUE_ID = "cue_pbafy2oo0jo9"

REGISTRATION = {"api_key": "cue_sk_0b1e5c2f9a7d4e6b8c3a1f0e9d8c7b6a", "email": "alice@example.com"}
KEY_ROTATION = {"api_key": "cue_sk_5d0c9a7d4e6b8c3a1f0e9d8c7b6a0b1e", "previous_key_revoked": True}
KEY_REVEAL = {"api_key": None, "prefix": "cue_sk_86b60", "message": "Key reveal is disabled on this server."}
ACCOUNT = {
    "email": "alice@example.com",
    "plan": "free",
    "active_cues": 2,
    "active_cue_limit": 10,
    "executions_this_month": 17,
    "monthly_execution_limit": 300,
    "rate_limit_per_minute": 60,
    "has_webhook_secret": True,
    "api_key_prefix": "cue_sk_86b60",
    "slug": "alice",
}

CUE_CREATE: dict[str, Any] = {
    "name": "morning-brief",
    "schedule": {"type": "recurring", "cron": "0 9 * * *", "timezone": "America/Los_Angeles"},
    "callback": {"url": "https://agent.example.com/run", "headers": {"X-Team": "ops"}},
    "payload": {"task": "daily_brief", "n": 1},
}
CUE: dict[str, Any] = {
    "id": CUE_ID,
    "name": "morning-brief",
    "description": None,
    "status": "active",
    "transport": "webhook",
    "schedule": {"type": "recurring", "timezone": "America/Los_Angeles", "cron": "0 9 * * *"},
    "callback": {"url": "https://agent.example.com/run", "method": "POST", "headers": {"X-Team": "ops"}},
    "payload": {"task": "daily_brief", "n": 1},
    "retry": {"max_attempts": 3, "backoff_minutes": [1, 5, 15]},
    "next_run": "2026-11-24T17:00:00Z",
    "last_run": None,
    "run_count": 0,
    "fired_count": 0,
    "on_failure": {"email": True, "webhook": None, "pause": False},
    "verification": None,
    "delivery": None,
    "alerts": None,
    "catch_up": "latest",
    "overlap": "allow",
    "warning": None,
    "created_at": "2026-11-23T11:41:18.397965Z",
    "updated_at": "2026-11-23T11:41:18.397965Z",
}
OUTCOME = {
    "success": True,
    "result": "done",
    "error": None,
    "metadata": {"k": "v"},
    "recorded_at": "2026-11-23T11:43:02.001000Z",
    "external_id": "ch_123",
    "result_url": None,
    "result_ref": None,
    "result_type": None,
    "summary": "charged",
    "artifacts": None,
}
EXECUTION: dict[str, Any] = {
    "id": EXECUTION_ID,
    "cue_id": CUE_ID,
    "scheduled_for": "2026-11-23T11:43:00Z",
    "status": "success",
    "http_status": 200,
    "attempts": 1,
    "error_message": None,
    "started_at": "2026-11-23T11:43:00.412001Z",
    "delivered_at": "2026-11-23T11:43:00.530114Z",
    "last_attempt_at": "2026-11-23T11:43:00.412001Z",
    "outcome": OUTCOME,
    "created_at": "2026-11-23T11:43:00.101777Z",
    "updated_at": "2026-11-23T11:43:02.001000Z",
    "triggered_by": "scheduled",
    "payload": {"task": "daily_brief"},
    "outcome_state": "reported_success",
    "claimed_by_worker": None,
    "claimed_at": None,
    "last_heartbeat_at": None,
    "lease_expires_at": None,
    "next_retry": None,
    "outcome_deadline_at": None,
    "replayed_from": None,
}
CUE_WITH_EXECUTIONS = {
    **CUE,
    "executions": [EXECUTION],
    "execution_total": 1,
    "execution_limit": 10,
    "execution_offset": 0,
}
CUE_LIST = {"cues": [CUE], "total": 1, "limit": 50, "offset": 0}
FIRE = {"payload_override": {"n": 2, "x": True}, "idempotency_key": "brief-2026-11-23"}
FIRED = {
    "id": "3f0e2a4c-9b1d-4c55-8d7e-2b6f1a0c9e11",
    "cue_id": CUE_ID,
    "scheduled_for": "2026-11-23T11:43:17.702571+00:00",
    "status": "pending",
    "triggered_by": "manual_fire",
    "payload": {"task": "daily_brief", "n": 2, "x": True},
}
EXECUTION_LIST = {
    "executions": [EXECUTION],
    "total": 1,
    "limit": 20,
    "offset": 0,
    "has_more": False,
    "oldest_claimed_at": None,
}
OUTCOME_REPORT = {"success": True, "result": "done", "external_id": "ch_123", "summary": "charged"}
OUTCOME_RECORDED = {
    "execution_id": EXECUTION_ID,
    "outcome_recorded": True,
    "outcome_state": "reported_success",
    "reason": None,
}
REPLAYED = {
    "id": "9d1c0f3e-2a4c-4b55-8d7e-2b6f1a0c9e11",
    "cue_id": CUE_ID,
    "scheduled_for": "2026-11-23T12:00:01.220331+00:00",
    "status": "pending",
    "triggered_by": "replay",
    "replayed_from": EXECUTION_ID,
}
CLAIMABLE = {
    "executions": [
        {
            "execution_id": "034cdaba-8f4e-4b8e-9c1a-1d2e3f4a5b6c",
            "cue_id": "cue_8hxei48h82v9",
            "cue_name": "nightly-etl",
            "task": "etl",
            "scheduled_for": "2026-11-23T11:43:00Z",
            "payload": {"task": "etl", "extra": "from-fire"},
            "attempt": 0,
        }
    ]
}
CLAIMED = {"claimed": True, "execution_id": "034cdaba-8f4e-4b8e-9c1a-1d2e3f4a5b6c", "lease_seconds": 900}
WORKERS = {
    "workers": [
        {
            "worker_id": "box-1",
            "last_heartbeat": "2026-11-23T11:41:18Z",
            "seconds_since_heartbeat": 4,
            "heartbeat_status": "active",
            "handlers": ["etl"],
            "registered_since": "2026-11-20T08:00:00Z",
        }
    ]
}
USAGE = {
    "plan": "free",
    "billing_period": {"start": "2026-11-01", "end": "2026-11-30", "days_remaining": 7},
    "period": {"start": "2026-11-01", "end": "2026-11-30"},
    "cues": {"used": 6, "active": 6, "limit": 10, "remaining": 4, "percent_used": 60},
    "executions": {
        "used": 8,
        "limit": 300,
        "remaining": 292,
        "percent_used": 3,
        "percentage": 2.7,
        "projected_month_end": 11,
        "will_exceed_limit": False,
    },
    "outcomes": {"reported": 5, "succeeded": 4, "failed": 1},
    "rate_limit": {"requests_per_minute": 60, "limit": 60, "current_usage": 3},
    "upgrade_url": None,
}
ALERTS = {
    "alerts": [
        {
            "id": "1a065a9b-5b1e-4c77-8a0e-3f2d1c0b9a88",
            "cue_id": "cue_8hxei48h82v9",
            "execution_id": "4bcd5153-8f4e-4b8e-9c1a-1d2e3f4a5b6c",
            "alert_type": "verification_failed",
            "severity": "warning",
            "message": "Execution 4bcd5153-8f4e-4b8e-9c1a-1d2e3f4a5b6c reported success but failed "
            "verification (required evidence missing).",
            "metadata": {"outcome_state": "verification_failed", "transport": "webhook"},
            "acknowledged": False,
            "created_at": "2026-11-23T11:44:39.515332Z",
        }
    ],
    "total": 1,
    "limit": 20,
    "offset": 0,
}
