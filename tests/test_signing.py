"""Webhook body bytes and signatures: the contract's known-answer vectors (§10.2–10.4)."""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from typing import Any

import pytest

from cuefast.signing import canonical_json, decode_payload, sign, verify

SECRET = "whsec_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
TS = 1795434122
BASE = {
    "attempt": 1,
    "cue_id": "cue_pbafy2oo0jo9",
    "execution_id": "8f83b427-f528-4a74-907f-f9f1c90c4999",
    "name": "hook-a",
    "scheduled_for": "2026-11-23T11:42:00+00:00",
}
# The contract's bodies, verbatim (raw strings: the backslashes are bytes of the body).
BODY_1 = (
    rb'{"attempt": 1, "cue_id": "cue_pbafy2oo0jo9", "execution_id": "8f83b427-f528-4a74-907f-f9f1c90c4999", '
    rb'"name": "hook-a", "payload": {"n": 1, "task": "t1", "\u00fc": "\u00e9"}, '
    rb'"scheduled_for": "2026-11-23T11:42:00+00:00"}'
)
SIG_1 = "v1=873c40b7308dd2f33f99662dcb29c903aaaa5805b24e728dea96deeacef862a4"
PAYLOAD_2 = (
    '{"task": "t1", "n": 1, "ü": "é", "x": 1.5e-7, "big": 1e16, "f": 2.0, "emoji": "😀", '
    r'"ctl": "a\u007fb\n"}'
)
BODY_2 = (
    rb'{"attempt": 1, "cue_id": "cue_pbafy2oo0jo9", "execution_id": "8f83b427-f528-4a74-907f-f9f1c90c4999", '
    rb'"name": "hook-a", "payload": {"big": 1e+16, "ctl": "a\u007fb\n", "emoji": "\ud83d\ude00", '
    rb'"f": 2.0, "n": 1, "task": "t1", "x": 1.5e-07, "\u00fc": "\u00e9"}, '
    rb'"scheduled_for": "2026-11-23T11:42:00+00:00"}'
)
SIG_2 = "v1=8903ff83ba284ef3e1895b50bd47663487c0adbd62a0e484e6d41a7019c3bde9"


def test_vector_one() -> None:
    assert len(BODY_1) == 219
    body = canonical_json(
        {
            "attempt": 1,
            "cue_id": "cue_pbafy2oo0jo9",
            "execution_id": "8f83b427-f528-4a74-907f-f9f1c90c4999",
            "name": "hook-a",
            "payload": {"task": "t1", "n": 1, "ü": "é"},
            "scheduled_for": "2026-11-23T11:42:00+00:00",
        }
    )
    assert body == BODY_1
    assert len(body) == 219
    assert sign(SECRET, TS, body) == SIG_1


def test_vector_two_from_json_text() -> None:
    assert len(BODY_2) == 303
    for raw in (PAYLOAD_2.encode(), PAYLOAD_2):
        body = canonical_json({**BASE, "payload": decode_payload(raw)})
        assert body == BODY_2
        assert len(body) == 303
        assert sign(SECRET, TS, body) == SIG_2


def test_canonical_json_is_stdlib_dumps() -> None:
    obj: Any = {
        "z": [1, 2.5, None, True, False, {}, []],
        "a": {"\uffff": 1, "😀": 2, "é": 3, "B": 4, "a": 5},
        "s": 'q"\\/\b\f\n\r\t\x00\x1f\x7f\u2028',
        "lone": "\ud800",
    }
    assert canonical_json(obj) == json.dumps(obj, sort_keys=True).encode()
    # keys by code point: U+FFFF before U+1F600 (not UTF-16 order)
    assert canonical_json({"😀": 1, "\uffff": 2}) == rb'{"\uffff": 2, "\ud83d\ude00": 1}'
    assert canonical_json({"s": "a/b\u007f"}) == rb'{"s": "a/b\u007f"}'
    assert canonical_json({}) == b"{}" and canonical_json([]) == b"[]"


