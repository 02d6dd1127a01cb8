"""The edge inside an OpenTelemetry span per request, used only while tracing is on.

``create_app`` puts ``Traced`` in front of the edge when ``cuefast.tracing`` is on, so a
process without tracing runs the edge as it is (no span code on its hot path). The span is the
child of a valid incoming ``traceparent``, is named ``<method> <route template>`` once the
route is known, and records the status and the request id the edge answered with.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from cuefast import tracing

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Traced:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or tracing.tracer is None:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        answer: dict[str, Any] = {"status": 500, "rid": ""}

        async def seen(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = int(message["status"])
                for key, value in message.get("headers", ()):
                    if key == b"x-request-id":
                        answer["rid"] = bytes(value).decode("latin-1")
            await send(message)

        with tracing.server_span(method, scope["path"], scope.get("headers", ())) as span:
            try:
                await self.app(scope, receive, seen)
            finally:
                tracing.end_server_span(
                    span, method, scope.get("path_template"), answer["status"], answer["rid"]
                )
