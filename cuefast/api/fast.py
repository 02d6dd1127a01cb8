"""The hot routes answered by the edge itself, without Litestar's routing, DI and responses.

``GET /v1/cues/{id}``, ``GET /v1/executions``, ``POST /v1/cues``, ``POST /v1/cues/{id}/fire`` and ``POST
/v1/executions/{id}/outcome`` are what a fleet calls most. They stay declared in Litestar (their
``/openapi.json`` entries, and Litestar answers them when the edge runs without a limiter), but
the edge serves them here with the same steps and the same answers: the body read with the same
1 MiB limit first, then the account (401 envelopes), then the handler's own parsing and the
service call; a ``CuefastError`` is its envelope, an unreachable Redis 503, anything else a
logged 500 — what ``app.py``'s exception handlers answer. Everything else goes to Litestar.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, NamedTuple

import msgspec

from cuefast.api.cues import EXECUTION_LIMIT, EXECUTION_OFFSET
from cuefast.api.deps import account_of
from cuefast.api.executions import list_page
from cuefast.api.http import MAX_BODY, path_cue_id, path_execution_id, query_params, read_json, unexpected
from cuefast.errors import CuefastError, InternalError, RequestTooLarge
from cuefast.models import Account
from cuefast.runtime import Runtime
from cuefast.services.cue_input import parse_create
from cuefast.services.executions import parse_fire

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Handler = Callable[[Account, str, bytes, Scope], Awaitable[Any]]
_ENCODER = msgspec.json.Encoder()
_JSON = (b"content-type", b"application/json")


class Route(NamedTuple):
    """A hot route: its Litestar ``path_template`` (metrics label), success status, whether it
    reads a body, the handler (account, path id, body, scope) → the answer to encode."""

    template: str
    status: int
    body: bool
    handler: Handler


class Hot(NamedTuple):
    """A request for a hot route: answer it with ``answer``."""

    routes: FastRoutes
    route: Route
    path_id: str

    async def answer(self, scope: Scope, receive: Receive, authorization: str | None) -> tuple[int, bytes]:
        return await self.routes.answer(self.route, self.path_id, scope, receive, authorization)


class Disconnected(Exception):
    """The client went away before its body arrived (Litestar: a 500 envelope, not logged)."""


async def read_body(receive: Receive) -> bytes:
    """The request body; RequestTooLarge past 1 MiB (a chunked body has no Content-Length)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > MAX_BODY:
                raise RequestTooLarge()
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class FastRoutes:
    def __init__(self, rt: Runtime) -> None:
        self.accounts = rt.accounts
        cues, executions, outcomes = rt.cues, rt.executions, rt.outcomes

        async def get_cue(account: Account, cue_id: str, _: bytes, scope: Scope) -> Any:
            cue_id = path_cue_id(cue_id)
            q = query_params(scope.get("query_string", b""))
            return await cues.get(account, cue_id, EXECUTION_LIMIT.read(q), EXECUTION_OFFSET.read(q))

        async def list_executions(account: Account, _: str, __: bytes, scope: Scope) -> Any:
            return await list_page(executions, account, query_params(scope.get("query_string", b"")))

        async def create_cue(account: Account, _: str, data: bytes, __: Scope) -> Any:
            return await cues.create(account, parse_create(read_json(data)))

        async def fire_cue(account: Account, cue_id: str, data: bytes, _: Scope) -> Any:
            cue_id = path_cue_id(cue_id)
            return await executions.fire(account, cue_id, parse_fire(read_json(data, required=False)))

        async def report_outcome(account: Account, execution_id: str, data: bytes, _: Scope) -> Any:
            body = read_json(data)
            return await outcomes.report(account, path_execution_id(execution_id), body)

        self.get_cue = Route("/v1/cues/{cue_id}", 200, False, get_cue)
        self.list_executions = Route("/v1/executions", 200, False, list_executions)
        self.create_cue = Route("/v1/cues", 201, True, create_cue)
        self.fire_cue = Route("/v1/cues/{cue_id}/fire", 200, True, fire_cue)
        self.report_outcome = Route("/v1/executions/{execution_id}/outcome", 200, True, report_outcome)

    def match(self, method: str, path: str) -> Hot | None:
        """(the hot route, its path id) of a request, or None (Litestar answers it). Ids that are
        a static sibling's path segment (``bulk-delete``, ``claim``…) are left to Litestar."""
        if method == "GET":
            if path == "/v1/executions":
                return Hot(self, self.list_executions, "")
            if path.startswith("/v1/cues/"):
                cue_id = path[9:]
                if cue_id and "/" not in cue_id and cue_id != "bulk-delete":
                    return Hot(self, self.get_cue, cue_id)
            return None
        if method != "POST":
            return None
        if path == "/v1/cues":
            return Hot(self, self.create_cue, "")
        if path.startswith("/v1/cues/") and path.endswith("/fire"):
            cue_id = path[9:-5]
            if cue_id and "/" not in cue_id and cue_id != "bulk-delete":
                return Hot(self, self.fire_cue, cue_id)
        elif path.startswith("/v1/executions/") and path.endswith("/outcome"):
            execution_id = path[15:-8]
            if execution_id and "/" not in execution_id and execution_id not in ("claim", "claimable"):
                return Hot(self, self.report_outcome, execution_id)
        return None

    async def answer(
        self, route: Route, path_id: str, scope: Scope, receive: Receive, authorization: str | None
    ) -> tuple[int, bytes]:
        """(status, JSON body) of one hot request."""
        scope["path_template"] = route.template
        try:
            data = await read_body(receive) if route.body else b""
            account = await account_of(self.accounts, authorization)
            return route.status, _ENCODER.encode(await route.handler(account, path_id, data, scope))
        except CuefastError as exc:
            return exc.status, _ENCODER.encode(exc.envelope())
        except Disconnected:
            err: CuefastError = InternalError()
        except Exception as exc:
            err = unexpected(exc, scope["method"], scope["path"])
        return err.status, _ENCODER.encode(err.envelope())


def headers(body: bytes, after: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A hot answer's headers: its own, as Litestar's ``json_response`` sends them, then ``after``."""
    return [_JSON, (b"content-length", str(len(body)).encode()), *after]
