"""Identifiers and secrets (CONTRACT.md §3.3).

The ``is_*`` predicates are THE rule for each client-supplied id: every route (path, query
or body) checks an id with its predicate before the id can reach a key name, and a
malformed id is simply "not found" (§3.3). Execution ids also carry their cue's partition
byte (``Keys.cue_byte``) in the last byte, which ``Keys.execution_partition`` reads.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import uuid
import zlib
from typing import TypeGuard

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_SLUG_BAD = re.compile(r"[^a-z0-9]+")

CUE_ID_RE = re.compile(r"cue_[a-z0-9]{12}")
EXECUTION_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ECHO_TOKEN_RE = re.compile(r"[A-Za-z0-9._~-]{16,256}")
MAX_WORKER_ID = 255
_WORKER_BAD = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def is_cue_id(value: object) -> TypeGuard[str]:
    """``cue_`` + 12 of ``[a-z0-9]``."""
    return isinstance(value, str) and CUE_ID_RE.fullmatch(value) is not None


def is_execution_id(value: object) -> TypeGuard[str]:
    """A UUID in canonical lowercase 8-4-4-4-12 form (alert ids have the same form)."""
    return isinstance(value, str) and EXECUTION_ID_RE.fullmatch(value) is not None


def is_worker_id(value: object) -> TypeGuard[str]:
    """A client-chosen worker id: 1–255 characters, no control characters or lone surrogates."""
    return isinstance(value, str) and 0 < len(value) <= MAX_WORKER_ID and _WORKER_BAD.search(value) is None


def is_echo_token(value: object) -> TypeGuard[str]:
    """An echo token: 16–256 URL-safe characters (the CLI's quickstart sends ``qs-<16 hex>``)."""
    return isinstance(value, str) and ECHO_TOKEN_RE.fullmatch(value) is not None


_CUE_ID_BYTES = bytes(ord(_ALNUM[b % 36]) for b in range(256))
"""random byte → id character: the 252 bytes below 7 × 36 map 7 each to every character"""
_CUE_ID_REJECT = bytes(range(252, 256))
_CUE_CRC = zlib.crc32(b"cue_")


def new_cue_id(group: tuple[int, int] | None = None) -> str:
    """``cue_`` + 12 characters drawn uniformly from ``[a-z0-9]`` (62 bits): random bytes
    mapped with one ``bytes.translate``, the 4 values that would bias the draw dropped (12
    characters out of 16 bytes; a shortfall, p ≈ 1e-15, draws again).

    With ``group`` = (m, r) (``Keys.cue_group``: an account's cues on few partitions), the
    first of ~3m such ids, cut from one ``urandom``, with ``crc32(id) % m == r`` — uniform
    over the ids of the group (none fits with p ≈ 5 %: drawn again)."""
    if group is None:
        while True:
            drawn = os.urandom(16).translate(_CUE_ID_BYTES, _CUE_ID_REJECT)
            if len(drawn) >= 12:
                return "cue_" + drawn[:12].decode()
    m, r = group
    size = 36 * m
    while True:
        drawn = os.urandom(size + size // 32).translate(_CUE_ID_BYTES, _CUE_ID_REJECT)
        view = memoryview(drawn)
        for i in range(0, len(drawn) - 11, 12):
            if zlib.crc32(view[i : i + 12], _CUE_CRC) % m == r:
                return "cue_" + drawn[i : i + 12].decode()


def new_api_key() -> str:
    return "cue_sk_" + secrets.token_hex(16)


def key_sha(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def key_prefix(api_key: str) -> str:
    return api_key[:12]


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_hex(32)


def new_alert_secret() -> str:
    return secrets.token_hex(32)


def new_account_id() -> str:
    return str(uuid.uuid4())


def _with_partition(raw: bytes, partition: int, version: int) -> str:
    """The canonical UUID text of ``raw[:16]`` with version, variant and partition byte set
    (formatted by hand: ``str(uuid.UUID(...))`` was most of the scheduler's Python time)."""
    h = raw[:6].hex()
    v = f"{(raw[6] & 0x0F) | (version << 4):02x}{raw[7]:02x}"
    r = f"{(raw[8] & 0x3F) | 0x80:02x}{raw[9]:02x}"
    return f"{h[:8]}-{h[8:]}-{v}-{r}-{raw[10:15].hex()}{partition:02x}"


def new_execution_id(partition: int) -> str:
    """A random (v4) execution id whose last byte is ``partition`` (the cue's ``Keys.cue_byte``)."""
    return _with_partition(secrets.token_bytes(16), partition, 4)


def scheduled_execution_id(cue_id: str, scheduled_us: int, partition: int) -> str:
    """The deterministic id of the scheduler's execution for (cue, scheduled_for).

    Any number of schedulers, restarts and crashes derive the same id for one slot,
    so a slot can never get two executions.
    """
    digest = hashlib.sha256(f"{cue_id}|{scheduled_us}".encode()).digest()
    return _with_partition(digest, partition, 5)


def scheduled_execution_id_member(cue_id: str, scheduled_us: int, partition: int) -> tuple[str, bytes]:
    """``scheduled_execution_id`` and its 16 bytes (the listing index member,
    ``store.executions.index_member``), from one digest: the scheduler sends both."""
    raw = bytearray(hashlib.sha256(f"{cue_id}|{scheduled_us}".encode()).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50
    raw[8] = (raw[8] & 0x3F) | 0x80
    raw[15] = partition
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}", bytes(raw)


def slug_base(email: str) -> str:
    local = email.split("@", 1)[0].lower()
    slug = _SLUG_BAD.sub("-", local).strip("-")[:60].strip("-")
    return slug or "user"


def slug_candidates(email: str) -> list[str]:
    """The slug, then 5 tries with 4 random hex, then 8 random hex (contract §6.1)."""
    base = slug_base(email)
    out = [base]
    out += [f"{base}-{secrets.token_hex(2)}" for _ in range(5)]
    out.append(f"{base}-{secrets.token_hex(4)}")
    return out
