"""Stored values → wire values, total: a value that cannot be rendered is a data error.

The views (``cues.render_cue``, ``executions.render_execution``, ``alerts.alert_json``) read
stored fields through these helpers. A field that is not what it should be (a time no
datetime can hold, an integer that is not one, JSON that does not parse) renders as null —
or the field's empty value where the contract says never null — and is logged on the
``cuefast.data`` logger with the object's kind, id and field name (never the value, which
may be a customer's secret). ``render_rows`` renders a listing so that a record that cannot
be rendered at all is left out (and logged) instead of failing the page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import msgspec

data_log = logging.getLogger("cuefast.data")
_RAW = msgspec.json.Decoder(msgspec.Raw)
Row = TypeVar("Row")


_errors = [0]


def data_errors() -> int:
    """How many data errors this process has logged (a render that logged none is pure: its
    answer may be reused for the same stored values)."""
    return _errors[0]


def data_error(kind: str, oid: str, field: str) -> None:
    """Log a stored value that cannot be rendered (the object and field, never the value)."""
    _errors[0] += 1
    data_log.error("data error: %s %s: field %r cannot be rendered", kind, oid, field)


def stored_time(
    raw: str | int | None, style: Callable[[int | None], str | None], kind: str, oid: str, field: str
) -> str | None:
    """A stored µs field (``""``/None = no value) in ``style`` (``times.fmt_z``/``fmt_offset``);
    None plus a logged data error when it is not an integer or no datetime can hold it."""
    if raw is None or raw == "":
        return None
    try:
        text = style(int(raw))
    except (TypeError, ValueError):
        text = None
    if text is None:
        data_error(kind, oid, field)
    return text


def stored_int(raw: str | int | None, kind: str, oid: str, field: str, default: int | None = 0) -> int | None:
    """A stored integer field (``""``/None = ``default``); ``default`` plus a logged data error
    when it is not an integer."""
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        data_error(kind, oid, field)
        return default


def stored_json(raw: str | None, kind: str, oid: str, field: str, default: str | None = None) -> Any:
    """A stored JSON text passed through as ``msgspec.Raw`` once it parses (a bad text would
    corrupt the whole response); ``default`` (JSON text, or None for null) otherwise."""
    if raw:
        try:
            return _RAW.decode(raw)
        except msgspec.DecodeError:
            data_error(kind, oid, field)
    return None if default is None else msgspec.Raw(default)


def render_rows(
    rows: Iterable[Row | None],
    render: Callable[[Row], dict[str, Any]],
    kind: str,
    id_of: Callable[[Row], str],
) -> list[dict[str, Any]]:
    """Render each present row; one that cannot be rendered at all (an unreadable config, a
    missing required field) is logged as a data error and left out of the page."""
    out: list[dict[str, Any]] = []
    for row in rows:
        if not row:
            continue
        try:
            out.append(render(row))
        except Exception:
            data_error(kind, id_of(row), "*")
    return out
