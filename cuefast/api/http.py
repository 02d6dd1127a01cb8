"""Request/response helpers shared by the controllers."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response

from cuefast.errors import CuefastError, CueNotFound, ExecutionNotFound, InvalidJSON, WorkerNotFound
from cuefast.ids import is_cue_id, is_execution_id, is_worker_id
from cuefast.services.validate import parse_json_body

MAX_BODY = 1_048_576
_ENCODER = msgspec.json.Encoder()
JSON = "application/json"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(content=_ENCODER.encode(data), status_code=status, media_type=JSON, headers=headers)


def empty_response(status: int = 204) -> Response[bytes]:
    return Response(content=b"", status_code=status)


def error_response(err: CuefastError, headers: dict[str, str] | None = None) -> Response[bytes]:
    return json_response(err.envelope(), err.status, headers)


async def read_json(request: Request[Any, Any, Any], *, required: bool = True) -> Any:
    """The request body as JSON whatever its Content-Type (empty → {} when optional)."""
    raw = await request.body()
    try:
        return parse_json_body(raw, required=required)
    except RecursionError:
        raise InvalidJSON() from None


# ---- path ids: checked against their format before anything reads a key (CONTRACT.md §3.3) ----
def path_cue_id(request: Request[Any, Any, Any]) -> str:
    """The ``{cue_id}`` path parameter; a malformed one is 404 ``cue_not_found``."""
    cue_id = request.path_params["cue_id"]
    if not is_cue_id(cue_id):
        raise CueNotFound()
    return str(cue_id)


def path_execution_id(request: Request[Any, Any, Any]) -> str:
    """The ``{execution_id}`` path parameter; a malformed one is 404 ``execution_not_found``."""
    execution_id = request.path_params["execution_id"]
    if not is_execution_id(execution_id):
        raise ExecutionNotFound()
    return str(execution_id)


def path_worker_id(request: Request[Any, Any, Any]) -> str:
    """The ``{worker_id}`` path parameter; a malformed one is 404 ``worker_not_found``."""
    worker_id = request.path_params["worker_id"]
    if not is_worker_id(worker_id):
        raise WorkerNotFound()
    return str(worker_id)
