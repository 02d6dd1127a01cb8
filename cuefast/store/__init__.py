"""The only module that talks to Redis: loads ``lua/*.lua``, one typed method per operation.

Scripts are registered once and preloaded with ``SCRIPT LOAD`` at start, so a syntax
error fails at boot, not on the first request. Every script's KEYS come from
``Keys`` and share one hash slot.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from cuefast.errors import ConfigError
from cuefast.models import Account, config_json
from cuefast.store.connect import connect
from cuefast.store.keys import CUE_STATUSES, Keys
from cuefast.store.scripts import Call, Scripts, load_lua
from cuefast.times import to_datetime

__all__ = ["SCRIPT_NAMES", "AuthResult", "Store", "Window", "connect", "load_lua"]

log = logging.getLogger(__name__)

SCRIPT_NAMES = (
    "accounts_authenticate",
    "accounts_register",
    "accounts_rotate_key",
    "accounts_change_email",
    "cues_reserve_name",
    "cues_release_name",
    "cues_create",
    "cues_update",
    "cues_delete",
    "schedule_materialize",
    "schedule_due_cues",
    "delivery_start",
    "delivery_finish",
    "delivery_release",
    "delivery_extend",
    "schedule_move_retries",
    "executions_create",
    "schedule_move_delayed",
    "executions_purge_cue",
    "schedule_expire_deadlines",
    "outcomes_record",
    "executions_cas",
    # worker transport
    "claims_claim",
    "claims_heartbeat",
    "claims_release",
    "claims_expired_leases",
    "claims_reap_leases",
    "claims_expire_unclaimed",
    "claims_arm_deadlines",
    "workers_heartbeat",
    "echo_save",
    "outcomes_record_many",
    "executions_cues",
    # alerts and notices
    "notices_move_due",
    "notices_finish",
    # snapshots, retention and restore
    "snapshots_take",
    "snapshots_lease",
    "snapshots_request",
    "snapshots_trim",
    "restore_cues",
    "restore_executions",
)

DISPATCH_GROUP = "dispatchers"
NOTICE_GROUP = "notifiers"
SCHEDULER_STEPS = frozenset({"cues", "retries", "delayed", "deadlines", "leases", "unclaimed"})
"""the timed sets a scheduler pass works on (``Store.due_work``)"""
SMALL_VALUE = 64  # Redis's hash-max-listpack-value: a longer value makes a hash a hashtable

Reserve = Literal["ok", "taken", "count"]


class Window(NamedTuple):
    """A rate-limit verdict: ``counted`` (False = over the limit, not counted), the requests
    in the 60 s window (including this one when counted), the limit, the oldest request µs."""

    counted: bool
    requests: int
    limit: int
    oldest_us: int


class AuthResult(NamedTuple):
    """``status`` "ok" (``account`` set), "none" (no API key), "unknown" or "rotated";
    ``window`` is None when the request was not counted; ``warn``: executions this month
    reached 80 % of the monthly limit."""

    status: Literal["ok", "none", "unknown", "rotated"]
    account: Account | None
    window: Window | None
    warn: bool


_AUTH_STATUS: dict[int, Literal["none", "unknown", "rotated"]] = {0: "none", -1: "unknown", -2: "rotated"}


GRACE_US = 86_400_000_000
"""the monthly execution limit's grace period (CONTRACT.md §13.2): 24 h"""


def month_of(now_us: int) -> str:
    return to_datetime(now_us).strftime("%Y-%m")


def previous_month(month: str) -> str:
    """ "2026-01" → "2025-12"."""
    year, mon = int(month[:4]), int(month[5:7])
    return f"{year - 1}-12" if mon == 1 else f"{year:04d}-{mon - 1:02d}"


def _pairs(mapping: Mapping[str, str | int]) -> list[str | int]:
    out: list[str | int] = []
    for k, v in mapping.items():
        out.append(k)
        out.append(v)
    return out


