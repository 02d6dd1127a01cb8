"""Every script of ``cuefast/store/lua/`` is named in a test module of tests/lua, so a new script
cannot land without tests of its own (test_headers.py names scripts without testing them)."""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

LUA = importlib.resources.files("cuefast.store.lua")
HERE = Path(__file__).parent
NOT_BEHAVIOUR = {"test_headers.py", Path(__file__).name}


def test_every_script_is_named_in_a_script_test() -> None:
    scripts = sorted(f.name[:-4] for f in LUA.iterdir() if f.name.endswith(".lua"))
    assert scripts
    texts = [p.read_text() for p in sorted(HERE.glob("test_*.py")) if p.name not in NOT_BEHAVIOUR]
    untested = [s for s in scripts if not any(re.search(rf"\b{s}\b", t) for t in texts)]
    assert not untested, f"scripts without tests under tests/lua: {untested}"
