"""The worker app the chaos run's ``cuefast worker`` daemons run (``--app tests.chaos.worker_app``).

One handler, ``chaos``: it appends one JSON line per call to ``CHAOS_HANDLER_LOG`` (execution
id, attempt, worker id, the outcome it is about to return) before it returns, then "works" for
up to ``CHAOS_HANDLER_MAX_SECONDS``. The outcome is a function of the execution id alone
(``outcome_for``), so however often a crash makes an execution run again, every run reports
the same outcome, and the harness knows what the server must have recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
from typing import Any

from cuefast import Worker

worker = Worker()


def outcome_for(eid: str) -> dict[str, Any]:
    """What the handler returns for this execution (a failed outcome for about one in four)."""
    if hashlib.sha256(eid.encode()).digest()[0] % 4 == 0:
        return {"success": False, "error": f"w-{eid[:8]} failed"}
    return {"result": f"w-{eid[:8]}", "metadata": {"by": "chaos"}}


@worker.handler("chaos")
async def chaos(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    out = outcome_for(ctx.execution_id)
    line = json.dumps(
        {
            "eid": ctx.execution_id,
            "attempt": ctx.attempt,
            "worker": ctx.worker_id,
            "at": time.time(),
            "success": out.get("success", True),
        }
    )
    fd = os.open(os.environ["CHAOS_HANDLER_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())  # one write < PIPE_BUF: whole lines, even on kill -9
    finally:
        os.close(fd)
    await asyncio.sleep(random.uniform(0, float(os.environ.get("CHAOS_HANDLER_MAX_SECONDS", "0.3"))))
    return out