def test_numbers_follow_json_loads() -> None:
    decoded = decode_payload(
        b'{"a": 1e2, "b": -0, "c": 123456789012345678901234567890, "d": 1e-5, "e": -0.0, '
        b'"f": 1E16, "g": 1000000000000000.0, "h": 1e300, "i": 18446744073709551616, "j": 0.1}'
    )
    assert canonical_json(decoded) == (
        b'{"a": 100.0, "b": 0, "c": 123456789012345678901234567890, "d": 1e-05, "e": -0.0, '
        b'"f": 1e+16, "g": 1000000000000000.0, "h": 1e+300, "i": 18446744073709551616, "j": 0.1}'
    )
    assert type(decoded["c"]) is int and type(decoded["f"]) is float


@pytest.mark.parametrize(
    "raw",
    [
        b'{"s": "\\ud800"}',  # lone surrogate
        b'{"s": "\\udc00\\ud800"}',
        b"[1e400, -1e400]",  # overflows a double
        b"[NaN, Infinity, -Infinity]",
        b'{"a": 1, "a": 2}',
        b"-1" + b"7" * 300,
        b'"\\u0000"',
        '"ü"'.encode("utf-16"),  # json.loads detects UTF-16
    ],
)
def test_decode_payload_matches_json_loads_where_msgspec_differs(raw: bytes) -> None:
    ours, ref = decode_payload(raw), json.loads(raw)
    assert canonical_json(ours) == json.dumps(ref, sort_keys=True).encode()


def test_decode_payload_rejects_what_json_loads_rejects() -> None:
    for raw in (b"", b"{", b"[1,]", b"\xff", b"1" * 5000):
        with pytest.raises(ValueError):
            json.loads(raw)
        with pytest.raises(ValueError):
            decode_payload(raw)


def test_decode_payload_numbers_fuzz() -> None:
    rng = random.Random(1234)

    def number() -> str:
        kind = rng.randrange(4)
        if kind == 0:
            return repr(rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-320, 300))
        if kind == 1:
            digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 30)))
            return f"{rng.choice(['', '-'])}{int(digits)}.{digits}e{rng.randint(-330, 310)}"
        if kind == 2:
            return str(rng.randint(-(10 ** rng.randint(1, 60)), 10 ** rng.randint(1, 60)))
        return f"{rng.randint(1, 10**20)}e{rng.randint(-25, 25)}"

    for _ in range(300):
        raw = "[" + ", ".join(number() for _ in range(20)) + "]"
        ours, ref = decode_payload(raw), json.loads(raw)
        assert [type(v) for v in ours] == [type(v) for v in ref]
        assert canonical_json(ours) == json.dumps(ref, sort_keys=True).encode(), raw


def test_independent_hmac() -> None:
    """RFC 2104 by hand: the 70-byte key is longer than SHA-256's 64-byte block, so it is hashed."""

    def hmac_sha256(key: bytes, msg: bytes) -> str:
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in key) + msg).digest()
        return hashlib.sha256(bytes(b ^ 0x5C for b in key) + inner).hexdigest()

    assert len(SECRET.encode()) == 70
    for body, sig in ((BODY_1, SIG_1), (BODY_2, SIG_2), (b"", None)):
        expected = "v1=" + hmac_sha256(SECRET.encode(), str(TS).encode() + b"." + body)
        assert sign(SECRET, TS, body) == expected
        if sig is not None:
            assert expected == sig
    short = "whsec_x"
    assert sign(short, 5, b"{}") == "v1=" + hmac_sha256(short.encode(), b"5.{}")


