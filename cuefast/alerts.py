"""Alerts (CONTRACT.md §12.4–§12.6): their wire shapes and the ``GET /v1/alerts`` listing.

Alerts are raised inside the Lua script that records the event (``lua/lib/alert.lua``):
``verification_failed`` with the outcome, ``consecutive_failures`` with the verdict that
completes a cue's failure streak, ``outcome_timeout`` with the deadline expiry. Each alert
is stored in its execution's partition and queued on that partition's notices stream in the
same script; ``cuefast.notices`` delivers it to the account's alert webhook.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from cuefast.errors import ValidationFailed, api_error
from cuefast.models import Account
from cuefast.signing import canonical_json
from cuefast.store import Store
from cuefast.times import fmt_offset, fmt_z, parse_datetime
from cuefast.validate import query_int

ALERT_TYPES = ("consecutive_failures", "outcome_timeout", "verification_failed")
SEVERITY = "warning"


def _metadata(row: Mapping[str, str]) -> Any:
    raw = row.get("md") or ""
    return msgspec.json.decode(raw) if raw else {}


def alert_json(row: Mapping[str, str]) -> dict[str, Any]:
    """An alert as ``GET /v1/alerts`` returns it (§12.5)."""
    return {
        "id": row["id"],
        "cue_id": row.get("cue") or None,
        "execution_id": row.get("eid") or None,
        "alert_type": row.get("type"),
        "severity": SEVERITY,
        "message": row.get("msg", ""),
        "metadata": _metadata(row),
        "acknowledged": False,
        "created_at": fmt_z(int(row["ca"])),
    }


def webhook_body(row: Mapping[str, str]) -> bytes:
    """The alert webhook body (§12.6), in the canonical form of §10.2."""
    return canonical_json(
        {
            "alert_id": row["id"],
            "alert_type": row.get("type"),
            "created_at": fmt_offset(int(row["ca"])),
            "cue_id": row.get("cue") or None,
            "execution_id": row.get("eid") or None,
            "message": row.get("msg", ""),
            "metadata": _metadata(row),
            "severity": SEVERITY,
        }
    )


def _since(raw: str | None) -> int | None:
    if raw is None:
        return None
    text = raw.strip()
    if " " in text and "T" in text:  # a "+" offset sent unencoded arrives as a space
        text = text.replace(" ", "+")
    try:
        return parse_datetime(text)
    except (ValueError, TypeError):
        raise ValidationFailed([("query.since", "Input should be a valid datetime")]) from None


class AlertService:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def list(self, account: Account, query: Mapping[str, str]) -> dict[str, Any]:
        alert_type = query.get("alert_type")
        if alert_type is not None and alert_type not in ALERT_TYPES:
            raise api_error(400, "invalid_filter", f"alert_type must be one of: {', '.join(ALERT_TYPES)}")
        since = _since(query.get("since"))
        limit = query_int(query, "limit", 20, 1, 100)
        offset = query_int(query, "offset", 0, 0, None)
        rows, total = await self.store.alerts_page(account.id, alert_type, since, offset, limit)
        return {"alerts": [alert_json(r) for r in rows], "total": total, "limit": limit, "offset": offset}
