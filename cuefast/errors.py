"""The error tree and the ONE table that maps domain errors to HTTP.

Domain code raises these; only ``cuefast.api`` turns them into responses (the
contract's envelope ``{"error": {"code", "message", "status"}}``) and the SDK
raises the same classes from responses.
"""

from __future__ import annotations

from typing import Any


class CuefastError(Exception):
    """Base of every error cuefast raises on purpose.

    ``status``/``code`` are the HTTP status and contract error code the API
    answers with; ``message`` is the human text (exact where the contract says).
    """

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def envelope(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details is not None:
            err["details"] = self.details
        return {"error": err}


def _encodable(text: str) -> str:
    """``text`` with any lone surrogate (from a client's key or value) spelled ``\\udXXX``, so
    the envelope always encodes as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def api_error(status: int, code: str, message: str) -> CuefastError:
    """An ad-hoc error with an explicit status and code (rare paths)."""
    err = CuefastError(message)
    err.status = status
    err.code = code
    return err


class ValidationFailed(CuefastError):
    """422 validation_error; ``problems`` is a list of (loc, text)."""

    status = 422
    code = "validation_error"

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        problems = [(_encodable(loc), _encodable(text)) for loc, text in problems]
        loc, text = problems[0]
        super().__init__(
            f"{loc}: {text}",
            details=[{"field": f, "message": m} for f, m in problems],
        )
        self.problems = problems


class InvalidJSON(CuefastError):
    status = 400
    code = "invalid_json"

    def __init__(self) -> None:
        super().__init__("Request body is not valid JSON")


class InvalidSchedule(CuefastError):
    """400 invalid_schedule; message is one of the contract's texts (7.4)."""

    status = 400
    code = "invalid_schedule"


class InvalidTimezone(CuefastError):
    status = 422
    code = "invalid_timezone"

    def __init__(self, tz: str) -> None:
        super().__init__(f"Unknown timezone: '{tz}'")
        self.tz = tz


class UnsafeURL(CuefastError):
    """A URL failed the SSRF rules (contract 14). The API re-codes it per field:
    ``invalid_callback_url`` or ``invalid_alert_webhook_url``."""

    status = 400
    code = "invalid_callback_url"


class InvalidCallbackURL(CuefastError):
    status = 400
    code = "invalid_callback_url"


class InvalidAlertWebhookURL(CuefastError):
    status = 400
    code = "invalid_alert_webhook_url"


class InvalidPayloadSize(CuefastError):
    status = 400
    code = "invalid_payload_size"

    def __init__(self) -> None:
        super().__init__("Payload exceeds 1048576 bytes")


class InvalidPayload(CuefastError):
    status = 400
    code = "invalid_payload"

    def __init__(self) -> None:
        super().__init__("Payload must not contain NUL characters or unpaired surrogates")


class ConfirmationRequired(CuefastError):
    status = 400
    code = "confirmation_required"

    def __init__(self) -> None:
        super().__init__("This action is destructive. Set X-Confirm-Destructive: true header to confirm.")


class Unauthorized(CuefastError):
    status = 401
    code = "invalid_api_key"


class KeyRotated(CuefastError):
    status = 401
    code = "key_rotated"

    def __init__(self) -> None:
        super().__init__("This API key has been rotated. Use your new key.")


class InvalidSession(CuefastError):
    status = 401
    code = "invalid_session"

    def __init__(self) -> None:
        super().__init__("Invalid session token")


class CueLimitExceeded(CuefastError):
    status = 403
    code = "cue_limit_exceeded"

    def __init__(self, limit: int) -> None:
        super().__init__(f"Active cue limit of {limit} reached")


class NotFound(CuefastError):
    status = 404
    code = "http_error"

    def __init__(self, message: str = "Not Found", code: str = "http_error") -> None:
        super().__init__(message)
        self.code = code


class CueNotFound(CuefastError):
    status = 404
    code = "cue_not_found"

    def __init__(self) -> None:
        super().__init__("Cue not found")


class ReplayNotFound(CuefastError):
    """cuefast's bulk replays: no such job of this account."""

    status = 404
    code = "replay_not_found"

    def __init__(self) -> None:
        super().__init__("Replay not found")


class ExecutionNotFound(CuefastError):
    status = 404
    code = "execution_not_found"

    def __init__(self) -> None:
        super().__init__("Execution not found")


class MethodNotAllowed(CuefastError):
    status = 405
    code = "http_error"

    def __init__(self) -> None:
        super().__init__("Method Not Allowed")


class Conflict(CuefastError):
    """409 with a specific code (duplicate_email, duplicate_cue_name, …)."""

    status = 409

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class DuplicateEmail(Conflict):
    def __init__(self) -> None:
        super().__init__("duplicate_email", "Email already registered")


class DuplicateCueName(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__("duplicate_cue_name", f"A cue named '{name}' already exists")


class ClaimFailed(Conflict):
    """409 claim_failed: nothing claimable / this execution is not claimable (§9.2, §9.3)."""

    def __init__(self, message: str) -> None:
        super().__init__("claim_failed", message)


class ExecutionNotClaiming(Conflict):
    def __init__(self) -> None:
        super().__init__("execution_not_claiming", "Execution is not currently being claimed")


class ExecutionCancelled(Conflict):
    """cuefast: the execution was cancelled by its cue's overlap policy (``cancel_previous``):
    its holder must stop (a heartbeat answers this instead of ``execution_not_claiming``)."""

    def __init__(self) -> None:
        super().__init__("execution_cancelled", "Execution was cancelled: a later slot of its cue came due")


class NotExecutionOwner(CuefastError):
    status = 403
    code = "not_execution_owner"

    def __init__(self) -> None:
        super().__init__("Only the claiming worker can heartbeat")


class WorkerNotFound(CuefastError):
    status = 404
    code = "worker_not_found"

    def __init__(self) -> None:
        super().__init__("Worker not found")


class WorkerLimitExceeded(CuefastError):
    """A new worker's heartbeat when the account's registry is full of live workers (cuefast)."""

    status = 403
    code = "worker_limit_exceeded"

    def __init__(self, limit: int) -> None:
        super().__init__(f"Worker limit of {limit} reached")


class InvalidEchoToken(CuefastError):
    status = 400
    code = "invalid_token"

    def __init__(self) -> None:
        super().__init__("Echo token must be 16-256 characters of A-Z, a-z, 0-9, '.', '_', '~', '-'")


class EchoPayloadTooLarge(CuefastError):
    status = 413
    code = "payload_too_large"

    def __init__(self) -> None:
        super().__init__("Echo payload exceeds 1000000 bytes")


class NoFields(CuefastError):
    status = 422
    code = "no_fields"

    def __init__(self) -> None:
        super().__init__("No fields to update")


class RequestTooLarge(CuefastError):
    status = 413
    code = "request_too_large"

    def __init__(self) -> None:
        super().__init__("Request body exceeds 1048576 bytes")


class TaskCapLimit(CuefastError):
    """A new task cap when the account already caps the most tasks it may (cuefast)."""

    status = 403
    code = "task_cap_limit_exceeded"


class RateLimited(CuefastError):
    status = 429
    code = "rate_limit_exceeded"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many requests. Retry after {retry_after} seconds.")
        self.retry_after = retry_after


class InternalError(CuefastError):
    status = 500
    code = "internal_error"

    def __init__(self) -> None:
        super().__init__("An internal error occurred")


class ServiceUnavailable(CuefastError):
    status = 503
    code = "service_unavailable"

    def __init__(self) -> None:
        super().__init__("Service temporarily unavailable")


class ConfigError(Exception):
    """Bad configuration: start-up stops with this message (never an HTTP error)."""


class OperatorError(ConfigError):
    """Something the operator must fix before cuefast can run — a backend unreachable, a password
    refused, a certificate not trusted, an extra not installed: one line naming the setting and
    the fix. The CLI prints it alone (no traceback) and exits 2. ``transient``: the backend may
    come back by itself (refused, timed out), as opposed to a wrong setting."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


# --- login: device code, magic link, sessions (CONTRACT.md §16) ----------------------------
class InvalidDeviceCode(CuefastError):
    status = 400
    code = "invalid_device_code"

    def __init__(self) -> None:
        super().__init__("Device code must be 6-128 characters")


class DeviceCodeExists(Conflict):
    def __init__(self) -> None:
        super().__init__("device_code_exists", "Device code already in use")


class DeviceCodeNotFound(CuefastError):
    status = 404
    code = "device_code_not_found"

    def __init__(self) -> None:
        super().__init__("Device code not found")


class DeviceCodeExpired(CuefastError):
    status = 400
    code = "device_code_expired"

    def __init__(self) -> None:
        super().__init__("Device code expired")


class InvalidDeviceStatus(CuefastError):
    status = 400
    code = "invalid_status"

    def __init__(self, status: str) -> None:
        super().__init__(f"Device code status is '{status}', expected 'pending'")


class InvalidSessionToken(CuefastError):
    """A one-time session token (from the device-code poll) unknown, used or expired."""

    status = 401
    code = "invalid_token"

    def __init__(self) -> None:
        super().__init__("Invalid or expired session token")


class SessionExpired(CuefastError):
    status = 401
    code = "session_expired"

    def __init__(self) -> None:
        super().__init__("Session expired. Please log in again.")


class UserNotFound(CuefastError):
    status = 401
    code = "user_not_found"

    def __init__(self) -> None:
        super().__init__("User not found")


class SessionUnavailable(CuefastError):
    status = 503
    code = "session_unavailable"

    def __init__(self) -> None:
        super().__init__("Sessions are not configured on this server (CUEFAST_SESSION_SECRET is empty)")