def test_verify_accepts() -> None:
    assert verify(BODY_1, SIG_1, SECRET, TS, now=TS + 10)
    assert verify(BODY_2, SIG_2, SECRET, TS, now=TS)
    assert verify(BODY_2.decode(), SIG_2, SECRET, str(TS), now=TS - 299)
    assert verify(bytearray(BODY_1), SIG_1, SECRET, TS, now=TS + 300)  # the edge is inclusive
    assert verify(memoryview(BODY_1), SIG_1, SECRET, TS, now=TS - 300)
    now = int(time.time())
    assert verify(b"{}", sign(SECRET, now, b"{}"), SECRET, now)  # default now: the clock


def test_verify_rejects() -> None:
    flipped = bytearray(BODY_1)
    flipped[100] ^= 0x01
    bad: list[tuple[Any, Any, Any, Any]] = [
        (bytes(flipped), SIG_1, SECRET, TS),
        (BODY_1 + b" ", SIG_1, SECRET, TS),
        (BODY_1, SIG_2, SECRET, TS),
        (BODY_1, SIG_1, SECRET.replace("a", "b"), TS),
        (BODY_1, SIG_1, SECRET.removeprefix("whsec_"), TS),
        (BODY_1, SIG_1.replace("v1=", "sha256="), SECRET, TS),
        (BODY_1, SIG_1.removeprefix("v1="), SECRET, TS),
        (BODY_1, SIG_1.upper().replace("V1=", "v1="), SECRET, TS),
        (BODY_1, SIG_1 + " ", SECRET, TS),
        (BODY_1, f"{SIG_1},{SIG_1}", SECRET, TS),
        (BODY_1, "garbage", SECRET, TS),
        (BODY_1, "", SECRET, TS),
        (BODY_1, "v1=é", SECRET, TS),
        (BODY_1, SIG_1, SECRET, TS + 1),
        (BODY_1, SIG_1, SECRET, "not-a-number"),
        (BODY_1, SIG_1, SECRET, f"0{TS}"),  # not the decimal text that was signed
        (BODY_1, SIG_1, SECRET, f" {TS}"),
        (BODY_1, SIG_1, SECRET, f"{TS}.0"),
        (BODY_1, SIG_1, SECRET, ""),
        (BODY_1, SIG_1, SECRET, True),
        (BODY_1, SIG_1, SECRET, float(TS)),
        (BODY_1, SIG_1, SECRET, None),
    ]
    for body, sig, secret, ts in bad:
        assert not verify(body, sig, secret, ts, now=TS), (body[:20], sig, secret, ts)


def test_verify_tolerance() -> None:
    assert not verify(BODY_1, SIG_1, SECRET, TS, now=TS + 301)  # older than 300 s
    assert not verify(BODY_1, SIG_1, SECRET, TS, now=TS - 301)  # from the future
    assert not verify(BODY_1, SIG_1, SECRET, TS, now=TS + 3600)
    assert verify(BODY_1, SIG_1, SECRET, TS, now=TS + 3600, tolerance=3600)
    assert not verify(BODY_1, SIG_1, SECRET, TS, now=TS + 1, tolerance=0)
    assert not verify(BODY_1, SIG_1, SECRET, TS, now=math.nan)
    assert not verify(BODY_1, SIG_1, SECRET, TS, now=math.inf)


@pytest.mark.parametrize(
    "value",
    [None, 5, 10**30, 1.5, b"\xff", "\ud800", object(), [], {"a": 1}],
)
def test_verify_never_raises(value: Any) -> None:
    assert not verify(value, SIG_1, SECRET, TS, now=TS)
    assert not verify(BODY_1, value, SECRET, TS, now=TS)
    assert not verify(BODY_1, SIG_1, value, TS, now=TS)
    assert not verify(BODY_1, SIG_1, SECRET, value, now=TS)
    if value is not None:  # now=None means the clock
        assert not verify(BODY_1, SIG_1, SECRET, TS, now=value)
    if not isinstance(value, int | float):
        assert not verify(BODY_1, SIG_1, SECRET, TS, now=TS, tolerance=value)
