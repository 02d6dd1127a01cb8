"""Webhook body bytes and signatures: the contract's known-answer vectors (§10.4)."""

from __future__ import annotations

import hashlib

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
BODY_1 = (
    b'{"attempt": 1, "cue_id": "cue_pbafy2oo0jo9", "execution_id": "8f83b427-f528-4a74-907f-f9f1c90c4999", '
    b'"name": "hook-a", "payload": {"n": 1, "task": "t1", "\\u00fc": "\\u00e9"}, '
    b'"scheduled_for": "2026-11-23T11:42:00+00:00"}'
)
SIG_1 = "v1=873c40b7308dd2f33f99662dcb29c903aaaa5805b24e728dea96deeacef862a4"
PAYLOAD_2 = (
    '{"task": "t1", "n": 1, "ü": "é", "x": 1.5e-7, "big": 1e16, "f": 2.0, "emoji": "😀", '
    '"ctl": "a\\u007fb\\n"}'
)
BODY_2 = (
    b'{"attempt": 1, "cue_id": "cue_pbafy2oo0jo9", "execution_id": "8f83b427-f528-4a74-907f-f9f1c90c4999", '
    b'"name": "hook-a", "payload": {"big": 1e+16, "ctl": "a\\u007fb\\n", "emoji": "\\ud83d\\ude00", '
    b'"f": 2.0, "n": 1, "task": "t1", "x": 1.5e-07, "\\u00fc": "\\u00e9"}, '
    b'"scheduled_for": "2026-11-23T11:42:00+00:00"}'
)
SIG_2 = "v1=8903ff83ba284ef3e1895b50bd47663487c0adbd62a0e484e6d41a7019c3bde9"


def test_vector_one() -> None:
    body = canonical_json({**BASE, "payload": {"task": "t1", "n": 1, "ü": "é"}})
    assert body == BODY_1 and len(body) == 219
    assert sign(SECRET, TS, body) == SIG_1


def test_vector_two_from_json_text() -> None:
    body = canonical_json({**BASE, "payload": decode_payload(PAYLOAD_2.encode())})
    assert body == BODY_2 and len(body) == 303
    assert sign(SECRET, TS, body) == SIG_2


def test_numbers_follow_python_repr() -> None:
    decoded = decode_payload(
        b'{"a": 1e2, "b": -0, "c": 123456789012345678901234567890, "d": 1e-5, "e": -0.0}'
    )
    assert (
        canonical_json(decoded)
        == b'{"a": 100.0, "b": 0, "c": 123456789012345678901234567890, "d": 1e-05, "e": -0.0}'
    )
    assert decode_payload(b'{"s": "\\ud800"}') == {"s": "\ud800"}  # lone surrogate: stdlib fallback


def test_independent_hmac() -> None:
    key = hashlib.sha256(SECRET.encode()).digest().ljust(64, b"\0")  # 70-byte key > block: hashed
    ipad = bytes(b ^ 0x36 for b in key)
    opad = bytes(b ^ 0x5C for b in key)
    msg = str(TS).encode() + b"." + BODY_1
    inner = hashlib.sha256(ipad + msg).digest()
    assert "v1=" + hashlib.sha256(opad + inner).hexdigest() == SIG_1


def test_verify() -> None:
    assert verify(BODY_1, SIG_1, SECRET, TS, now=TS + 10)
    assert verify(BODY_2.decode(), SIG_2, SECRET, str(TS), now=TS - 299)
    flipped = BODY_1[:-2] + b"X}"
    bad = [
        (flipped, SIG_1, SECRET, TS),
        (BODY_1, SIG_1, SECRET.replace("a", "b"), TS),
        (BODY_1, SIG_1.replace("v1=", "sha256="), SECRET, TS),
        (BODY_1, "garbage", SECRET, TS),
        (BODY_1, SIG_1, SECRET, "not-a-number"),
    ]
    for body, sig, secret, ts in bad:
        assert not verify(body, sig, secret, ts, now=TS)
    assert not verify(BODY_1, SIG_1, SECRET, TS, now=TS + 301)


@pytest.mark.parametrize("value", [None, 5, b"\xff"])
def test_verify_never_raises(value: object) -> None:
    assert not verify(value, SIG_1, SECRET, TS, now=TS)  # type: ignore[arg-type]
    assert not verify(BODY_1, value, SECRET, TS, now=TS)  # type: ignore[arg-type]
