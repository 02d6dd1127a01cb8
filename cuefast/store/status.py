"""The one table of status codes the Lua scripts answer with (``STATUS`` in every script)."""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """What a script says about one operation. Every script gets this table as the Lua local
    ``STATUS`` (``scripts.load_lua``), so a code means the same thing in every script and the
    store decodes it in one way (``Status(code)``)."""

    OK = 1
    """done"""
    REPEAT = 2
    """an idempotent repeat: the first call's answer, nothing new written"""
    NO_KEY = 0
    """the request carries no API key (accounts_authenticate)"""
    NOT_FOUND = -1
    """no such object, or not the caller's"""
    CONFLICT = -2
    """it moved on since it was read: version, lease (fencing token), key, fingerprint, owner"""
    EXISTS = -3
    """already there: an e-mail, a cue id, a cue name held by another cue, a recorded outcome"""
    WRONG_STATE = -4
    """it exists but its state does not allow this (not claimable, not claimed, not in flight)"""
    BUSY = -5
    """another live holder has it (an attempt in flight, the snapshot lease)"""
    LIMIT = -6
    """a limit is reached (echo records per IP, workers per account)"""
    ROTATED = -7
    """a replaced API key (answers key_rotated for 24 h)"""
    EXHAUSTED = -8
    """every candidate is taken (slugs of a new account)"""
    COUNT = -9
    """the names alone cannot prove the cue limit is not reached: count the cues"""
    ELSEWHERE = -10
    """it is on another slot: a key issued before the auth shards, whose account lives in
    another shard than the key's map entry (accounts_authenticate)"""
    QUEUED = -11
    """it waits its turn: a concurrency cap is reached (delivery_start; docs/DESIGN.md
    "Concurrency caps")"""


def lua_table() -> str:
    """``Status`` as the Lua local every script starts with."""
    return "local STATUS = {" + ", ".join(f"{s.name} = {s.value}" for s in Status) + "}\n"
