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
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")
BAD_TEXT = "String should not contain NUL characters or unpaired surrogates"

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects a request body may have (README "Input limits")."""
MAX_OFFSET = 10_000_000
"""Largest ``offset`` / ``execution_offset`` a listing accepts."""
MAX_HEADERS = 100
MAX_HEADER_NAME = 256
MAX_HEADER_VALUE = 8192
"""``callback.headers``: at most this many entries, names and values at most this long."""
MAX_QUERY_TEXT = 255
"""Longest text query parameter used in a lookup (``task``, ``agent``)."""
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_FOLD_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_QUERY_INT = re.compile(r"[+-]?[0-9]{1,20}")


def too_deep(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text ``raw`` nests arrays/objects deeper than ``limit``, decided on the
    bytes before any decoder recurses: strings are cut out, brackets folded to ``[]``, and each
    pass removes one innermost level (C-speed ``bytes`` operations; a body with at most
    ``limit`` brackets is never scanned). Unbalanced text is left to the decoder (False)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    levels = _JSON_STRING.sub(b"", raw).translate(_FOLD_BRACKETS, _NOT_BRACKETS)
    for _ in range(limit):
        inner = levels.replace(b"[]", b"")
        if not inner or inner == levels:
            return False
        levels = inner
    return True


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json_body(raw: bytes, *, required: bool = True) -> Any:
    """Decode a request body. Empty → ``{}`` when the body is optional.

    Nesting deeper than ``MAX_DEPTH`` is refused first (422 ``body``), so nothing after
    decoding ever recurses deeper than that. msgspec is tried first (fast); it refuses
    lone-surrogate escapes, which are valid JSON, so the stdlib decoder (NaN/Infinity
    refused) settles those cases and the text checks can answer ``invalid_payload`` /
    422 rather than ``invalid_json``.
    """
    if not raw.strip():
        if required:
            raise ValidationFailed([("body", "Field required")])
        return {}
    if too_deep(raw):
        raise ValidationFailed([("body", f"JSON should not nest deeper than {MAX_DEPTH} levels")])
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
    """True if any string (key or value) holds NUL or an unpaired surrogate (iterative: any
    depth)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if _BAD_TEXT.search(v):
                return True
        elif isinstance(v, dict):
            for k, item in v.items():
                if isinstance(k, str) and _BAD_TEXT.search(k):
                    return True
                stack.append(item)
        elif isinstance(v, list):
            stack.extend(v)
    return False


def has_surrogate(text: str) -> bool:
    """True if ``text`` holds an unpaired surrogate (it cannot be encoded as UTF-8)."""
    return _SURROGATE.search(text) is not None


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
        single_line: bool = False,
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
            self.add(loc, BAD_TEXT)
            return MISSING
        if single_line and _CONTROL.search(value):
            self.add(loc, "String should not contain control characters (CR, LF, …)")
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
        if len(value) > MAX_HEADERS:
            self.add(loc, f"Dictionary should have at most {MAX_HEADERS} items")
            return MISSING
        ok = True
        for key, val in value.items():
            if len(key) > MAX_HEADER_NAME or (isinstance(val, str) and len(val) > MAX_HEADER_VALUE):
                self.add(
                    f"{loc}.{key[:MAX_HEADER_NAME]}",
                    f"Header names have at most {MAX_HEADER_NAME} characters, values {MAX_HEADER_VALUE}",
                )
                ok = False
            elif not isinstance(val, str):
                self.add(f"{loc}.{key}", "Input should be a valid string")
                ok = False
            elif _BAD_TEXT.search(key) or _BAD_TEXT.search(val) or "\r" in val or "\n" in val:
                self.add(f"{loc}.{key}", "Header names and values must not contain control characters")
                ok = False
            elif not key or not all(33 <= ord(c) <= 126 and c != ":" for c in key):
                self.add(f"{loc}.{key}", "Invalid header name")
                ok = False
        return value if ok else MISSING


def query_int(params: Mapping[str, str], name: str, default: int, ge: int, le: int) -> int:
    """A pagination query parameter (CONTRACT.md §3.9): ASCII digits with an optional sign,
    between ``ge`` and ``le`` (every integer parameter has an upper bound)."""
    raw = params.get(name)
    if raw is None:
        return default
    text = raw.strip()
    if not _QUERY_INT.fullmatch(text):
        raise ValidationFailed(
            [(f"query.{name}", "Input should be a valid integer, unable to parse string as an integer")]
        )
    value = int(text)
    if value < ge:
        raise ValidationFailed([(f"query.{name}", f"Input should be greater than or equal to {ge}")])
    if value > le:
        raise ValidationFailed([(f"query.{name}", f"Input should be less than or equal to {le}")])
    return value


def query_text(params: Mapping[str, str], name: str, max_len: int = MAX_QUERY_TEXT) -> str | None:
    """A text query parameter that names something to look up (at most ``max_len``
    characters, no control characters or lone surrogates); absent or empty → None."""
    raw = params.get(name)
    if not raw:
        return None
    c = Checker()
    c.string(f"query.{name}", raw, min_len=1, max_len=max_len, single_line=True)
    c.raise_if_any()
    return raw
