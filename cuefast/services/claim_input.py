"""Request bodies of the worker endpoints, checked with the contract's 422 shapes."""

from __future__ import annotations

from typing import Any

import msgspec

from cuefast.services.validate import MISSING, Checker, require_object

MAX_BATCH_CLAIM = 500
MAX_WAIT_SECONDS = 30.0


def worker_id_field(c: Checker, obj: dict[str, Any], loc: str = "body.worker_id") -> Any:
    if obj.get("worker_id") is None:
        c.add(loc, "Field required")
        return MISSING
    return c.string(loc, obj["worker_id"], min_len=1, max_len=255, single_line=True)


def optional_text(c: Checker, obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    checked = c.string(f"body.{name}", value, min_len=1, max_len=255, single_line=True)
    return None if checked is MISSING else str(checked)


def id_list(c: Checker, obj: dict[str, Any], name: str, max_items: int) -> list[str]:
    value = obj.get(name)
    if value is None:
        c.add(f"body.{name}", "Field required")
        return []
    if not isinstance(value, list):
        c.add(f"body.{name}", "Input should be a valid list")
        return []
    if len(value) > max_items:
        c.add(f"body.{name}", f"List should have at most {max_items} items")
        return []
    out: list[str] = []
    for i, v in enumerate(value):
        checked = c.string(f"body.{name}.{i}", v, max_len=64)
        if checked is not MISSING:
            out.append(str(checked))
    return list(dict.fromkeys(out))


class BatchClaim(msgspec.Struct, kw_only=True):
    worker_id: str
    tasks: list[str] | None = None
    agent: str | None = None
    max: int = 50
    wait_seconds: float = 0.0
    lease_seconds: int | None = None


def parse_batch_claim(body: Any, max_lease: int) -> BatchClaim:
    obj = require_object(body)
    c = Checker()
    worker = worker_id_field(c, obj)
    tasks: list[str] | None = None
    if obj.get("tasks") is not None:
        raw = obj["tasks"]
        if not isinstance(raw, list):
            c.add("body.tasks", "Input should be a valid list")
        elif len(raw) > 100:
            c.add("body.tasks", "List should have at most 100 items")
        else:
            tasks = []
            for i, t in enumerate(raw):
                checked = c.string(f"body.tasks.{i}", t, min_len=1, max_len=255, single_line=True)
                if checked is not MISSING:
                    tasks.append(str(checked))
            tasks = list(dict.fromkeys(tasks))
    agent = optional_text(c, obj, "agent")
    n = 50 if obj.get("max") is None else c.integer("body.max", obj["max"], ge=1, le=MAX_BATCH_CLAIM)
    wait: Any = 0.0
    if obj.get("wait_seconds") is not None:
        w = obj["wait_seconds"]
        if isinstance(w, bool) or not isinstance(w, int | float):
            c.add("body.wait_seconds", "Input should be a valid number")
        elif not 0 <= w <= MAX_WAIT_SECONDS:
            c.add("body.wait_seconds", "Input should be between 0 and 30")
        else:
            wait = float(w)
    lease: Any = None
    if obj.get("lease_seconds") is not None:
        lease = c.integer("body.lease_seconds", obj["lease_seconds"], ge=1, le=max_lease)
    c.raise_if_any()
    return BatchClaim(
        worker_id=worker, tasks=tasks, agent=agent, max=n, wait_seconds=wait, lease_seconds=lease
    )
