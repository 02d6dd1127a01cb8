"""Webhook receivers for the chaos run: real aiohttp servers on 127.0.0.1 that record every
request (execution id, attempt, signature verified, when it arrived and when it ended) and
can be paused.

Pauses (``pause(mode)`` … ``resume()``):

* ``hold`` — requests are accepted and read, recorded, then held unanswered until the pause
  ends (or the sender hangs up: its dispatcher gave up or died); a held request can outlive
  the stale window, which is what makes a stale takeover send it again while it is held;
* ``refuse`` — the listening socket is closed and every open connection aborted: senders see
  "connection refused" until the pause ends.

A request is *open* from its arrival until it is answered or its sender hangs up; two
requests for the same (execution, attempt) that are open at the same time mean a second
dispatcher sent an attempt whose first sender was still waiting for the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass
class Delivery:
    receiver: int
    eid: str
    cue_id: str
    attempt: int
    body_attempt: int
    scheduled_for: str
    sig_ok: bool
    arrived: float  # time.monotonic()
    arrived_wall: float
    ended: float | None = None  # answered, or the sender hung up
    held: bool = False
    gone: bool = False  # the sender hung up before the answer
    answer: dict[str, Any] | None = None


class Receiver:
    """One webhook receiver. ``secret_of(cue_id)`` gives the signing secret of a cue's account;
    ``reply(eid, cue_id)`` the JSON body to answer a 2xx with (a response-body outcome or not)."""

    def __init__(
        self,
        index: int,
        secret_of: Callable[[str], str | None],
        reply: Callable[[str, str], dict[str, Any]],
    ) -> None:
        self.index = index
        self.secret_of = secret_of
        self.reply = reply
        self.deliveries: list[Delivery] = []
        self.unsigned: list[str] = []  # requests we could not even parse (path, reason)
        self.port = 0
        self.mode = ""  # "" | "hold" | "refuse"
        self.pauses: list[tuple[str, float, float | None]] = []  # (mode, from, to) monotonic
        self._resume = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handle_signals=False)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        if not self.port:
            server = self._site._server
            assert server is not None and server.sockets
            self.port = int(server.sockets[0].getsockname()[1])

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        h = request.headers
        now = time.monotonic()
        try:
            doc = json.loads(body)
            eid = str(h["X-CueAPI-Execution-Id"])
            cue_id = str(h["X-CueAPI-Cue-Id"])
            attempt = int(h["X-CueAPI-Attempt"])
        except (ValueError, KeyError) as exc:
            self.unsigned.append(f"{request.path}: {type(exc).__name__} {exc}")
            return web.Response(status=400)
        secret = self.secret_of(cue_id)
        sig_ok = False
        if secret is not None:
            mac = hmac.new(
                secret.encode(), h.get("X-CueAPI-Timestamp", "").encode() + b"." + body, hashlib.sha256
            )
            sig_ok = hmac.compare_digest(h.get("X-CueAPI-Signature", ""), "v1=" + mac.hexdigest())
        d = Delivery(
            receiver=self.index,
            eid=eid,
            cue_id=cue_id,
            attempt=attempt,
            body_attempt=int(doc.get("attempt", -1)),
            scheduled_for=str(doc.get("scheduled_for", "")),
            sig_ok=sig_ok and doc.get("execution_id") == eid and doc.get("cue_id") == cue_id,
            arrived=now,
            arrived_wall=time.time(),
        )
        self.deliveries.append(d)
        try:
            if self.mode == "hold":
                d.held = True
                while self.mode == "hold" and not _hung_up(request):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._resume.wait(), 0.1)
                if _hung_up(request):
                    d.gone = True
                    return web.Response(status=499)
            d.answer = self.reply(eid, cue_id)
            return web.json_response(d.answer)
        finally:
            d.ended = time.monotonic()

    async def pause(self, mode: str) -> None:
        assert mode in ("hold", "refuse") and not self.mode
        self.mode = mode
        self._resume.clear()
        self.pauses.append((mode, time.monotonic(), None))
        if mode == "refuse":
            assert self._site is not None and self._runner is not None
            await self._site.stop()
            self._site = None
            server = self._runner.server
            if server is not None:
                for transport in list(getattr(server, "_connections", {}).values()):
                    transport.abort()

    async def resume(self) -> None:
        mode, began, _ = self.pauses[-1]
        self.pauses[-1] = (mode, began, time.monotonic())
        if self.mode == "refuse":
            await self._listen()
        self.mode = ""
        self._resume.set()

    def open_requests(self) -> int:
        return sum(1 for d in self.deliveries if d.ended is None)

    async def close(self) -> None:
        if self.mode:
            await self.resume()
        if self._runner is not None:
            await self._runner.cleanup()


def _hung_up(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
