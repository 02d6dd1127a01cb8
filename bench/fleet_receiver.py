"""Webhook receiver of ``./dev bench fleet``: logs arrival time, path and scheduled_for of each call.

Run as ``python -m bench.fleet_receiver PORT LOG``. One line per request:
``<arrival µs since the epoch> <path> <X-CueAPI-Scheduled-For>``; answers 200 ``ok``.
"""

from __future__ import annotations

import sys
import time

import uvloop
from aiohttp import web


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    out = open(path, "w", buffering=1)  # noqa: SIM115 - open for the life of the process

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        arrival = time.time_ns() // 1000
        out.write(f"{arrival} {request.path} {request.headers.get('X-CueAPI-Scheduled-For', '')}\n")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook/{kind}", hook)
    web.run_app(app, host="127.0.0.1", port=port, print=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
