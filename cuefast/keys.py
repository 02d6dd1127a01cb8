"""Every Redis key name cuefast uses; nothing else builds key strings.

Layout (DESIGN.md §4, with the project's choices written down in docs/DESIGN.md):

* ``<pfx>:{auth}:…`` — the auth slot: API-key hash → account, rotated keys, e-mail and
  slug uniqueness, account hashes. Every auth lookup is one script on this slot.
* ``<pfx>:{a:<account>}:…`` — per-account slot: cue-name uniqueness.
* ``<pfx>:{pNN}:…`` — partition slots: cues, due times, per-account listing indexes,
  executions. A cue's partition is ``crc32(cue_id) % P``; an execution lives in its
  cue's partition and carries the partition number in the last byte of its UUID.

Every script's keys are built here from one slot, so each script touches one hash slot
(tests assert it), which is what Redis Cluster needs.
"""

from __future__ import annotations

import re
import zlib

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CUE_ID_RE = re.compile(r"^cue_[a-z0-9]{12}$")
CUE_STATUSES = ("active", "paused", "completed", "failed")


class Keys:
    """Key builder for one install (prefix) and partition count."""

    __slots__ = ("auth", "partitions", "prefix")

    def __init__(self, prefix: str, partitions: int) -> None:
        self.prefix = prefix
        self.partitions = partitions
        self.auth = f"{prefix}:{{auth}}"

    # ---- partitions --------------------------------------------------------------
    def cue_partition(self, cue_id: str) -> int:
        return zlib.crc32(cue_id.encode()) % self.partitions

    def execution_partition(self, execution_id: str) -> int | None:
        """The partition encoded in an execution id, or None for a malformed id."""
        if len(execution_id) != 36 or not _UUID_RE.match(execution_id):
            return None
        p = int(execution_id[-2:], 16)
        return p if p < self.partitions else None

    def part(self, p: int) -> str:
        return f"{self.prefix}:{{p{p:02d}}}"

    def all_parts(self) -> list[str]:
        return [self.part(p) for p in range(self.partitions)]

    # ---- auth slot ---------------------------------------------------------------
    @property
    def api_keys(self) -> str:
        """hash: sha256(api key) → account id"""
        return f"{self.auth}:keys"

    def rotated_key(self, key_sha: str) -> str:
        """string with a 24 h TTL: a replaced key (answers key_rotated)."""
        return f"{self.auth}:rot:{key_sha}"

    @property
    def emails(self) -> str:
        """hash: lower-case e-mail → account id"""
        return f"{self.auth}:emails"

    @property
    def slugs(self) -> str:
        """hash: slug → account id"""
        return f"{self.auth}:slugs"

    @property
    def account_prefix(self) -> str:
        return f"{self.auth}:acct:"

    def account(self, account_id: str) -> str:
        """hash: the account (see store.ACCOUNT_FIELDS)"""
        return f"{self.auth}:acct:{account_id}"

    # ---- per-account slot -----------------------------------------------------------
    def cue_names(self, account_id: str) -> str:
        """hash: cue name → "<cue id>:<reserved at, s>" (name uniqueness)"""
        return f"{self.prefix}:{{a:{account_id}}}:names"

    def workers(self, account_id: str) -> str:
        """zset: worker id → last worker heartbeat µs (the worker registry, §9.6)"""
        return f"{self.prefix}:{{a:{account_id}}}:workers"

    def usage(self, account_id: str, month: str) -> str:
        """hash: monthly counters of one account (``executions``, outcomes …), month = YYYY-MM"""
        return f"{self.prefix}:{{a:{account_id}}}:usage:{month}"

    @property
    def meta(self) -> str:
        """hash: install-wide facts (``partitions``) checked at start"""
        return f"{self.auth}:meta"

    # ---- partition slots -------------------------------------------------------------
    def cue(self, cue_id: str) -> str:
        """hash: the cue's small fields (models.py); every value <= 64 B keeps it a listpack"""
        return f"{self.part(self.cue_partition(cue_id))}:cue:{cue_id}"

    def cue_config(self, cue_id: str) -> str:
        """string: ``<config JSON>\n<payload JSON>`` of the cue (the values too long for its hash)"""
        return f"{self.part(self.cue_partition(cue_id))}:cue:{cue_id}:cfg"

    def due(self, p: int) -> str:
        """zset: cue id → next fire (µs)"""
        return f"{self.part(p)}:due"

    def cue_index(self, p: int, account_id: str, status: str) -> str:
        """zset: cue id → created_at µs, an account's cues in one status (no "all" index: a
        listing of every status merges the four, which saves a zset entry per cue)"""
        return f"{self.part(p)}:idx:{account_id}:cues:{status}"

    def cue_executions(self, cue_id: str) -> str:
        """zset: execution id → created_at µs, the executions of one cue"""
        return f"{self.part(self.cue_partition(cue_id))}:cue:{cue_id}:execs"

    def execution(self, p: int, execution_id: str) -> str:
        return f"{self.part(p)}:exec:{execution_id}"

    def execution_index(self, p: int, account_id: str) -> str:
        """zset: execution id → created_at µs, an account's executions on one partition"""
        return f"{self.part(p)}:idx:{account_id}:execs"

    def outbox(self, p: int) -> str:
        """stream: webhook executions ready for delivery (field ``e`` = execution id)"""
        return f"{self.part(p)}:outbox"

    def leases(self, p: int) -> str:
        """zset: execution id → lease expiry µs of an attempt in flight"""
        return f"{self.part(p)}:leases"

    def retries(self, p: int) -> str:
        """zset: execution id → next retry µs"""
        return f"{self.part(p)}:retry"

    def deadlines(self, p: int) -> str:
        """zset: execution id → outcome deadline µs (armed deadlines)"""
        return f"{self.part(p)}:deadlines"

    def delayed(self, p: int) -> str:
        """zset: webhook execution id → send_at µs (fires scheduled for later)"""
        return f"{self.part(p)}:delayed"

    def idempotency(self, cue_id: str, key_digest: str) -> str:
        """string (24 h TTL): "<fingerprint>|<execution id>|<response JSON>" of a fire"""
        return f"{self.part(self.cue_partition(cue_id))}:idem:{cue_id}:{key_digest}"

    def work(self, p: int, account_id: str) -> str:
        """zset: an account's claimable worker executions → scheduled_for µs"""
        return f"{self.part(p)}:work:{account_id}"

    @property
    def poller(self) -> str:
        """hash: the scheduler's last cycle (for /health)"""
        return f"{self.auth}:poller"
