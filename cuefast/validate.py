"""Schema checks for request bodies, with the contract's 422 shapes (CONTRACT.md §3.6).

Bodies are decoded to plain Python values first (``parse_json_body``); the checkers
here walk them and collect ``(loc, text)`` problems. They are hand-written rather than
msgspec-typed because the contract's leniencies (``"true"`` booleans, ``null`` meaning
"not provided", object-or-string fields) and its loc/text shapes are not msgspec's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec

from cuefast.errors import InvalidJSON, ValidationFailed

MISSING: Any = msgspec.UNSET
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json_body(raw: bytes, *, required: bool = True) -> Any:
    """Decode a request body. Empty → ``{}`` when the body is optional.

    msgspec is tried first (fast); it refuses lone-surrogate escapes, which are valid
    JSON, so the stdlib decoder (NaN/Infinity refused) settles those cases and the
    payload checks can answer ``invalid_payload`` rather than ``invalid_json``.
    """
    if not raw.strip():
        if required:
            raise ValidationFailed([("body", "Field required")])
        return {}
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        pass
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise InvalidJSON() from None


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationFailed(
            [("body", "Input should be a valid dictionary or object to extract fields from")]
        )
    return body


def has_bad_text(value: Any) -> bool:
    """True if any string (key or value) holds NUL or an unpaired surrogate."""
    if isinstance(value, str):
        return _BAD_TEXT.search(value) is not None
    if isinstance(value, dict):
        return any(has_bad_text(k) or has_bad_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_bad_text(v) for v in value)
    return False


class Checker:
    """Collects problems; each ``get_*`` returns the checked value or MISSING."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def add(self, loc: str, text: str) -> None:
        self.problems.append((loc, text))

    def raise_if_any(self) -> None:
        if self.problems:
            raise ValidationFailed(self.problems)

    # -- scalar checkers: value → checked value or MISSING (after recording a problem)
    def string(
        self,
        loc: str,
        value: Any,
        *,
        min_len: int = 0,
        max_len: int | None = None,
        clean: bool = True,
    ) -> Any:
        if not isinstance(value, str):
            self.add(loc, "Input should be a valid string")
            return MISSING
        if len(value) < min_len:
            self.add(loc, f"String should have at least {min_len} character{'s' if min_len != 1 else ''}")
            return MISSING
        if max_len is not None and len(value) > max_len:
            self.add(loc, f"String should have at most {max_len} characters")
            return MISSING
        if clean and _BAD_TEXT.search(value):
            self.add(loc, "String should not contain NUL characters or unpaired surrogates")
            return MISSING
        return value

    def integer(self, loc: str, value: Any, *, ge: int | None = None, le: int | None = None) -> Any:
        if isinstance(value, bool):
            self.add(loc, "Input should be a valid integer")
            return MISSING
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            self.add(loc, "Input should be a valid integer")
            return MISSING
        if ge is not None and value < ge:
            self.add(loc, f"Input should be greater than or equal to {ge}")
            return MISSING
        if le is not None and value > le:
            self.add(loc, f"Input should be less than or equal to {le}")
            return MISSING
        return value

    def boolean(self, loc: str, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.add(loc, "Input should be a valid boolean")
        return MISSING

    def obj(self, loc: str, value: Any) -> Any:
        if not isinstance(value, dict):
            self.add(loc, "Input should be a valid dictionary")
            return MISSING
        return value

    def choice(self, loc: str, value: Any, options: tuple[str, ...]) -> Any:
        if not isinstance(value, str) or value not in options:
            quoted = [f"'{o}'" for o in options]
            joined = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
            self.add(loc, f"Input should be {joined}")
            return MISSING
        return value

    def http_url(self, loc: str, value: Any, *, max_len: int = 2048) -> Any:
        """An absolute http(s) URL of at most ``max_len`` chars (schema check only)."""
        text = self.string(loc, value, min_len=1)
        if text is MISSING:
            return MISSING
        if len(text) > max_len:
            self.add(loc, f"URL should have at most {max_len} characters")
            return MISSING
        try:
            parts = urlsplit(text)
        except ValueError:
            parts = None
        if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            self.add(loc, "Input should be a valid URL, relative URL without a base")
            return MISSING
        if any(c.isspace() for c in text):
            self.add(loc, "Input should be a valid URL")
            return MISSING
        return text

    def headers(self, loc: str, value: Any) -> Any:
        if not isinstance(value, dict):
            self.add(loc, "Input should be a valid dictionary")
            return MISSING
        ok = True
        for key, val in value.items():
            if not isinstance(val, str):
                self.add(f"{loc}.{key}", "Input should be a valid string")
                ok = False
            elif _BAD_TEXT.search(key) or _BAD_TEXT.search(val) or "\r" in val or "\n" in val:
                self.add(f"{loc}.{key}", "Header names and values must not contain control characters")
                ok = False
            elif not key or not all(33 <= ord(c) <= 126 and c != ":" for c in key):
                self.add(f"{loc}.{key}", "Invalid header name")
                ok = False
        return value if ok else MISSING


def query_int(params: Mapping[str, str], name: str, default: int, ge: int, le: int | None) -> int:
    """A pagination query parameter (CONTRACT.md §3.9)."""
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValidationFailed(
            [(f"query.{name}", "Input should be a valid integer, unable to parse string as an integer")]
        ) from None
    if value < ge:
        raise ValidationFailed([(f"query.{name}", f"Input should be greater than or equal to {ge}")])
    if le is not None and value > le:
        raise ValidationFailed([(f"query.{name}", f"Input should be less than or equal to {le}")])
    return value
