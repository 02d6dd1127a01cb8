"""Finding the ``Worker`` that ``cuefast worker --app module:attribute`` names."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from cuefast.worker.daemon import Worker


def load_app(spec: str) -> Worker:
    """``module:attribute`` → the ``Worker`` it names (a callable is called to make one)."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise ValueError(f"--app must look like 'module:worker', got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in (attr or "worker").split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, Worker) and callable(obj):
        obj = obj()
    if not isinstance(obj, Worker):
        raise ValueError(f"{spec!r} is not a cuefast Worker (got {type(obj).__name__})")
    return obj
