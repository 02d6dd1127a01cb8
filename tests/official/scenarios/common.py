"""Shared by the scenario scripts (run inside the official clients' venvs, standard library only).

A scenario is a list of steps; every step runs even when an earlier one failed (so one run
reports every mismatch), and each prints ``PASS <name>`` or ``FAIL <name>`` with its
traceback. The last line is ``RESULT {"passed": [...], "failed": [...]}``; the exit code
is 1 when any step failed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Step = Callable[[], None]


class Scenario:
    def __init__(self) -> None:
        self.steps: list[tuple[str, Step]] = []

    def step(self, fn: Step) -> Step:
        self.steps.append((fn.__name__, fn))
        return fn

    def run(self) -> int:
        passed: list[str] = []
        failed: list[str] = []
        for name, fn in self.steps:
            started = time.monotonic()
            try:
                fn()
            except BaseException:
                failed.append(name)
                print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
            else:
                passed.append(name)
                print(f"PASS {name} ({time.monotonic() - started:.2f} s)", flush=True)
        print("RESULT " + json.dumps({"passed": passed, "failed": failed}), flush=True)
        return 1 if failed else 0


def wait_for(cond: Callable[[], Any], what: str, timeout: float = 15.0, interval: float = 0.1) -> Any:
    """Poll ``cond`` until it returns something truthy; that value, or AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = cond()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


class Receiver:
    """A real HTTP server on 127.0.0.1 recording every request (any method, any path).

    Answers 500 on paths starting with ``/fail``, else 200.

    ``on_request`` (when set) sees each request as it arrives, in the server thread.
    """

    def __init__(self, on_request: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.on_request = on_request
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                    "received": time.time(),
                }
                if receiver.on_request is not None:
                    receiver.on_request(req)
                with receiver.lock:
                    receiver.requests.append(req)
                out = b'{"ok": true}'
                self.send_response(500 if self.path.startswith("/fail") else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_POST = do_PUT = do_PATCH = do_GET = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def matching(self, pred: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if pred(r)]

    def for_execution(self, execution_id: str) -> list[dict[str, Any]]:
        return self.matching(lambda r: r["headers"].get("x-cueapi-execution-id") == execution_id)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(scenario: Scenario) -> None:
    sys.exit(scenario.run())
