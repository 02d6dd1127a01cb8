"""Request/response helpers shared by the controllers."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response

from cuefast.errors import CuefastError, InvalidJSON
from cuefast.validate import parse_json_body

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
