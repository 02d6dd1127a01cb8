"""Cue labels: the ``label`` selectors of a listing, the labelled listing, the index's upkeep.

The account's label index (``store.cues``, ``cues_set_labels.lua``, on the account's slot) is a
*superset* of the truth: an entry is added before the cue write that gives a cue the label and
removed after the write that takes it away (docs/DESIGN.md "Cue labels"). So readers check each
candidate against the cue itself, and repair an entry that disagrees with its cue once it is
older than ``STALE_INDEX_US`` (a crash between the two steps; a newer write refreshes it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from cuefast.models import Account
from cuefast.services.cue_input import (
    LABEL_KEY_TEXT,
    LABEL_VALUE_TEXT,
    MAX_LABELS,
    checked_labels,
    is_label_key,
    is_label_value,
)
from cuefast.services.cue_status import MAX_IDS
from cuefast.services.render import render_rows
from cuefast.services.validate import MISSING, Checker, require_object

if TYPE_CHECKING:
    from cuefast.services.cues import CueService

STALE_INDEX_US = 30_000_000
Selector = tuple[str, str | None]
"""(key, value): the cue carries ``key=value``; value None: the cue has ``key``"""


def parse_selectors(values: Sequence[str]) -> list[Selector]:
    """``?label=`` values: ``key:value`` (the label), ``key`` (the key, any value); repeated =
    all of them. 422 for a malformed one or more than 32."""
    c = Checker()
    out: list[Selector] = []
    if len(values) > MAX_LABELS:
        c.add("query.label", f"At most {MAX_LABELS} label selectors")
    for text in values[:MAX_LABELS]:
        key, colon, value = text.partition(":")
        if not is_label_key(key):
            c.add("query.label", LABEL_KEY_TEXT)
        elif colon and not is_label_value(value):
            c.add("query.label", LABEL_VALUE_TEXT)
        else:
            out.append((key, value if colon else None))
    c.raise_if_any()
    return out


def parse_bulk_status(body: Any) -> tuple[list[str], dict[str, str] | None]:
    """The body of ``POST /v1/cues/pause`` / ``/resume``: (ids, None) or ([], labels)."""
    obj = require_object(body)
    c = Checker()
    for key in obj:
        if key not in ("ids", "labels"):
            c.add(f"body.{key}", "Extra inputs are not permitted")
    ids_in, labels_in = obj.get("ids"), obj.get("labels")
    if (ids_in is None) == (labels_in is None):
        c.add("body", "Exactly one of 'ids' and 'labels' is required")
    c.raise_if_any()
    if labels_in is not None:
        labels = checked_labels(c, "body.labels", labels_in)
        if labels == {}:
            c.add("body.labels", "Dictionary should have at least 1 item")
        c.raise_if_any()
        return [], labels
    ids: list[str] = []
    if not isinstance(ids_in, list):
        c.add("body.ids", "Input should be a valid list")
    elif not 1 <= len(ids_in) <= MAX_IDS:
        c.add("body.ids", f"List should have between 1 and {MAX_IDS} items")
    else:
        for i, item in enumerate(ids_in):
            checked = c.string(f"body.ids.{i}", item)
            if checked is not MISSING:
                ids.append(checked)
    c.raise_if_any()
    return ids, None


def matches(labels: Mapping[str, str], selectors: Sequence[Selector]) -> bool:
    return all(key in labels and (value is None or labels[key] == value) for key, value in selectors)


async def list_labelled(
    svc: CueService,
    account: Account,
    status: str | None,
    selectors: Sequence[Selector],
    *,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """A page of the account's cues matching every selector (and ``status``), newest first,
    and their exact total: the candidates from the index (no read of the account's other cues),
    each one's owner, status and labels in one pipeline, the page's cues in another."""
    from cuefast.services.cues import render_cue  # cues.py imports this module

    cues = svc.store.cues
    ids = await cues.label_candidates(account.id, selectors)
    info = await cues.fields(ids, ["acct", "status", "ca", "cfg"])
    live: list[str] = []
    suspects: dict[str, tuple[int, dict[str, str]]] = {}
    for cue_id in ids:
        row = info[cue_id]
        if row["acct"] is None:  # deleted (or not yet written)
            suspects[cue_id] = (0, {})
            continue
        if row["acct"] != account.id:
            continue
        labels = stored_labels(row["cfg"])
        if not matches(labels, selectors):  # being changed (or a crash left the entry)
            suspects[cue_id] = (int(row["ca"] or 0), labels)
        elif status is None or row["status"] == status:
            live.append(cue_id)
    if suspects:
        await repair(svc, account, suspects)
    rows = await cues.get_many(live[offset : offset + limit])
    return render_rows(rows, render_cue, "cue", lambda h: h["id"]), len(live)


def stored_labels(cfg: str | None) -> dict[str, str]:
    """The labels in a cue's config JSON ({} when it has none or cannot be read)."""
    try:
        labels = msgspec.json.decode(cfg or "{}").get("labels") or {}
        return {str(k): str(v) for k, v in labels.items()}
    except (msgspec.DecodeError, AttributeError):
        return {}


async def repair(
    svc: CueService, account: Account, suspects: Mapping[str, tuple[int, Mapping[str, str]]]
) -> None:
    """Make the index hold each suspect's labels now ({created µs, labels}; a deleted cue's are
    {}) where its entry is older than ``STALE_INDEX_US`` and unchanged since read: a younger one
    may be a write in progress."""
    cues = svc.store.cues
    ids = list(suspects)
    now = svc.clock.now_us()
    seen = await cues.indexed_labels(account.id, ids)
    fixes = []
    for cue_id, value in zip(ids, seen, strict=True):
        if value is None or now - int(value.partition(",")[0] or 0) < STALE_INDEX_US:
            continue
        created, labels = suspects[cue_id]
        fixes.append((cue_id, created, value, labels))
    await cues.repair_labels(account.id, fixes, now)
