"""Request/response helpers shared by the controllers."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar import Response

from cuefast.errors import (
    CuefastError,
    CueNotFound,
    ExecutionNotFound,
    InternalError,
    InvalidJSON,
    RateLimited,
    ServiceUnavailable,
    WorkerNotFound,
)
from cuefast.ids import is_cue_id, is_execution_id, is_worker_id
from cuefast.services.validate import parse_json_body
from cuefast.store import UNREACHABLE, refusal, unreachable_cause

MAX_BODY = 1_048_576
_ENCODER = msgspec.json.Encoder()
JSON = "application/json"


def query_params(query_string: bytes) -> dict[str, str]:
    """A query string's parameters as the Litestar handlers read them (``QueryParams.get``):
    latin-1 text, ``&``-separated, ``+`` and %-escapes decoded, blank values kept, the first of
    repeated keys."""
    params: dict[str, str] = {}
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True, separator="&"):
        params.setdefault(key, value)
    return params


def json_response(
    data: Any, status: int | None = None, headers: dict[str, str] | None = None
) -> Response[Any]:
    """``data`` encoded once with the shared msgspec encoder; ``status`` None = the route's
    declared success status (its ``status_code``, which is what ``/openapi.json`` shows)."""
    return Response(content=_ENCODER.encode(data), status_code=status, media_type=JSON, headers=headers)


def empty_response(status: int = 204) -> Response[bytes]:
    return Response(content=b"", status_code=status)


def error_response(err: CuefastError, headers: dict[str, str] | None = None) -> Response[Any]:
    """The envelope of ``err``; a 429 (``RateLimited``) carries its integer ``Retry-After``."""
    if isinstance(err, RateLimited):
        headers = {"Retry-After": str(err.retry_after), **(headers or {})}
    return json_response(err.envelope(), err.status, headers)


_errors = logging.getLogger("cuefast.api.app")


def unexpected(exc: Exception, method: str, path: str) -> CuefastError:
    """The answer to an exception no handler raised on purpose, logged (one definition for
    Litestar's exception handler and the hot routes): a Redis that cannot be reached or cannot
    serve now (``UNREACHABLE``; PostgreSQL's history reads never raise: they answer from Redis
    alone, ``durability/history.py``), or a Redis that refused the command before running it
    (``refusal``: past its ``maxmemory``, busy, a failed save, short of replicas), → 503;
    anything else → 500 with its traceback in the log (never in the answer)."""
    if isinstance(exc, UNREACHABLE):
        _errors.error("data store unavailable on %s %s: %s", method, path, unreachable_cause(exc))
        return ServiceUnavailable()
    if why := refusal(exc):  # a script that may write is refused before it starts
        _errors.error("Redis is %s on %s %s: nothing was written", why, method, path)
        return ServiceUnavailable()
    _errors.error("unhandled error on %s %s", method, path, exc_info=exc)
    return InternalError()


def read_json(raw: bytes, *, required: bool = True) -> Any:
    """The request body (``data: bytes`` of a ``JSONBody`` route) as JSON whatever its
    Content-Type (empty → {} when optional)."""
    try:
        return parse_json_body(raw, required=required)
    except RecursionError:
        raise InvalidJSON() from None


# ---- path ids: checked against their format before anything reads a key (CONTRACT.md §3.3) ----
def path_cue_id(cue_id: str) -> str:
    """The ``{cue_id}`` path parameter; a malformed one is 404 ``cue_not_found``."""
    if not is_cue_id(cue_id):
        raise CueNotFound()
    return cue_id


def path_execution_id(execution_id: str) -> str:
    """The ``{execution_id}`` path parameter; a malformed one is 404 ``execution_not_found``."""
    if not is_execution_id(execution_id):
        raise ExecutionNotFound()
    return execution_id


def path_worker_id(worker_id: str) -> str:
    """The ``{worker_id}`` path parameter; a malformed one is 404 ``worker_not_found``."""
    if not is_worker_id(worker_id):
        raise WorkerNotFound()
    return worker_id