class Store:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = Scripts(redis, SCRIPT_NAMES)

    async def preload(self) -> None:
        """SCRIPT LOAD every script (fails at boot on a syntax error)."""
        await self.scripts.preload()

    async def close(self) -> None:
        await self.redis.aclose()

    # ---- accounts ----------------------------------------------------------------
    async def authenticate(
        self, key_sha: str, *, ip: str = "", ip_limit: int = 0, month: str = "", count: bool, now_us: int
    ) -> AuthResult:
        """Resolve ``key_sha`` ("" = no API key) and, with ``count``, count the request in the
        key's window (a valid key) or the IP's (anything else): one script call."""
        k = self.keys
        res = await self.scripts.run(
            "accounts_authenticate",
            [k.api_keys, k.rotated_key(key_sha), k.key_window(key_sha), k.ip_window(ip)],
            [key_sha, k.account_prefix, ip_limit, month, 1 if count else 0, now_us],
        )
        code, verdict = int(res[0]), int(res[1])
        window = None if verdict == -1 else Window(verdict == 1, int(res[2]), int(res[3]), int(res[4]))
        if code != 1:
            return AuthResult(_AUTH_STATUS.get(code, "unknown"), None, window, False)
        it = iter(res[6:])
        account = msgspec.convert(dict(zip(it, it, strict=True)), Account, strict=False)
        return AuthResult("ok", account, window, res[5] == 1)

    def _mirror_executions(self, pipe: Any, account_id: str, month: str, n: int) -> None:
        """Mirror a monthly executions increment into the account hash (field ``ex:<month>``,
        the previous month's field dropped) so ``accounts_authenticate.lua`` can set the usage warning without
        reading another slot. Every increment of ``executions`` must go through here. The
        account is marked dirty with it (the snapshot's copy of the hash stays exact)."""
        key = self.keys.account(account_id)
        pipe.hincrby(key, f"ex:{month}", n)
        pipe.hdel(key, f"ex:{previous_month(month)}")
        pipe.sadd(self.keys.dirty(self.keys.auth), f"acct:{account_id}")

    async def usage_counts(self, account_id: str, month: str) -> tuple[int, int, dict[str, int]]:
        """(active cues, paused cues, the month's usage counters): one round trip."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(k.partitions):
                pipe.zcard(k.cue_index(p, account_id, "active"))
                pipe.zcard(k.cue_index(p, account_id, "paused"))
            pipe.hgetall(k.usage(account_id, month))
            res = await pipe.execute()
        counters = {str(f): int(v) for f, v in res[-1].items()}
        return sum(res[0:-1:2]), sum(res[1:-1:2]), counters

    async def count_outcomes(self, outcomes: Sequence[tuple[str, str, bool]]) -> None:
        """Monthly outcome counters (CONTRACT.md §13.1), one pipeline: each recorded outcome
        (account, "YYYY-MM" of the execution's creation, success) adds to ``reported`` and to
        ``succeeded`` or ``failed``."""
        reported: dict[tuple[str, str], int] = {}
        verdicts: dict[str, dict[tuple[str, str], int]] = {"succeeded": {}, "failed": {}}
        for account_id, month, success in outcomes:
            bucket = (account_id, month)
            reported[bucket] = reported.get(bucket, 0) + 1
            counts = verdicts["succeeded" if success else "failed"]
            counts[bucket] = counts.get(bucket, 0) + 1
        if not reported:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            self._add_usage(pipe, reported, "reported")
            for field, counts in verdicts.items():
                self._add_usage(pipe, counts, field)
            await pipe.execute()

    async def count_failed_executions(self, p: int, execution_ids: Sequence[str]) -> None:
        """Usage ``failed`` (§13.1) for executions of partition ``p`` that ended failed, missed or
        outcome_timeout: each one without an outcome adds 1 in its creation month. Two
        pipelines (read, then count); not atomic with the status change (a crash in between
        loses the count, never a state)."""
        if not execution_ids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for eid in execution_ids:
                pipe.hmget(self.keys.execution(p, eid), ["acct", "ca", "oc"])
            rows = await pipe.execute()
        counts: dict[tuple[str, str], int] = {}
        for acct, ca, oc in rows:
            if acct and ca and not oc:
                bucket = (str(acct), month_of(int(ca)))
                counts[bucket] = counts.get(bucket, 0) + 1
        if not counts:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            self._add_usage(pipe, counts, "failed")
            await pipe.execute()

    def _add_usage(self, pipe: Any, counts: Mapping[tuple[str, str], int], field: str) -> None:
        """Queue ``field`` += n on each (account, "YYYY-MM") monthly usage hash (62 d TTL)."""
        for (account_id, month), n in counts.items():
            key = self.keys.usage(account_id, month)
            pipe.hincrby(key, field, n)
            pipe.expire(key, 62 * 86400)

    async def register(
        self,
        account: Account,
        slug_candidates: Sequence[str],
    ) -> str | Literal["duplicate_email", "no_slug"]:
        k = self.keys
        fields = {
            f: (v if not isinstance(v, bool) else int(v))
            for f, v in msgspec.structs.asdict(account).items()
            if f != "slug"
        }
        res = await self.scripts.run(
            "accounts_register",
            [k.emails, k.api_keys, k.slugs, k.account(account.id)],
            [
                account.email_lc,
                account.id,
                account.key_sha,
                len(slug_candidates),
                *slug_candidates,
                *_pairs(fields),
            ],
        )
        if res[0] == -1:
            return "duplicate_email"
        if res[0] == -3:
            return "no_slug"
        return str(res[1])

    async def rotate_key(
        self,
        account_id: str,
        old_sha: str,
        new_sha: str,
        new_prefix: str,
        new_enc: str,
        ttl_ms: int,
        now_us: int,
    ) -> bool:
        k = self.keys
        res = await self.scripts.run(
            "accounts_rotate_key",
            [k.api_keys, k.account(account_id), k.rotated_key(old_sha)],
            [old_sha, new_sha, new_prefix, new_enc, ttl_ms, account_id, now_us],
        )
        return bool(res[0] == 1)

    async def set_account_fields(self, account_id: str, fields: Mapping[str, str | int]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.account(account_id), mapping=dict(fields))  # type: ignore[arg-type]
            pipe.sadd(self.keys.dirty(self.keys.auth), f"acct:{account_id}")  # for the snapshotter
            await pipe.execute()

    async def change_email(self, account_id: str, email: str, now_us: int) -> bool:
        k = self.keys
        res = await self.scripts.run(
            "accounts_change_email",
            [k.emails, k.account(account_id)],
            [account_id, email.lower(), email, now_us],
        )
        return bool(res[0] == 1)

    # ---- cue names ---------------------------------------------------------------
    async def reserve_name(
        self,
        account_id: str,
        name: str,
        cue_id: str,
        now_us: int,
        *,
        limit_hint: int = -1,
        replace_if: str = "",
    ) -> tuple[Reserve, str]:
        """Reserve ``name`` for ``cue_id``. Returns ("ok", ""), ("taken", current value)
        or ("count", "") when the names alone cannot prove the cue limit is not hit."""
        res = await self.scripts.run(
            "cues_reserve_name",
            [self.keys.cue_names(account_id)],
            [name, f"{cue_id}:{now_us // 1_000_000}", limit_hint, replace_if],  # seconds: 6 B less
        )
        if res[0] == 1:
            return "ok", ""
        if res[0] == -2:
            return "count", ""
        return "taken", str(res[1])

    async def release_name(self, account_id: str, name: str, cue_id: str) -> None:
        await self.scripts.run("cues_release_name", [self.keys.cue_names(account_id)], [name, cue_id])

    async def name_holder(self, account_id: str, name: str) -> str | None:
        value = await self.redis.hget(self.keys.cue_names(account_id), name)
        return None if value is None else str(value)

    # ---- cues --------------------------------------------------------------------
    # A cue is two keys (docs/DESIGN.md "Why a cue is two keys"): its hash holds the small
    # fields (a payload of at most 64 B too, as ``pl``: the scheduler copies it into every
    # execution without a second read), and a string next to it holds the stored config JSON,
    # followed by "\n<payload JSON>" when the payload is longer (compact JSON never contains a
    # raw newline). Readers get one dict: "pl", and "cfg" as the full CueConfig JSON
    # (models.config_json); writers pass "cfg" as models.stored_config.
    @staticmethod
    def _split_cue(fields: Mapping[str, str | int]) -> tuple[dict[str, str | int], str]:
        """(the hash's fields, the config string) of a cue's ``fields``."""
        small = {f: v for f, v in fields.items() if f not in ("cfg", "pl", "id")}
        payload = str(fields["pl"])
        if len(payload.encode()) <= SMALL_VALUE:
            small["pl"] = payload
            return small, str(fields["cfg"])
        return small, f"{fields['cfg']}\n{payload}"

    def _status_indexes(self, p: int, account_id: str) -> list[str]:
        return [self.keys.cue_index(p, account_id, s) for s in CUE_STATUSES]

    @staticmethod
    def _cue_view(cue_id: str, data: Mapping[Any, Any], blob: Any) -> dict[str, str] | None:
        if not data:
            return None
        h = {str(k): str(v) for k, v in data.items()}
        h["id"] = cue_id
        if blob is not None:
            stored, long, payload = str(blob).partition("\n")
            try:
                h["cfg"] = config_json(stored, h.get("sch", ""))
            except ValueError:  # an unreadable ``sch``: no config (the views log a data error)
                pass
            if long:
                h["pl"] = payload
            h.setdefault("pl", "{}")
        return h

    async def create_cue(self, cue_id: str, fields: Mapping[str, str | int]) -> bool:
        """Write a new cue; ``fields`` as models.py names them, ``cfg`` and ``pl`` included."""
        k = self.keys
        p = k.cue_partition(cue_id)
        account_id = str(fields["acct"])
        small, blob = self._split_cue(fields)
        res = await self.scripts.run(
            "cues_create",
            [
                k.cue(cue_id),
                k.cue_config(cue_id),
                k.due(p),
                k.cue_index(p, account_id, str(fields["status"])),
            ],
            [cue_id, fields["ca"], fields["nr"], blob, *_pairs(small)],
        )
        return bool(res[0] == 1)

    async def get_cue(self, cue_id: str) -> dict[str, str] | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.cue(cue_id))
            pipe.get(self.keys.cue_config(cue_id))
            data, blob = await pipe.execute()
        return self._cue_view(cue_id, data, blob)

    async def get_cues(self, cue_ids: Sequence[str]) -> list[dict[str, str] | None]:
        if not cue_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for cue_id in cue_ids:
                pipe.hgetall(self.keys.cue(cue_id))
                pipe.get(self.keys.cue_config(cue_id))
            rows = await pipe.execute()
        return [self._cue_view(c, rows[2 * i], rows[2 * i + 1]) for i, c in enumerate(cue_ids)]

    async def cue_exists(self, cue_id: str) -> bool:
        return bool(await self.redis.exists(self.keys.cue(cue_id)))

    async def count_live_cues(self, account_id: str) -> int:
        """Cues in ``active`` or ``paused`` (what the cue limit counts)."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(k.partitions):
                pipe.zcard(k.cue_index(p, account_id, "active"))
                pipe.zcard(k.cue_index(p, account_id, "paused"))
            counts: list[int] = await pipe.execute()
        return sum(counts)

    async def count_cues(self, account_id: str, status: str) -> int:
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(k.partitions):
                pipe.zcard(k.cue_index(p, account_id, status))
            counts: list[int] = await pipe.execute()
        return sum(counts)

    async def list_cue_ids(
        self, account_id: str, status: str | None, offset: int, limit: int
    ) -> tuple[list[str], int]:
        """A page of cue ids, newest first (ties: id descending), and the total.

        Each index (one per partition and status; all four statuses when ``status`` is None)
        contributes its newest ``offset + limit`` ids; merging those gives the exact page
        because no id past that depth in any index can be on it.
        """
        k = self.keys
        depth = offset + limit
        statuses = CUE_STATUSES if status is None else (status,)
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(k.partitions):
                for st in statuses:
                    key = k.cue_index(p, account_id, st)
                    pipe.zrevrange(key, 0, depth - 1, withscores=True)
                    pipe.zcard(key)
            res = await pipe.execute()
        merged: list[tuple[float, str]] = []
        total = 0
        for i in range(0, len(res), 2):
            merged.extend((score, member) for member, score in res[i])
            total += res[i + 1]
        merged.sort(reverse=True)
        return [member for _, member in merged[offset:depth]], total

    async def update_cue(
        self,
        cue_id: str,
        account_id: str,
        expected_version: str,
        *,
        status: str = "",
        next_run: str = "keep",
        fields: Mapping[str, str | int],
    ) -> Literal["ok", "missing", "conflict"]:
        """Apply a PATCH. ``cfg`` and ``pl`` in ``fields`` go together (both or neither)."""
        k = self.keys
        p = k.cue_partition(cue_id)
        small, blob = self._split_cue(fields) if "cfg" in fields else (dict(fields), "")
        res = await self.scripts.run(
            "cues_update",
            [k.cue(cue_id), k.due(p), *self._status_indexes(p, account_id), k.cue_config(cue_id)],
            [account_id, expected_version, cue_id, status, next_run, blob, *_pairs(small)],
        )
        return "ok" if res[0] == 1 else ("missing" if res[0] == -1 else "conflict")

    async def delete_cue(self, cue_id: str, account_id: str) -> str | None:
        """Delete; returns the cue's name, or None when it is not the account's cue."""
        k = self.keys
        p = k.cue_partition(cue_id)
        res = await self.scripts.run(
            "cues_delete",
            [k.cue(cue_id), k.cue_config(cue_id), k.due(p), *self._status_indexes(p, account_id)],
            [account_id, cue_id],
        )
        return str(res[1]) if res[0] == 1 else None

    async def executions_this_month(self, account_id: str, now_us: int) -> int:
        value = await self.redis.hget(self.keys.usage(account_id, month_of(now_us)), "executions")
        return int(value or 0)

    async def check_partitions(self) -> None:
        """Refuse to run with a partition count other than the one this Redis was set up with."""
        await self.redis.hsetnx(self.keys.meta, "partitions", self.keys.partitions)
        stored = int(await self.redis.hget(self.keys.meta, "partitions") or 0)
        if stored != self.keys.partitions:
            raise ConfigError(
                f"CUEFAST_PARTITIONS={self.keys.partitions} but this Redis holds data for {stored} "
                "partitions; set CUEFAST_PARTITIONS to the stored value"
            )

    # ---- scheduler -------------------------------------------------------------------
    async def due_cues(self, p: int, now_us: int, limit: int) -> list[tuple[str, int, str, str]]:
        """Up to ``limit`` due cues of partition ``p``: (cue id, next run µs, schedule summary,
        account id); summary and account are "" for a cue that is gone."""
        res = await self.scripts.run(
            "schedule_due_cues", [self.keys.due(p)], [now_us, limit, self.keys.part(p) + ":"]
        )
        rows = range(0, len(res), 4)
        return [(str(res[i]), int(float(res[i + 1])), str(res[i + 2]), str(res[i + 3])) for i in rows]

    async def materialize(self, p: int, now_us: int, plan: Sequence[str]) -> tuple[int, int]:
        """Run ``schedule_materialize.lua`` for one partition; ``plan`` holds one line per cue. Returns
        (executions created, cues skipped); executions created blocked by the monthly limit
        (plan flag "b") count in usage ``outcomes.failed`` (§13.1: failed without an outcome)."""
        args: list[str | int] = [now_us, self.keys.part(p) + ":", "\n".join(plan)]
        res = await self.scripts.run("schedule_materialize", [self.keys.due(p), self.keys.outbox(p)], args)
        if len(res) > 2:
            month = month_of(now_us)
            async with self.redis.pipeline(transaction=False) as pipe:
                for i in range(2, len(res), 2):
                    key = self.keys.usage(str(res[i]), month)
                    pipe.hincrby(key, "failed", int(res[i + 1]))
                    pipe.expire(key, 62 * 86400)
                await pipe.execute()
        return int(res[0]), int(res[1])

    async def quota_blocked(self, accounts: Sequence[str], now_us: int) -> set[str]:
        """Which of ``accounts`` are past their monthly execution limit's grace period
        (CONTRACT.md §13.2): the executions counter (mirrored in the account hash as
        ``ex:<month>``) ≥ ``exec_limit`` and 24 h passed since the grace start ``qg:<month>``.
        The first pass that finds an account at its limit starts the grace (HSETNX: racing
        schedulers agree on one start). One pipeline to the auth slot; a second one only when a
        grace period starts."""
        if not accounts:
            return set()
        month = month_of(now_us)
        ex, qg = f"ex:{month}", f"qg:{month}"
        async with self.redis.pipeline(transaction=False) as pipe:
            for acct in accounts:
                pipe.hmget(self.keys.account(acct), ["exec_limit", ex, qg])
            rows = await pipe.execute()
        blocked: set[str] = set()
        starting: list[str] = []
        for acct, (limit, used, grace) in zip(accounts, rows, strict=True):
            if limit is None or int(used or 0) < int(limit):
                continue
            if grace is None:
                starting.append(acct)
            elif now_us >= int(grace) + GRACE_US:
                blocked.add(acct)
        if starting:
            async with self.redis.pipeline(transaction=False) as pipe:
                for acct in starting:
                    key = self.keys.account(acct)
                    pipe.hsetnx(key, qg, now_us)
                    pipe.hdel(key, f"qg:{previous_month(month)}")
                    pipe.hget(key, qg)
                    pipe.sadd(self.keys.dirty(self.keys.auth), f"acct:{acct}")  # for the snapshotter
                res = await pipe.execute()
            for i, acct in enumerate(starting):
                if now_us >= int(res[4 * i + 2]) + GRACE_US:
                    blocked.add(acct)
        return blocked

    async def expire_deadlines(self, p: int, now_us: int, batch: int) -> list[str]:
        """Executions whose outcome deadline passed → outcome_timeout; returns their ids."""
        k = self.keys
        res = await self.scripts.run(
            "schedule_expire_deadlines", [k.deadlines(p)], [k.part(p) + ":", batch, now_us]
        )
        timed_out = [str(v) for v in res[1:]]
        await self.count_failed_executions(p, timed_out)  # usage `outcomes.failed`
        return timed_out

    async def move_due_delayed(self, p: int, now_us: int, batch: int) -> int:
        k = self.keys
        return int(
            await self.scripts.run("schedule_move_delayed", [k.delayed(p), k.outbox(p)], [batch, now_us])
        )

    async def create_execution(
        self,
        *,
        execution_id: str,
        cue_id: str,
        account_id: str,
        scheduled_us: int,
        payload_json: str,
        triggered_by: str,
        replayed_from: str = "",
        idem_digest: str = "",
        fingerprint: str = "",
        response_json: str = "",
        idem_ttl_ms: int = 24 * 3600 * 1000,
        now_us: int,
    ) -> tuple[str, str]:
        """("created", "") | ("repeat", remembered response) | ("conflict", execution id) | ("no_cue", "")."""
        k = self.keys
        p = k.cue_partition(cue_id)
        res = await self.scripts.run(
            "executions_create",
            [
                k.execution(p, execution_id),
                k.cue(cue_id),
                k.cue_executions(cue_id),
                k.execution_index(p, account_id),
                k.outbox(p),
                k.delayed(p),
                k.work(p, account_id),
                k.idempotency(cue_id, idem_digest),
            ],
            [
                execution_id,
                account_id,
                scheduled_us,
                payload_json,
                triggered_by,
                replayed_from,
                fingerprint,
                response_json,
                idem_ttl_ms,
                now_us,
            ],
        )
        code = int(res[0])
        if code == 1:
            return "created", ""
        if code == 2:
            return "repeat", str(res[1])
        if code == -1:
            return "conflict", str(res[1])
        return "no_cue", ""

    async def record_outcome(
        self,
        execution_id: str,
        outcome_json: str,
        success: bool,
        state: str,
        error: str,
        now_us: int,
    ) -> str | Literal["duplicate", "missing"]:
        k = self.keys
        p = k.execution_partition(execution_id)
        if p is None:
            return "missing"
        res = await self.scripts.run(
            "outcomes_record",
            [k.execution(p, execution_id)],
            [outcome_json, 1 if success else 0, state, error, k.part(p) + ":", now_us],
        )
        if res[0] == -1:
            return "duplicate"
        if res[0] == -2:
            return "missing"
        return str(res[1])

    async def execution_cas(
        self, execution_id: str, expected_outcome: str, expected_state: str, fields: Mapping[str, str | int]
    ) -> int:
        k = self.keys
        p = k.execution_partition(execution_id)
        if p is None:
            return -1
        return int(
            await self.scripts.run(
                "executions_cas",
                [k.execution(p, execution_id)],
                [expected_outcome, expected_state, *_pairs(fields)],
            )
        )

    async def purge_cue_executions(self, cue_id: str, account_id: str, batch: int = 500) -> int:
        """Remove a deleted cue's executions in bounded batches."""
        k = self.keys
        p = k.cue_partition(cue_id)
        removed = 0
        while True:
            n = int(
                await self.scripts.run(
                    "executions_purge_cue",
                    [
                        k.cue_executions(cue_id),
                        k.execution_index(p, account_id),
                        k.leases(p),
                        k.retries(p),
                        k.delayed(p),
                        k.work(p, account_id),
                    ],
                    [k.part(p) + ":", batch],
                )
            )
            removed += n
            if n < batch:
                return removed

    async def move_due_retries(self, p: int, now_us: int, batch: int) -> int:
        k = self.keys
        return int(
            await self.scripts.run(
                "schedule_move_retries", [k.retries(p), k.outbox(p)], [k.part(p) + ":", batch, now_us]
            )
        )

    # ---- consumer groups (outbox, notices) ----------------------------------------------
    async def ensure_groups(self, streams: Sequence[str], group: str) -> None:
        """Create ``group`` on these streams (MKSTREAM; from the stream's start, so entries
        written before it are read too); an existing group is left as it is. One round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in streams:
                pipe.xgroup_create(key, group, id="0", mkstream=True)
            results = await pipe.execute(raise_on_error=False)
        for res in results:
            if isinstance(res, Exception) and "BUSYGROUP" not in str(res):
                raise res

    async def _group_missing(self, streams: Sequence[str], group: str) -> None:
        log.warning(
            "consumer group %s missing on %d streams (Redis lost its data, or was restored): recreated",
            group,
            len(streams),
        )
        await self.ensure_groups(streams, group)

    async def read_group(
        self, group: str, consumer: str, streams: Sequence[str], count: int, block_ms: int | None
    ) -> Any:
        """XREADGROUP of new entries (">") on these streams. A stream or group that no longer
        exists (NOGROUP: Redis lost its data, FLUSHDB, ``cuefast restore``; UNBLOCKED: it
        vanished while the read blocked) is recreated and the read made again, so a reader
        never stops on it. Every group read goes through here or ``claim_group``."""
        ids: dict[Any, Any] = dict.fromkeys(streams, ">")
        try:
            return await self.redis.xreadgroup(group, consumer, ids, count=count, block=block_ms)
        except ResponseError as exc:  # UNBLOCKED: a stream was deleted while this read blocked
            if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                raise
        await self._group_missing(streams, group)
        return await self.redis.xreadgroup(group, consumer, ids, count=count, block=block_ms)

    async def claim_group(
        self, group: str, consumer: str, streams: Sequence[str], min_idle_ms: int, count: int
    ) -> list[Any]:
        """XAUTOCLAIM on each stream (one pipeline): the entries another consumer read and left
        idle for ``min_idle_ms``, per stream (as XAUTOCLAIM's second value). Streams or groups
        that no longer exist are recreated (nothing to claim there)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in streams:
                pipe.xautoclaim(key, group, consumer, min_idle_ms, "0-0", count=count)
            rows: list[Any] = await pipe.execute(raise_on_error=False)
        missing: list[str] = []
        out: list[Any] = []
        for key, res in zip(streams, rows, strict=True):
            if isinstance(res, ResponseError) and str(res).startswith("NOGROUP"):
                missing.append(key)
                out.append([])
            elif isinstance(res, Exception):
                raise res
            else:
                out.append(res[1])
        if missing:
            await self._group_missing(missing, group)
        return out

    # ---- dispatcher ------------------------------------------------------------------
    async def ensure_dispatch_groups(self) -> None:
        await self.ensure_groups([self.keys.outbox(p) for p in range(self.keys.partitions)], DISPATCH_GROUP)

    async def read_outbox(self, consumer: str, count: int, block_ms: int) -> list[tuple[int, str, str]]:
        """New outbox entries for this consumer: (partition, entry id, execution id)."""
        streams = [self.keys.outbox(p) for p in range(self.keys.partitions)]
        return self._entries(await self.read_group(DISPATCH_GROUP, consumer, streams, count, block_ms))

    async def reclaim_outbox(self, consumer: str, min_idle_ms: int, count: int) -> list[tuple[int, str, str]]:
        """Entries another consumer read but never finished (it died): take them over."""
        streams = [self.keys.outbox(p) for p in range(self.keys.partitions)]
        out: list[tuple[int, str, str]] = []
        for p, entries in enumerate(
            await self.claim_group(DISPATCH_GROUP, consumer, streams, min_idle_ms, count)
        ):
            for entry_id, fields in entries:
                if fields and "e" in fields:
                    out.append((p, str(entry_id), str(fields["e"])))
        return out

    def _entries(self, res: Any) -> list[tuple[int, str, str]]:
        out: list[tuple[int, str, str]] = []
        index = {self.keys.outbox(p): p for p in range(self.keys.partitions)}
        for stream, entries in res or []:
            p = index[str(stream)]
            for entry_id, fields in entries:
                out.append((p, str(entry_id), str(fields.get("e", ""))))
        return out

    async def deliver_start(
        self, p: int, execution_ids: Sequence[str], now_us: int, *, timeout_s: int, stale_s: int
    ) -> list[list[Any] | Literal["gone", "busy"]]:
        """Lease a batch of webhook executions for one attempt each (one script call).

        Per execution: the attempt's facts (cue id, scheduled_for, attempts, payload, cue cfg,
        cue name, account, triggered_by, lease expiry µs, timeout s), or "gone" (drop its
        stream entry) or "busy" (a live attempt elsewhere holds it: leave the entry pending).
        ``timeout_s`` is the timeout of a cue without ``delivery``, ``stale_s`` the lease floor:
        each lease is max(stale_s, the attempt's own timeout + 60 s)."""
        return (
            await self.deliver_start_many({p: execution_ids}, now_us, timeout_s=timeout_s, stale_s=stale_s)
        )[p]

    async def deliver_start_many(
        self, batches: Mapping[int, Sequence[str]], now_us: int, *, timeout_s: int, stale_s: int
    ) -> dict[int, list[list[Any] | Literal["gone", "busy"]]]:
        """``deliver_start`` for several partitions' batches in one pipeline."""
        k = self.keys
        parts = [p for p, eids in batches.items() if eids]
        replies = await self.scripts.run_many(
            [
                (
                    "delivery_start",
                    [k.leases(p)],
                    [timeout_s, stale_s, k.part(p) + ":", now_us, *batches[p]],
                )
                for p in parts
            ]
        )
        result: dict[int, list[list[Any] | Literal["gone", "busy"]]] = {p: [] for p in batches}
        for p, res in zip(parts, replies, strict=True):
            out = result[p]
            for i in range(0, len(res), 12):
                code = int(res[i])
                if code == 1:
                    row = [*res[i + 1 : i + 9], int(res[i + 10]), int(res[i + 11])]
                    row[4] = config_json(row[4], res[i + 9])  # the stored config + the cue's sch
                    out.append(row)
                else:
                    out.append("busy" if code == -1 else "gone")
        return result

    async def deliver_extend(
        self, p: int, leases: Sequence[tuple[str, int, int]], now_us: int
    ) -> list[int | None]:
        """Lengthen leased attempts' leases (one script call): each (execution id, lease expiry
        µs it holds, new expiry µs) → the lease it now holds, or None when it no longer held
        that lease (taken over or finished: it must not be sent)."""
        if not leases:
            return []
        args: list[str | int] = [now_us]
        for eid, held, new in leases:
            args += [eid, held, new]
        res = await self.scripts.run("delivery_extend", [self.keys.leases(p)], args)
        return [int(v) if v else None for v in res]

    async def webhook_secrets(self, account_ids: Sequence[str]) -> dict[str, str]:
        """Current webhook secrets of these accounts, one pipeline."""
        ids = list(dict.fromkeys(account_ids))
        async with self.redis.pipeline(transaction=False) as pipe:
            for account_id in ids:
                pipe.hget(self.keys.account(account_id), "wh_secret")
            rows = await pipe.execute()
        return {a: str(v) for a, v in zip(ids, rows, strict=True) if v is not None}

    async def deliver_finish_many(
        self, batches: Mapping[int, Sequence[Sequence[str | int]]], now_us: int
    ) -> dict[int, list[tuple[str | None, bool]]]:
        """Record attempt results, one ``deliver_finish`` script call per partition, all in one
        pipeline; per attempt (its new status, whether the response body's outcome was
        recorded). The status is "superseded" when the attempt no longer held its lease (fenced
        out: nothing recorded), or None when the execution was no longer in flight. Each result
        row holds: execution id, "ok"/"fail", http status, error, next retry µs, outcome
        deadline µs, stream entry id, the lease expiry µs the attempt holds, then the body's
        outcome (JSON, "1"/"0", outcome_state, error) or four "" ("" for absent values)."""
        k = self.keys
        parts = [p for p, rows in batches.items() if rows]
        calls: list[Call] = []
        for p in parts:
            args: list[str | int] = [k.part(p) + ":", now_us]
            for row in batches[p]:
                args.extend(row)
            calls.append(("delivery_finish", [k.leases(p), k.retries(p), k.outbox(p)], args))
        replies = await self.scripts.run_many(calls)
        result: dict[int, list[tuple[str | None, bool]]] = {p: [] for p in batches}
        for p, res in zip(parts, replies, strict=True):
            result[p] = [(str(res[i]) if res[i] else None, bool(res[i + 1])) for i in range(0, len(res), 2)]
        return result

    async def deliver_release(
        self, p: int, attempts: Sequence[tuple[str, str, int, int]], now_us: int
    ) -> list[str | None]:
        """Hand back leased attempts not sent (one script call): each (execution id, stream
        entry id, lease expiry µs it holds, re-queue at µs) goes back to pending / retry_ready
        with no attempt counted, re-queued at that time (≤ now: a fresh outbox entry at once).
        Per attempt its restored status, or None when it no longer held that lease."""
        if not attempts:
            return []
        k = self.keys
        args: list[str | int] = [k.part(p) + ":", now_us]
        for eid, entry_id, lease_until, requeue_at in attempts:
            args += [eid, entry_id, lease_until, requeue_at]
        res = await self.scripts.run("delivery_release", [k.leases(p), k.outbox(p), k.delayed(p)], args)
        return [str(v) if v else None for v in res]

    async def count_executions(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Add to monthly executions counters: {(account id, "YYYY-MM"): n}, one pipeline."""
        if not counts:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            self._add_usage(pipe, counts, "executions")
            for (account_id, month), n in counts.items():
                self._mirror_executions(pipe, account_id, month, n)
            await pipe.execute()

    async def ack(self, p: int, entry_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.keys.outbox(p), DISPATCH_GROUP, entry_id)
            pipe.xdel(self.keys.outbox(p), entry_id)
            await pipe.execute()

    async def due_work(self, now_us: int) -> tuple[dict[int, frozenset[str]], int | None]:
        """What the scheduler has to do now, from the head of every partition's timed sets in
        one pipeline: {partition: due steps} (steps named in ``SCHEDULER_STEPS``; lease expiries
        and missed-claim timeouts only when worker steps run) and µs until the earliest head,
        due or not (None: nothing scheduled)."""
        k = self.keys
        window = self.unclaimed_window_us
        sets = [("cues", k.due), ("retries", k.retries), ("delayed", k.delayed), ("deadlines", k.deadlines)]
        if window is not None:  # unclaimed entries are due one window after their score
            sets += [("leases", k.claims), ("unclaimed", k.unclaimed)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(k.partitions):
                for _, key in sets:
                    pipe.zrange(key(p), 0, 0, withscores=True)
            rows = await pipe.execute()
        due: dict[int, frozenset[str]] = {}
        earliest: int | None = None
        for p in range(k.partitions):
            steps: set[str] = set()
            for (step, _), row in zip(sets, rows[p * len(sets) : (p + 1) * len(sets)], strict=True):
                if not row:
                    continue
                at = int(float(row[0][1])) + ((window or 0) if step == "unclaimed" else 0)
                earliest = at if earliest is None else min(earliest, at)
                if at <= now_us:
                    steps.add(step)
            if steps:
                due[p] = frozenset(steps)
        return due, None if earliest is None else earliest - now_us

    async def record_snapshot(self, began_us: int) -> None:
        """A snapshot that began at ``began_us`` is in PostgreSQL (``/metrics`` snapshot lag)."""
        await self.redis.hset(self.keys.snapshot, "last_ok_us", began_us)

    async def record_poller(self, now_us: int, cues: int, duration_ms: int) -> None:
        await self.redis.hset(
            self.keys.poller,
            mapping={"last_run": now_us, "cues_last_cycle": cues, "cycle_duration_ms": duration_ms},
        )

    async def any_worker_alive(self, account_id: str, now_us: int, alive_seconds: int) -> bool:
        alive: int = await self.redis.zcount(
            self.keys.workers(account_id), now_us - alive_seconds * 1_000_000, "+inf"
        )
        return alive > 0

    async def get_cue_with_executions(
        self, cue_id: str, limit: int, offset: int
    ) -> tuple[dict[str, str] | None, list[str], int]:
        """The cue hash, a page of its execution ids (newest first) and their total: one round trip."""
        key = self.keys.cue_executions(cue_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.cue(cue_id))
            pipe.get(self.keys.cue_config(cue_id))
            pipe.zrevrange(key, offset, offset + limit - 1)
            pipe.zcard(key)
            data, blob, ids, total = await pipe.execute()
        return self._cue_view(cue_id, data, blob), list(ids), int(total)

    async def get_execution(self, execution_id: str) -> dict[str, str] | None:
        p = self.keys.execution_partition(execution_id)
        if p is None:
            return None
        data = await self.redis.hgetall(self.keys.execution(p, execution_id))
        return {str(k): str(v) for k, v in data.items()} or None

    async def get_executions(self, execution_ids: Sequence[str]) -> list[dict[str, str] | None]:
        if not execution_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for eid in execution_ids:
                p = self.keys.execution_partition(eid)
                pipe.hgetall(self.keys.execution(p if p is not None else 0, eid))
            rows = await pipe.execute()
        return [{str(k): str(v) for k, v in row.items()} or None for row in rows]

    async def index_members(self, index_keys: Sequence[str]) -> list[tuple[float, str]]:
        """Every member of these zsets as (score, member), newest first (ties: id desc)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in index_keys:
                pipe.zrange(key, 0, -1, withscores=True)
            res = await pipe.execute()
        merged = [(float(row[1]), str(row[0])) for rows in res for row in rows]
        merged.sort(reverse=True)
        return merged

    async def execution_fields(
        self, execution_ids: Sequence[str], fields: Sequence[str]
    ) -> list[list[str | None] | None]:
        """HMGET ``fields`` of each execution (None where it is gone), pipelined in chunks."""
        out: list[list[str | None] | None] = []
        for i in range(0, len(execution_ids), 1000):
            chunk = execution_ids[i : i + 1000]
            async with self.redis.pipeline(transaction=False) as pipe:
                for eid in chunk:
                    p = self.keys.execution_partition(eid)
                    pipe.hmget(self.keys.execution(p if p is not None else 0, eid), list(fields))
                rows = await pipe.execute()
            for row in rows:
                out.append(
                    None if all(v is None for v in row) else [None if v is None else str(v) for v in row]
                )
        return out

    async def execution_exists(self, execution_id: str) -> bool:
        p = self.keys.execution_partition(execution_id)
        if p is None:
            return False
        return bool(await self.redis.exists(self.keys.execution(p, execution_id)))

    # ---- alerts and notices (docs/DESIGN.md "Alerts") ----------------------------------
    async def alerts_page(
        self, account_id: str, alert_type: str | None, since_us: int | None, offset: int, limit: int
    ) -> tuple[list[dict[str, str]], int]:
        """An account's alerts newest first (ties: id descending) and the filtered total, merged
        over the per-partition indexes: two round trips (indexes, then the page's hashes)."""
        k = self.keys
        low: str | int = "-inf" if since_us is None else since_us
        depth = offset + limit
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(k.partitions):
                index = k.alert_index(p, account_id, alert_type)
                pipe.zrevrangebyscore(index, "+inf", low, start=0, num=depth, withscores=True)
                pipe.zcount(index, low, "+inf")
            res = await pipe.execute()
        merged: list[tuple[float, str, int]] = []
        total = 0
        for p in range(k.partitions):
            merged.extend((float(score), str(member), p) for member, score in res[2 * p])
            total += int(res[2 * p + 1])
        merged.sort(reverse=True)
        page = merged[offset:depth]
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, alert_id, p in page:
                pipe.hgetall(k.alert(p, alert_id))
            rows = await pipe.execute()
        out = [dict(row, id=alert_id) for (_, alert_id, _), row in zip(page, rows, strict=True) if row]
        return out, total

    async def get_alert(self, p: int, alert_id: str) -> dict[str, str] | None:
        row = await self.redis.hgetall(self.keys.alert(p, alert_id))
        return {**{str(f): str(v) for f, v in row.items()}, "id": alert_id} if row else None

    async def notice_targets(self, account_id: str) -> tuple[str, str, str]:
        """(alert webhook URL, alert secret, e-mail) of an account ("" when absent)."""
        row = await self.redis.hmget(self.keys.account(account_id), ["alert_url", "alert_secret", "email"])
        return (str(row[0] or ""), str(row[1] or ""), str(row[2] or ""))

    async def count_mail(self, account_id: str, hour: int) -> int:
        """Count one on_failure e-mail in the account's clock hour; returns the count so far."""
        key = self.keys.mail_count(account_id, hour)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 3600)
            n, _ = await pipe.execute()
        return int(n)

    async def ensure_notice_groups(self) -> None:
        await self.ensure_groups([self.keys.notices(p) for p in range(self.keys.partitions)], NOTICE_GROUP)

    def _notice_entries(self, p: int, entries: Any) -> list[tuple[int, str, str, str, int, int]]:
        return [
            (
                p,
                str(entry_id),
                str(f.get("k", "")),
                str(f.get("i", "")),
                int(f.get("n") or 1),
                int(f.get("t") or 0),
            )
            for entry_id, f in entries or []
            if f
        ]

    async def read_notices(
        self, consumer: str, count: int, block_ms: int
    ) -> list[tuple[int, str, str, str, int, int]]:
        """New notices for this consumer: (partition, entry id, kind, id, attempt, event µs or 0)."""
        k = self.keys
        streams = [k.notices(p) for p in range(k.partitions)]
        block = block_ms if block_ms > 0 else None  # 0 would block forever
        res = await self.read_group(NOTICE_GROUP, consumer, streams, count, block)
        index = {k.notices(p): p for p in range(k.partitions)}
        out: list[tuple[int, str, str, str, int, int]] = []
        for stream, entries in res or []:
            out.extend(self._notice_entries(index[str(stream)], entries))
        return out

    async def reclaim_notices(
        self, consumer: str, min_idle_ms: int, count: int
    ) -> list[tuple[int, str, str, str, int, int]]:
        """Notices another sender read but never finished (it died): take them over."""
        k = self.keys
        streams = [k.notices(p) for p in range(k.partitions)]
        out: list[tuple[int, str, str, str, int, int]] = []
        for p, entries in enumerate(
            await self.claim_group(NOTICE_GROUP, consumer, streams, min_idle_ms, count)
        ):
            out.extend(self._notice_entries(p, entries))
        return out

    async def finish_notice(self, p: int, entry_id: str, retry: str = "", due_us: int = 0) -> None:
        """Acknowledge a notice entry; ``retry`` ("<kind>|<id>|<attempt>") schedules it again."""
        k = self.keys
        await self.scripts.run(
            "notices_finish", [k.notices(p), k.notice_retries(p)], [entry_id, retry, due_us]
        )

    async def move_due_notices(self, now_us: int, batch: int = 500) -> int:
        """Retries that are due → back onto each partition's notices stream (one round trip)."""
        k = self.keys
        res = await self.scripts.run_many(
            [
                ("notices_move_due", [k.notice_retries(p), k.notices(p)], [now_us, batch])
                for p in range(k.partitions)
            ]
        )
        return sum(int(n) for n in res)

    # ---- snapshots, retention and restore ----------------------------------------------
    async def snapshot_lease(self, mode: Literal["acquire", "renew", "release"], token: str, ms: int) -> bool:
        """The one-active-snapshotter lease: acquire (SET NX PX), renew or release it."""
        k = self.keys
        return bool(await self.scripts.run("snapshots_lease", [k.snapshot_lease], [mode, token, ms]) == 1)

    async def snapshot_request(
        self, mode: Literal["ask", "read", "served"], number: int = 0
    ) -> tuple[int, int]:
        """On-demand snapshots: ask for one (returns its number first), read, or record that a
        snapshot which began after request ``number`` was made has completed. Returns (requests
        made, highest request served)."""
        res = await self.scripts.run("snapshots_request", [self.keys.snapshot_requests], [mode, number])
        return int(res[0]), int(res[1])

    async def snapshot_take(self, slot: str, batch: int) -> list[tuple[str, str]]:
        """Dirty members of ``slot`` to snapshot now (an uncommitted earlier batch first), each
        with its current hash as one JSON object (``""`` when it is gone): one script call."""
        k = self.keys
        res = await self.scripts.run("snapshots_take", [k.dirty(slot), k.dirty_processing(slot)], [batch])
        return list(zip(res[0::2], res[1::2], strict=True))

    async def snapshot_commit(self, slot: str, members: Sequence[str]) -> None:
        """The batch is in PostgreSQL: drop it from the processing set."""
        key = self.keys.dirty_processing(slot)
        for i in range(0, len(members), 5000):
            await self.redis.srem(key, *members[i : i + 5000])

    async def dirty_count(self) -> int:
        """Members waiting for a snapshot (dirty + in flight) over every slot."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for slot in k.slots():
                pipe.scard(k.dirty(slot))
                pipe.scard(k.dirty_processing(slot))
            return sum(int(n) for n in await pipe.execute())

    async def mark_dirty(self, members_by_slot: Mapping[str, Sequence[str]]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for slot, members in members_by_slot.items():
                if members:
                    pipe.sadd(self.keys.dirty(slot), *members)
            await pipe.execute()

    async def trim_executions(
        self, rows_by_p: Mapping[int, Sequence[tuple[str, int, str]]]
    ) -> tuple[list[str], list[str]]:
        """Retention, the Redis half: remove finished executions whose snapshotted (id, updated
        µs, status) is still current; one ``snapshots_trim.lua`` call per partition, one round trip.
        The removed (and already gone) ids are handed off (``Keys.trim_handoff``) in the same
        step, until ``trim_confirmed``. Returns (removed or already gone, kept because they
        changed)."""
        k = self.keys
        await self.redis.set(k.trim_pending, 1)  # before any hand-off: listings read the sets
        calls: list[Call] = []
        for p, rows in rows_by_p.items():
            slot = k.part(p)
            args: list[str | int | float] = [slot + ":"]
            for eid, ua, st in rows:
                args += [eid, ua, st]
            keys = [k.dirty(slot), k.dirty_processing(slot), k.trim_handoff(slot)]
            calls.append(("exec_trim", keys, args))
        gone: list[str] = []
        kept: list[str] = []
        for res in await self.scripts.run_many(calls):
            vals = [str(v) for v in res]
            cut = vals.index("|")
            gone += vals[:cut]
            kept += vals[cut + 1 :]
        return gone, kept

    async def trim_handoff(self) -> dict[int, list[str]]:
        """Executions trimmed from Redis whose PostgreSQL rows are not yet marked history, per
        partition (at most one trim batch: the snapshotter confirms each before the next)."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(k.partitions):
                pipe.smembers(k.trim_handoff(k.part(p)))
            res = await pipe.execute()
        return {p: sorted(str(m) for m in ids) for p, ids in enumerate(res) if ids}

    async def trim_confirmed(self, handed: Mapping[int, Sequence[str]]) -> None:
        """These hand-offs are history rows in PostgreSQL now: drop them (and the pending flag once
        every set is empty)."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for p, ids in handed.items():
                for i in range(0, len(ids), 5000):
                    pipe.srem(k.trim_handoff(k.part(p)), *ids[i : i + 5000])
            for p in range(k.partitions):
                pipe.scard(k.trim_handoff(k.part(p)))
            res = await pipe.execute()
        if sum(int(n) for n in res[len(res) - k.partitions :]) == 0:
            await self.redis.delete(k.trim_pending)

    async def history_state(self, account_id: str) -> tuple[bool, list[str]]:
        """Whether the account has executions only PostgreSQL holds, and the ids a trim has
        removed from Redis whose rows are not yet marked history (any account's; usually none)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(self.keys.has_history(account_id))
            pipe.exists(self.keys.trim_pending)
            has, pending = await pipe.execute()
        if not has or not pending:
            return bool(has), []
        return True, [eid for ids in (await self.trim_handoff()).values() for eid in ids]

    async def restore_cues(self, batches: Sequence[tuple[int, Sequence[tuple[str, str]]]]) -> int:
        """Write cue hashes (id, JSON) back with their indexes; (partition, rows) per script call."""
        k = self.keys
        calls: list[Call] = []
        for p, rows in batches:
            args: list[str | int | float] = [k.part(p) + ":"]
            for cue_id, doc in rows:
                args += [cue_id, doc]
            calls.append(("restore_cues", [k.due(p)], args))
        return sum(int(n) for n in await self.scripts.run_many(calls))

    async def restore_executions(self, batches: Sequence[tuple[int, Sequence[str]]], now_us: int) -> int:
        """Write execution hashes (JSON) back with their indexes; (partition, docs) per script call."""
        k = self.keys
        res = await self.scripts.run_many(
            [("restore_executions", [k.outbox(p)], [k.part(p) + ":", now_us, *docs]) for p, docs in batches]
        )
        return sum(int(n) for n in res)

    async def mark_history(self, account_ids: Iterable[str]) -> None:
        """These accounts have executions only PostgreSQL holds (listings then read it too)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for account_id in account_ids:
                pipe.set(self.keys.has_history(account_id), 1)
            await pipe.execute()

    async def has_history(self, account_id: str) -> bool:
        return bool(await self.redis.exists(self.keys.has_history(account_id)))

    async def keyspace_empty(self) -> bool:
        """No tenant data under this install's prefix (restore refuses to write over data): no
        account maps, and no partition with due times, an outbox or unsnapshotted changes. Keys a
        running API writes on its own (rate-limit windows, meta, the poller) do not count."""
        k = self.keys
        names = [k.api_keys, k.emails, k.slugs, k.dirty(k.auth)]
        for p in range(k.partitions):
            names += [k.due(p), k.outbox(p), k.dirty(k.part(p)), k.retries(p), k.delayed(p)]
        return int(await self.redis.exists(*names)) == 0

    # ---- worker transport ----------------------------------------------------------
    unclaimed_window_us: int | None = None
    """CUEFAST_WORKER_UNCLAIMED_SECONDS in µs, set by a scheduler that runs the worker steps
    (``due_work`` then also wakes it for lease expiries and missed-claim timeouts)."""

    async def peek_claimable(
        self, index_keys: Sequence[str], now_us: int, limit: int
    ) -> list[tuple[float, str, int]]:
        """The oldest ``limit`` available entries over the index keys: (scheduled_for µs,
        execution id, index of the key in ``index_keys``), oldest first (ties: id ascending)."""
        return (await self.peek_work(index_keys, now_us, limit))[0]

    async def peek_work(
        self, index_keys: Sequence[str], now_us: int, limit: int
    ) -> tuple[list[tuple[float, str, int]], list[int | None]]:
        """``peek_claimable``, and per key the score of its first entry not yet available
        (µs; None when none, or when the key has ``limit`` available entries): one command per
        key (the oldest ``limit`` entries, whatever their score), one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in index_keys:
                pipe.zrangebyscore(key, "-inf", "+inf", start=0, num=limit, withscores=True)
            res = await pipe.execute()
        merged: list[tuple[float, str, int]] = []
        later: list[int | None] = []
        for i, rows in enumerate(res):
            first_later: int | None = None
            for eid, score in rows:
                if score <= now_us:
                    merged.append((float(score), str(eid), i))
                else:
                    first_later = int(score)
                    break
            later.append(first_later)
        merged.sort()
        return merged[:limit], later

    def _claim_call(
        self,
        p: int,
        account_id: str,
        worker_id: str,
        lease_us: int,
        now_us: int,
        index_key: str,
        count: int,
        ids: Sequence[str],
    ) -> tuple[str, list[str], list[str | int | float]]:
        k = self.keys
        return (
            "claims_claim",
            [index_key, k.claims(p), k.claimed(p, account_id)],
            [k.part(p) + ":", account_id, worker_id, lease_us, count, now_us, *ids],
        )

    async def claim(
        self,
        requests: Sequence[tuple[int, str, int, Sequence[str]]],
        account_id: str,
        worker_id: str,
        lease_us: int,
        now_us: int,
    ) -> list[list[list[Any]]]:
        """One ``claims_claim.lua`` call per request (partition, index key, count, ids), all in one round
        trip. Per request: rows ``[code, id, cue id, cue name, scheduled_for, attempt, payload,
        task, lease expiry]`` (code 1 claimed, -1 not found, -2 not claimable)."""
        res = await self.scripts.run_many(
            [
                self._claim_call(p, account_id, worker_id, lease_us, now_us, key, count, ids)
                for p, key, count, ids in requests
            ]
        )
        return [[list(r[i : i + 9]) for i in range(0, len(r), 9)] for r in res]

    async def heartbeat(
        self, p: int, account_id: str, worker_id: str, default_lease_us: int, now_us: int, ids: Sequence[str]
    ) -> list[tuple[int, int | None]]:
        """Extend leases; per id (code, new lease expiry µs): 1 ok, -1 not found, -2 not claimed,
        -3 another worker's."""
        k = self.keys
        res = await self.scripts.run(
            "claims_heartbeat",
            [k.claims(p)],
            [k.part(p) + ":", account_id, worker_id, default_lease_us, now_us, *ids],
        )
        return [(int(res[i]), int(res[i + 1]) if res[i + 1] else None) for i in range(0, len(res), 2)]

    async def release(self, p: int, account_id: str, worker_id: str, now_us: int, ids: Sequence[str]) -> int:
        k = self.keys
        return int(
            await self.scripts.run(
                "claims_release",
                [k.claims(p), k.claimed(p, account_id)],
                [k.part(p) + ":", account_id, worker_id, now_us, *ids],
            )
        )

    async def lease_due(self, p: int, batch: int, now_us: int) -> list[list[str]]:
        """Expired worker claims: [id, account, worker, claimed_at, last heartbeat, attempts, cue id,
        lease expiry, triggered_by, lease µs] each."""
        k = self.keys
        res = await self.scripts.run("claims_expired_leases", [k.claims(p)], [k.part(p) + ":", batch, now_us])
        return [[str(v) for v in res[i : i + 10]] for i in range(0, len(res), 10)]

    async def lease_reap(self, p: int, decisions: Sequence[tuple[str, str, str]], now_us: int) -> list[str]:
        if not decisions:
            return []
        k = self.keys
        args: list[str | int] = [k.part(p) + ":", now_us]
        for row in decisions:
            args.extend(row)
        return [str(v) for v in await self.scripts.run("claims_reap_leases", [k.claims(p)], args)]

    async def missed(self, p: int, cutoff_us: int, batch: int, now_us: int) -> tuple[int, list[list[str]]]:
        """(entries taken, [id, cue id, account, attempts] of each execution that became missed)."""
        k = self.keys
        res = await self.scripts.run(
            "claims_expire_unclaimed", [k.unclaimed(p)], [k.part(p) + ":", cutoff_us, batch, now_us]
        )
        return int(res[0]), [[str(v) for v in res[i : i + 4]] for i in range(1, len(res), 4)]

    async def arm_deadlines(self, p: int, pairs: Sequence[tuple[str, int]], now_us: int) -> int:
        if not pairs:
            return 0
        k = self.keys
        args: list[str | int] = [k.part(p) + ":", now_us]
        for eid, od in pairs:
            args += [eid, od]
        return int(await self.scripts.run("claims_arm_deadlines", [k.deadlines(p)], args))

    async def cue_fields(self, cue_ids: Sequence[str], fields: Sequence[str]) -> dict[str, list[str | None]]:
        """``fields`` of each cue, one pipeline (absent cues: all None). ``cfg`` is the full
        config JSON and ``pl`` the payload wherever the cue keeps them (its hash, or the config
        string beside it: "Why a cue is two keys")."""
        ids = list(dict.fromkeys(cue_ids))
        if not ids:
            return {}
        two_keys = "cfg" in fields or "pl" in fields
        names = [f for f in fields if f != "cfg"] + (["sch", "pl"] if two_keys else [])
        async with self.redis.pipeline(transaction=False) as pipe:
            for cue_id in ids:
                pipe.hmget(self.keys.cue(cue_id), names)
                if two_keys:
                    pipe.get(self.keys.cue_config(cue_id))
            rows = await pipe.execute()
        step = 2 if two_keys else 1
        out: dict[str, list[str | None]] = {}
        for i, cue_id in enumerate(ids):
            got = dict(zip(names, rows[i * step], strict=True))
            blob = rows[i * step + 1] if two_keys else None
            if all(v is None for v in got.values()) and blob is None:
                out[cue_id] = [None] * len(fields)
                continue
            if two_keys and blob is not None:
                stored, long, payload = str(blob).partition("\n")
                got["cfg"] = config_json(stored, str(got.get("sch") or ""))
                got["pl"] = payload if long else (got.get("pl") or "{}")
            out[cue_id] = [None if got.get(f) is None else str(got[f]) for f in fields]
        return out

    async def worker_last_seen(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Last registry heartbeat µs of (account, worker id) pairs that are registered."""
        pairs = list(dict.fromkeys(pairs))
        if not pairs:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for account_id, worker_id in pairs:
                pipe.zscore(self.keys.workers(account_id), worker_id)
            rows = await pipe.execute()
        return {pair: int(score) for pair, score in zip(pairs, rows, strict=True) if score is not None}

    async def worker_heartbeat(
        self,
        account_id: str,
        worker_id: str,
        handlers_json: str,
        now_us: int,
        *,
        limit: int,
        expire_us: int,
        alive_us: int,
    ) -> int | None:
        """Upsert a registry entry; its registration µs, or None when the worker is new and the
        account already has ``limit`` workers, all alive (``workers_heartbeat.lua``)."""
        k = self.keys
        res = await self.scripts.run(
            "workers_heartbeat",
            [k.workers(account_id), k.worker_info(account_id)],
            [worker_id, handlers_json, limit, expire_us, alive_us, now_us],
        )
        if int(res[0]) != 1:
            return None
        async with self.redis.pipeline(transaction=False) as pipe:  # the install-wide view (/health)
            pipe.zadd(k.workers_seen, {f"{account_id}|{worker_id}": now_us})
            pipe.zremrangebyscore(k.workers_seen, "-inf", f"({now_us - 86_400_000_000}")
            await pipe.execute()
        return int(res[1])

    async def workers_alive(self, now_us: int, alive_seconds: int) -> tuple[int, int | None]:
        """Pull workers of every account alive now, and the latest heartbeat µs (None: none)."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcount(k.workers_seen, now_us - alive_seconds * 1_000_000, "+inf")
            pipe.zrevrange(k.workers_seen, 0, 0, withscores=True)
            alive, latest = await pipe.execute()
        return int(alive), (int(latest[0][1]) if latest else None)

    async def stale_attempts(self, now_us: int) -> int:
        """Webhook attempts whose lease expired (a dispatcher died mid-delivery, §11.4)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(self.keys.partitions):
                pipe.zcount(self.keys.leases(p), "-inf", now_us)
            return sum(int(n) for n in await pipe.execute())

    async def list_workers(self, account_id: str, since_us: int) -> list[tuple[str, int, int, str]]:
        """(worker id, last heartbeat µs, registered µs, handlers JSON) of the workers seen at or
        after ``since_us``, latest heartbeat first."""
        k = self.keys
        res: Any = await self.redis.zrevrangebyscore(k.workers(account_id), "+inf", since_us, withscores=True)
        ranked = [(str(worker_id), score) for worker_id, score in res]
        if not ranked:
            return []
        info = await self.redis.hmget(k.worker_info(account_id), [worker_id for worker_id, _ in ranked])
        out: list[tuple[str, int, int, str]] = []
        for (worker_id, score), held in zip(ranked, info, strict=True):
            since, _, handlers = str(held or "").partition("|")
            out.append((worker_id, int(score), int(since or score), handlers or "null"))
        return out

    async def delete_worker(self, account_id: str, worker_id: str) -> bool:
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(k.workers(account_id), worker_id)
            pipe.hdel(k.worker_info(account_id), worker_id)
            removed, _ = await pipe.execute()
        await self.redis.zrem(k.workers_seen, f"{account_id}|{worker_id}")
        return bool(removed)

    async def signal_positions(self) -> list[str]:
        """The last entry id of every partition's work signal stream ("0-0" when empty)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(self.keys.partitions):
                pipe.xrevrange(self.keys.work_signal(p), count=1)
            rows = await pipe.execute()
        return [str(r[0][0]) if r else "0-0" for r in rows]

    async def read_signals(
        self, positions: list[str], block_ms: int, count: int = 1000
    ) -> list[tuple[int, str, str]]:
        """Work signals after ``positions`` (blocking up to ``block_ms``), at most ``count`` per
        stream: (partition, entry id, account)."""
        streams: dict[Any, Any] = {
            self.keys.work_signal(p): positions[p] for p in range(self.keys.partitions)
        }
        res: Any = await self.redis.xread(streams, count=count, block=block_ms)
        index = {self.keys.work_signal(p): p for p in range(self.keys.partitions)}
        out: list[tuple[int, str, str]] = []
        for stream, entries in res or []:
            for entry_id, fields in entries:
                out.append((index[str(stream)], str(entry_id), str(fields.get("a", ""))))
        return out

    async def oldest_claimed(self, account_id: str) -> int | None:
        """The earliest claimed_at µs among the account's executions that have one (the claimed
        zsets); entries of executions that no longer exist are dropped on the way."""
        k = self.keys
        for _ in range(10):
            async with self.redis.pipeline(transaction=False) as pipe:
                for p in range(k.partitions):
                    pipe.zrange(k.claimed(p, account_id), 0, 0, withscores=True)
                rows = await pipe.execute()
            firsts = [(int(r[0][1]), str(r[0][0]), p) for p, r in enumerate(rows) if r]
            if not firsts:
                return None
            score, eid, p = min(firsts)
            if await self.redis.exists(k.execution(p, eid)):
                return score
            await self.redis.zrem(k.claimed(p, account_id), eid)
        return None  # pragma: no cover - ten vanished executions in a row

    async def index_page(self, index_keys: Sequence[str], offset: int, limit: int) -> tuple[list[str], int]:
        """A page over per-partition created_at zsets, newest first (ties: id descending), and the
        total: each partition contributes its newest ``offset + limit`` members."""
        depth = offset + limit
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in index_keys:
                pipe.zrevrange(key, 0, depth - 1, withscores=True)
                pipe.zcard(key)
            res = await pipe.execute()
        merged: list[tuple[float, str]] = []
        total = 0
        for i in range(0, len(res), 2):
            merged.extend((float(score), str(member)) for member, score in res[i])
            total += int(res[i + 1])
        merged.sort(reverse=True)
        return [member for _, member in merged[offset:depth]], total

    async def echo_store(
        self, ip: str, hour: int, token: str, record_json: str, limit: int, ttl_s: int
    ) -> bool:
        k = self.keys
        res = await self.scripts.run(
            "echo_save", [k.echo_rate(ip, hour), k.echo(token)], [limit, record_json, ttl_s]
        )
        return bool(res[0] == 1)

    async def echo_get(self, token: str) -> str | None:
        value = await self.redis.get(self.keys.echo(token))
        return None if value is None else str(value)

    async def execution_cues(
        self, account_id: str, execution_ids: Sequence[str]
    ) -> dict[str, tuple[str, int]]:
        """(cue id, created µs) of each of the account's executions (absent: not found), one
        script per partition, one round trip."""
        k = self.keys
        by_p: dict[int, list[str]] = {}
        for eid in execution_ids:
            p = k.execution_partition(eid)
            if p is not None:
                by_p.setdefault(p, []).append(eid)
        parts = list(by_p.items())
        res = await self.scripts.run_many(
            [
                ("executions_cues", [k.execution_index(p, account_id)], [k.part(p) + ":", account_id, *ids])
                for p, ids in parts
            ]
        )
        out: dict[str, tuple[str, int]] = {}
        for (_, ids), rows in zip(parts, res, strict=True):
            for eid, row in zip(ids, rows, strict=True):
                if row:
                    cue, _, created = str(row).partition(" ")
                    out[eid] = (cue, int(float(created)))
        return out

    async def record_outcomes(
        self, account_id: str, rows: Sequence[tuple[str, str, bool, str, str]], now_us: int
    ) -> list[str]:
        """Many outcomes, one ``outcomes_record_many.lua`` call per partition, one round trip; rows are
        (execution id, outcome JSON, success, outcome_state, error). Per row its new status,
        "duplicate" or "missing"."""
        k = self.keys
        by_p: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            p = k.execution_partition(row[0])
            assert p is not None
            by_p.setdefault(p, []).append(i)
        calls: list[Call] = []
        for p, idx in by_p.items():
            args: list[str | int | float] = [k.part(p) + ":", account_id, now_us]
            for i in idx:
                eid, outcome_json, success, state, error = rows[i]
                args += [eid, outcome_json, 1 if success else 0, state, error]
            calls.append(("outcomes_record_many", [k.claims(p)], args))
        out = [""] * len(rows)
        for idx, res in zip(by_p.values(), await self.scripts.run_many(calls), strict=True):
            for i, value in zip(idx, res, strict=True):
                v = str(value)
                out[i] = "duplicate" if v == "-1" else "missing" if v == "-2" else v
        return out
