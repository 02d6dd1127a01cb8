"""SDK exceptions: the CueAPI SDK's classes, mapped by HTTP status (CONTRACT.md §15).

========  ===========================
status    exception
========  ===========================
401       ``AuthenticationError``
403       ``CueLimitExceededError`` (any 403, e.g. ``not_execution_owner`` too)
404       ``CueNotFoundError`` (cues, executions, workers)
400, 422  ``InvalidScheduleError`` (any validation problem)
429       ``RateLimitError`` (``retry_after`` = the integer ``Retry-After``)
≥ 500     ``CueAPIServerError``
other     ``CueAPIError`` (409, 413, …)
========  ===========================

``code`` and ``message`` come from the error envelope ``{"error": {"code", "message"}}``.
A request that never got an answer raises ``CueAPIConnectionError`` (cuefast addition;
``status_code`` is None).
"""

from __future__ import annotations

from typing import Any


class CueAPIError(Exception):
    """Base class of every SDK error."""

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        code: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.code = code
        self.body = body or {}
        super().__init__(message)

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(message={self.message!r}, status_code={self.status_code}, code={self.code!r})"


class AuthenticationError(CueAPIError):
    """401: missing, invalid or rotated API key (``code`` tells which)."""


class RateLimitError(CueAPIError):
    """429: rate limited; ``retry_after`` seconds until a request is accepted again."""

    def __init__(self, message: str, retry_after: int | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class CueNotFoundError(CueAPIError):
    """404: the cue, execution or worker does not exist (or belongs to someone else)."""


class CueLimitExceededError(CueAPIError):
    """403: the plan's cue limit is reached (or another forbidden action)."""


class InvalidScheduleError(CueAPIError):
    """400 / 422: the request was invalid (schedule, payload, any field)."""


class CueAPIServerError(CueAPIError):
    """5xx: the server failed."""


class CueAPIConnectionError(CueAPIError):
    """No HTTP answer: connection refused or reset, DNS failure, timeout."""


class CueAPITimeoutError(CueAPIConnectionError):
    """The request timed out."""


def error_for_status(status: int, body: Any, retry_after: str | None) -> CueAPIError:
    """The exception for a non-2xx answer (``body`` is the decoded JSON, or None)."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        err = {}
    message = err.get("message")
    code = err.get("code")
    kwargs: dict[str, Any] = {
        "message": message if isinstance(message, str) else f"HTTP {status}",
        "status_code": status,
        "code": code if isinstance(code, str) else "unknown",
        "body": body if isinstance(body, dict) else {},
    }
    if status == 401:
        return AuthenticationError(**kwargs)
    if status == 403:
        return CueLimitExceededError(**kwargs)
    if status == 404:
        return CueNotFoundError(**kwargs)
    if status == 429:
        seconds: int | None
        try:
            seconds = int(retry_after) if retry_after is not None else None
        except ValueError:
            seconds = None
        return RateLimitError(retry_after=seconds, **kwargs)
    if status in (400, 422):
        return InvalidScheduleError(**kwargs)
    if status >= 500:
        return CueAPIServerError(**kwargs)
    return CueAPIError(**kwargs)
