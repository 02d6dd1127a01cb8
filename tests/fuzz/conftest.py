"""The fuzz suite's request counter, reported at the end of a run (CI logs keep the count)."""

from __future__ import annotations

from typing import Any

COUNTS = {"requests": 0, "rejected": 0, "routes": 0}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if COUNTS["requests"]:
        terminalreporter.write_line(
            f"fuzz: {COUNTS['requests']} requests over {COUNTS['routes']} routes "
            f"({COUNTS['rejected']} rejected with a 4xx, every one checked for writes)"
        )
