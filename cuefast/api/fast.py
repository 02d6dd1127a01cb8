"""The hot routes answered by the edge itself, without Litestar's routing, DI and responses.

``GET /v1/cues/{id}``, ``GET /v1/executions``, ``POST /v1/cues``, ``POST /v1/cues/{id}/fire`` and ``POST
/v1/executions/{id}/outcome`` are what a fleet calls most. They stay declared in Litestar (their
``/openapi.json`` entries, and Litestar answers them when the edge runs without a limiter), but
the edge serves them here with the same steps and the same answers: the body read with the same
1 MiB limit first, then the account (401 envelopes), then the handler's own parsing and the
service call; a ``CuefastError`` is its envelope, an unreachable Redis 503, anything else a
logged 500 — what ``app.py``'s exception handlers answer. Everything else goes to Litestar.

``POST /v1/cues`` is read and parsed before the auth script (``FastRoutes.prepare``), so the
script can reserve the cue's name in its round trip (two round trips a create, not three:
docs/DESIGN.md "Cue names"); a read or parse error is still answered at its usual step. The cue
id needs the account (``Keys.cue_group``): it is drawn for the account the key resolved to last
time (``_HINTS``, a key's account never changes), and the script reserves nothing unless the key
resolves to that account — a key's first create reserves in the service, as without the edge.

The two reads, ``GET /v1/cues/{id}`` and ``GET /v1/executions``, are shared while in flight
(``api/shared.py``): a request identical to one whose Redis read has not started yet (same route,
account, path id and query string) gets that one's answer, authenticated and rate-limited as its
own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, NamedTuple

import msgspec

from cuefast.api.cues import EXECUTION_LIMIT, EXECUTION_OFFSET
from cuefast.api.deps import account_of
from cuefast.api.executions import list_page
from cuefast.api.http import MAX_BODY, path_cue_id, path_execution_id, query_params, read_json, unexpected
from cuefast.api.shared import Shared
from cuefast.errors import CuefastError, InternalError, RequestTooLarge
from cuefast.ids import key_sha, new_cue_id
from cuefast.models import Account
from cuefast.runtime import Runtime
from cuefast.services.accounts import api_key_of
from cuefast.services.cue_input import CueDraft, parse_create
from cuefast.services.executions import parse_fire
from cuefast.store import Status
from cuefast.store.accounts import Reservation

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Handler = Callable[[Account, str, bytes, Scope], Awaitable[Any]]
_ENCODER = msgspec.json.Encoder()
_JSON = (b"content-type", b"application/json")
_HINTS = 100_000
"""API-key hashes → account id kept for drawing a create's cue id before the auth script"""


class Prepared:
    """A create read and parsed before the auth script: the body (or the read's error, raised at
    the body step), the draft (or the parse's error, raised after the account), the name
    reservation to fold into the script and, once it ran, what it answered (``reserved``)."""

    __slots__ = ("data", "draft", "parse_error", "read_error", "reservation", "reserved", "sha")

    def __init__(self) -> None:
        self.data = b""
        self.read_error: BaseException | None = None
        self.draft: CueDraft | None = None
        self.parse_error: Exception | None = None
        self.sha = ""
        self.reservation: Reservation | None = None
        self.reserved: tuple[Status, str] | None = None


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

    @property
    def prepares(self) -> bool:
        """Whether the edge reads and parses this request before the auth script (a create)."""
        return self.route is self.routes.create_cue

    async def answer(
        self, scope: Scope, receive: Receive, authorization: str | None, *, pre: Prepared | None = None
    ) -> tuple[int, bytes]:
        return await self.routes.answer(self.route, self.path_id, scope, receive, authorization, pre=pre)


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
        self.keys = rt.keys
        self.quotas = rt.settings.enforce_quotas
        self.hints: dict[str, str] = {}
        self.shared: Shared[tuple[int, bytes]] = Shared()
        cues, executions, outcomes = rt.cues, rt.executions, rt.outcomes
        self.cues = cues

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

    async def prepare(self, receive: Receive, authorization: str | None) -> Prepared:
        """Read and parse a create before the auth script; its errors are kept for their step."""
        pre = Prepared()
        try:
            pre.data = await read_body(receive)
        except (RequestTooLarge, Disconnected) as exc:
            pre.read_error = exc
            return pre
        try:
            pre.draft = parse_create(read_json(pre.data))
        except Exception as exc:
            pre.parse_error = exc
            return pre
        key = api_key_of(authorization)
        if key is not None:
            pre.sha = key_sha(key)
            account_id = self.hints.get(pre.sha)
            if account_id is not None:
                cue_id = new_cue_id(self.keys.cue_group(account_id))
                pre.reservation = Reservation(pre.draft.name, cue_id, account_id, self.quotas)
        return pre

    async def _create(self, account: Account, pre: Prepared) -> Any:
        """A create prepared before the auth script (``prepare``): the key's account learnt for its
        next create; the cue takes the reserved id when the reservation was for this account."""
        r = pre.reservation
        if pre.sha and (r is None or r.account_id != account.id):
            if len(self.hints) >= _HINTS:
                self.hints.clear()
            self.hints[pre.sha] = account.id
        if pre.parse_error is not None:
            raise pre.parse_error
        assert pre.draft is not None
        if r is None or r.account_id != account.id:
            return await self.cues.create(account, pre.draft)
        return await self.cues.create(account, pre.draft, (r.cue_id, pre.reserved and pre.reserved[0]))

    async def answer(
        self,
        route: Route,
        path_id: str,
        scope: Scope,
        receive: Receive,
        authorization: str | None,
        *,
        pre: Prepared | None = None,
    ) -> tuple[int, bytes]:
        """(status, JSON body) of one hot request; ``pre``: a create already read (``prepare``)."""
        scope["path_template"] = route.template
        try:
            if pre is not None:
                if pre.read_error is not None:
                    raise pre.read_error
                account = await account_of(self.accounts, authorization)
                return route.status, _ENCODER.encode(await self._create(account, pre))
            data = await read_body(receive) if route.body else b""
            account = await account_of(self.accounts, authorization)
        except Exception as exc:
            return _failed(exc, scope)
        if route.body:
            return await _respond(route, account, path_id, data, scope)
        # a read: shared with the identical ones that arrive before it leaves (api/shared.py)
        key = (route.template, account.id, path_id, scope.get("query_string", b""))
        return await self.shared.answer(key, lambda: _respond(route, account, path_id, data, scope))


async def _respond(
    route: Route, account: Account, path_id: str, data: bytes, scope: Scope
) -> tuple[int, bytes]:
    """(status, JSON body) of ``route``'s handler for an authenticated request."""
    try:
        return route.status, _ENCODER.encode(await route.handler(account, path_id, data, scope))
    except Exception as exc:
        return _failed(exc, scope)


def _failed(exc: Exception, scope: Scope) -> tuple[int, bytes]:
    """(status, JSON body) of a hot request that raised: a ``CuefastError`` is its envelope, a
    client gone before its body a 500, anything else a logged 500 (``http.unexpected``)."""
    if isinstance(exc, CuefastError):
        err = exc
    elif isinstance(exc, Disconnected):
        err = InternalError()
    else:
        err = unexpected(exc, scope["method"], scope["path"])
    return err.status, _ENCODER.encode(err.envelope())


def headers(body: bytes, after: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A hot answer's headers: its own, as Litestar's ``json_response`` sends them, then ``after``."""
    return [_JSON, (b"content-length", str(len(body)).encode()), *after]
