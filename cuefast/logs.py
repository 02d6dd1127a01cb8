"""The one logging setup of every cuefast command: JSON or text lines, UTC times, the request id.

``setup`` installs one stderr handler on the root logger (``cuefast serve``, each role, the
one-shot commands and ``cuefast worker`` all call it). A line is either one JSON object
(``CUEFAST_LOG_FORMAT=json``)::

    {"ts": "2026-12-04T15:01:02.123Z", "level": "INFO", "logger": "cuefast.api.app",
     "message": "…", "request_id": "…", "cue_id": "…"}

or text (``text``): ``2026-12-04T15:01:02.123Z INFO cuefast.api.app: … request_id=…``.
``auto`` (the default) is JSON unless stderr is a terminal, i.e. JSON in a container, under
systemd or behind a pipe, text in a developer's shell.

Context fields: ``REQUEST_ID`` (set by the API's edge for the life of a request, so every line
emitted while serving it carries ``request_id``), every ``extra=`` field of the call
(``cue_id``, ``execution_id``…), and ``trace_id``/``span_id`` when a tracing hook is set
(``cuefast.tracing``). The variable holds the id as the header bytes the edge already has:
decoding happens only when a line is written.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TextIO

REQUEST_ID: ContextVar[bytes | None] = ContextVar("cuefast_request_id", default=None)
"""The ``X-Request-Id`` of the request being served (bytes, as on the wire), else None."""

FORMATS = ("auto", "json", "text")

trace_ids: Callable[[], tuple[str, str] | None] | None = None
"""Set by ``cuefast.tracing`` when tracing is on: (trace id, span id) of the current span."""

# Every attribute a plain LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's copy of the message with terminal colours
}


def utc_timestamp(created: float) -> str:
    """``2026-12-04T15:01:02.123Z``: ISO 8601, UTC, milliseconds."""
    secs = int(created)
    millis = int((created - secs) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{millis:03d}Z"


def context(record: logging.LogRecord) -> dict[str, Any]:
    """A record's context fields: the request id, the trace ids, its ``extra=`` fields."""
    out: dict[str, Any] = {}
    rid = REQUEST_ID.get()
    if rid is not None:
        out["request_id"] = rid.decode("latin-1")
    if trace_ids is not None and (ids := trace_ids()) is not None:
        out["trace_id"], out["span_id"] = ids
    for key, value in record.__dict__.items():
        if key not in _STANDARD and not key.startswith("_"):
            out[key] = value
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line (a traceback is the ``exc`` field, never extra lines)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": utc_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(context(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``<UTC time> LEVEL logger: message key=value…`` (a traceback follows on its own lines)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{utc_timestamp(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = context(record)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


def resolve_format(name: str, stream: TextIO) -> str:
    """``json`` or ``text`` for a ``CUEFAST_LOG_FORMAT`` value (``auto``: text on a terminal)."""
    name = (name or "auto").lower()
    if name not in FORMATS:
        raise ValueError(f"unknown log format {name!r} (use auto, json or text)")
    if name == "auto":
        try:
            return "text" if stream.isatty() else "json"
        except (AttributeError, ValueError):
            return "json"
    return name


def setup(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> str:
    """Route every log line to ``stream`` (stderr) in ``fmt`` at ``level``; returns the format
    used. Raises ValueError for an unknown level or format."""
    out = stream if stream is not None else sys.stderr
    chosen = resolve_format(fmt, out)
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per SDK request (the worker)
    return chosen
