"""The fuzz suite's request counter, reported at the end of a run (CI logs keep the count)."""

from __future__ import annotations

from collections import Counter
from typing import Any

COUNTS = {"requests": 0, "rejected": 0, "routes": 0}
CODES: Counter[str] = Counter()
"""answers by status and error code (``200``, ``422 validation_error``, …)"""


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if COUNTS["requests"]:
        terminalreporter.write_line(
            f"fuzz: {COUNTS['requests']} requests over {COUNTS['routes']} routes "
            f"({COUNTS['rejected']} rejected with a 4xx, every one checked for writes)"
        )
        top = ", ".join(f"{code} ×{n}" for code, n in CODES.most_common(12))
        terminalreporter.write_line(f"fuzz answers: {top}")
