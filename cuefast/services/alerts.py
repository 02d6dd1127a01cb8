"""Alerts (CONTRACT.md §12.4–§12.6): their wire shapes and the ``GET /v1/alerts`` listing.

Alerts are raised inside the Lua script that records the event (``lua/lib/alert.lua``):
``verification_failed`` with the outcome, ``consecutive_failures`` with the verdict that
completes a cue's failure streak, ``outcome_timeout`` with the deadline expiry. Each alert
is stored in its execution's partition and queued on that partition's notices stream in the
same script; ``cuefast.engine.notices`` delivers it to the account's alert webhook.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from cuefast.errors import ValidationFailed, api_error
from cuefast.models import Account
from cuefast.services.render import render_rows, stored_json, stored_time
from cuefast.services.validate import MAX_OFFSET, query_int
from cuefast.signing import canonical_json
from cuefast.store import Store
from cuefast.times import RANGE_TEXT, InstantOutOfRange, fmt_offset, fmt_z, parse_datetime

ALERT_TYPES = ("consecutive_failures", "outcome_timeout", "verification_failed")
SEVERITY = "warning"


def _metadata(row: Mapping[str, str]) -> Any:
    raw = row.get("md") or ""
    return msgspec.json.decode(raw) if raw else {}


def alert_json(row: Mapping[str, str]) -> dict[str, Any]:
    """An alert as ``GET /v1/alerts`` returns it (§12.5); a stored value that cannot be
    rendered is null (``{}`` for metadata) and a logged data error."""
    aid = row["id"]
    return {
        "id": aid,
        "cue_id": row.get("cue") or None,
        "execution_id": row.get("eid") or None,
        "alert_type": row.get("type"),
        "severity": SEVERITY,
        "message": row.get("msg", ""),
        "metadata": stored_json(row.get("md"), "alert", aid, "metadata", "{}"),
        "acknowledged": False,
        "created_at": stored_time(row.get("ca"), fmt_z, "alert", aid, "created_at"),
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
    except InstantOutOfRange:
        raise ValidationFailed([("query.since", f"Input {RANGE_TEXT}")]) from None
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
        offset = query_int(query, "offset", 0, 0, MAX_OFFSET)
        rows, total = await self.store.alerts.page(
            account.id, alert_type, since, offset, limit, partitions=account.partitions
        )
        alerts = render_rows(rows, alert_json, "alert", lambda r: r.get("id", "?"))
        return {"alerts": alerts, "total": total, "limit": limit, "offset": offset}
