"""The start-up heap frozen out of the garbage collector's full passes (long-running processes)."""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def settle_heap() -> int:
    """Move what start-up made — the imported modules, the app, the loaded scripts: ~120,000
    objects in ``cuefast serve`` — into the collector's permanent generation (``gc.freeze``),
    after collecting the garbage among it, and return how many objects that froze. A full
    (generation 2) collection then walks only the objects made since. Unfrozen, each full
    collection of ``cuefast serve`` took 35–70 ms, every ~20 s under the fleet soak — a stall of
    the whole event loop, which requests in flight wait out (bench/README.md). Every server
    role, the worker daemon and the bench's load generators call it once before they start."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("heap settled: %d objects frozen out of the collector's full passes", frozen)
    return frozen
