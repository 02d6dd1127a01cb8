"""Chromium for the browser tests: Debian's, driven by Playwright; where the screenshots go.

Chromium is ``$CUEFAST_CHROMIUM``, else ``chromium`` / ``chromium-browser`` on PATH (Debian:
``apt-get install chromium``); never Playwright's own download. Without one, or without the
``playwright`` package, every browser test is skipped with the reason. Screenshots go to
``$CUEFAST_SCREENSHOTS`` or ``tests/browser/screenshots/`` (gitignored); the run names the
directory at its end.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import SHOTS, SHOTS_TAKEN


def chromium_path() -> str | None:
    given = os.environ.get("CUEFAST_CHROMIUM")
    if given:
        return given if Path(given).exists() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium found (apt-get install chromium, or set CUEFAST_CHROMIUM)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[dev]')")
    return path


@pytest.fixture(scope="session")
def shots() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


def taken(path: Path) -> None:
    """Count a saved screenshot for the run's summary (tests/conftest.py names the directory)."""
    SHOTS_TAKEN.append(str(path))
