"""The only module that talks to Redis: loads ``lua/*.lua``, one typed method per operation.

Scripts are registered once and preloaded with ``SCRIPT LOAD`` at start, so a syntax
error fails at boot, not on the first request. Every script's KEYS come from
``Keys`` and share one hash slot.
"""

from __future__ import annotations

import importlib.resources
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from cuefast.errors import ConfigError
from cuefast.keys import CUE_STATUSES, Keys
from cuefast.models import Account, config_json
from cuefast.times import to_datetime

log = logging.getLogger(__name__)

SCRIPT_NAMES = (
    "auth",
    "register",
    "key_rotate",
    "email_change",
    "name_reserve",
    "name_release",
    "cue_create",
    "cue_update",
    "cue_delete",
    "materialize",
    "due",
    "deliver_start",
    "deliver_finish",
    "retry_due",
    "execution_create",
    "delayed_due",
    "cue_purge",
    "deadline_due",
    "outcome",
    "execution_cas",
)

DISPATCH_GROUP = "dispatchers"
SMALL_VALUE = 64  # Redis's hash-max-listpack-value: a longer value makes a hash a hashtable

Reserve = Literal["ok", "taken", "count"]


def month_of(now_us: int) -> str:
    return to_datetime(now_us).strftime("%Y-%m")


_INCLUDE = re.compile(r"^--!include (\w+)$", re.MULTILINE)


def load_lua(name: str) -> str:
    """A script's text; a line ``--!include <lib>`` is replaced by ``lua/lib/<lib>.lua``
    (Redis scripts cannot load code, so shared functions are pasted in at load time)."""
    lua = importlib.resources.files("cuefast.lua")
    text = lua.joinpath(f"{name}.lua").read_text()
    return _INCLUDE.sub(lambda m: lua.joinpath("lib").joinpath(f"{m.group(1)}.lua").read_text(), text)


def connect(url: str, max_connections: int = 128) -> aioredis.Redis:
    """A pooled asyncio client (hiredis parser when installed; str responses).

    The pool blocks (up to 30 s) when all connections are busy instead of failing, so
    hundreds of concurrent deliveries or requests share a bounded set of connections.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url, decode_responses=True, health_check_interval=30, max_connections=max_connections, timeout=30
    )
    return aioredis.Redis(connection_pool=pool)


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
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(load_lua(name)) for name in SCRIPT_NAMES
        }

    async def preload(self) -> None:
        """SCRIPT LOAD every script (fails at boot on a syntax error)."""
        for name, script in self._scripts.items():
            sha = await self.redis.script_load(script.script)
            if sha != script.sha:  # pragma: no cover - redis-py computes the same digest
                raise RuntimeError(f"script {name} loaded with an unexpected sha")

    async def close(self) -> None:
        await self.redis.aclose()

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        return await self._scripts[name](keys=list(keys), args=list(args))

    # ---- accounts ----------------------------------------------------------------
    async def authenticate(self, key_sha: str) -> Account | Literal["unknown", "rotated"]:
        k = self.keys
        res = await self._run("auth", [k.api_keys, k.rotated_key(key_sha)], [key_sha, k.account_prefix])
        if res[0] == -2:
            return "rotated"
        if res[0] != 1:
            return "unknown"
        it = iter(res[1:])
        return msgspec.convert(dict(zip(it, it, strict=True)), Account, strict=False)

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
        res = await self._run(
            "register",
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
        res = await self._run(
            "key_rotate",
            [k.api_keys, k.account(account_id), k.rotated_key(old_sha)],
            [old_sha, new_sha, new_prefix, new_enc, ttl_ms, account_id, now_us],
        )
        return bool(res[0] == 1)

    async def set_account_fields(self, account_id: str, fields: Mapping[str, str | int]) -> None:
        await self.redis.hset(self.keys.account(account_id), mapping=dict(fields))  # type: ignore[arg-type]

    async def change_email(self, account_id: str, email: str, now_us: int) -> bool:
        k = self.keys
        res = await self._run(
            "email_change", [k.emails, k.account(account_id)], [account_id, email.lower(), email, now_us]
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
        res = await self._run(
            "name_reserve",
            [self.keys.cue_names(account_id)],
            [name, f"{cue_id}:{now_us // 1_000_000}", limit_hint, replace_if],  # seconds: 6 B less
        )
        if res[0] == 1:
            return "ok", ""
        if res[0] == -2:
            return "count", ""
        return "taken", str(res[1])

    async def release_name(self, account_id: str, name: str, cue_id: str) -> None:
        await self._run("name_release", [self.keys.cue_names(account_id)], [name, cue_id])

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
            h["cfg"] = config_json(stored, h["sch"])
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
        res = await self._run(
            "cue_create",
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
        res = await self._run(
            "cue_update",
            [k.cue(cue_id), k.due(p), *self._status_indexes(p, account_id), k.cue_config(cue_id)],
            [account_id, expected_version, cue_id, status, next_run, blob, *_pairs(small)],
        )
        return "ok" if res[0] == 1 else ("missing" if res[0] == -1 else "conflict")

    async def delete_cue(self, cue_id: str, account_id: str) -> str | None:
        """Delete; returns the cue's name, or None when it is not the account's cue."""
        k = self.keys
        p = k.cue_partition(cue_id)
        res = await self._run(
            "cue_delete",
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
    async def due_cues(self, p: int, now_us: int, limit: int) -> list[tuple[str, int, str]]:
        """Up to ``limit`` due cues of partition ``p``: (cue id, next run µs, schedule summary)."""
        res = await self._run("due", [self.keys.due(p)], [now_us, limit, self.keys.part(p) + ":"])
        return [(str(res[i]), int(float(res[i + 1])), str(res[i + 2])) for i in range(0, len(res), 3)]

    async def materialize(self, p: int, now_us: int, plan: Sequence[str]) -> tuple[int, int]:
        """Run ``materialize.lua`` for one partition; ``plan`` holds one line per cue."""
        args: list[str | int] = [now_us, self.keys.part(p) + ":", "\n".join(plan)]
        res = await self._run("materialize", [self.keys.due(p), self.keys.outbox(p)], args)
        return int(res[0]), int(res[1])

    async def expire_deadlines(self, p: int, now_us: int, batch: int) -> list[str]:
        """Executions whose outcome deadline passed → outcome_timeout; returns their ids."""
        k = self.keys
        res = await self._run("deadline_due", [k.deadlines(p)], [k.part(p) + ":", batch, now_us])
        return [str(v) for v in res[1:]]

    async def move_due_delayed(self, p: int, now_us: int, batch: int) -> int:
        k = self.keys
        return int(await self._run("delayed_due", [k.delayed(p), k.outbox(p)], [batch, now_us]))

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
        res = await self._run(
            "execution_create",
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
        once_cue: bool,
        now_us: int,
    ) -> str | Literal["duplicate", "missing"]:
        k = self.keys
        p = k.execution_partition(execution_id)
        if p is None:
            return "missing"
        res = await self._run(
            "outcome",
            [k.execution(p, execution_id)],
            [outcome_json, 1 if success else 0, state, error, k.part(p) + ":", 1 if once_cue else 0, now_us],
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
            await self._run(
                "execution_cas",
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
                await self._run(
                    "cue_purge",
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
            await self._run("retry_due", [k.retries(p), k.outbox(p)], [k.part(p) + ":", batch, now_us])
        )

    # ---- dispatcher ------------------------------------------------------------------
    async def ensure_dispatch_groups(self) -> None:
        for p in range(self.keys.partitions):
            try:
                await self.redis.xgroup_create(self.keys.outbox(p), DISPATCH_GROUP, id="0", mkstream=True)
            except Exception as exc:  # BUSYGROUP: it exists
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read_outbox(self, consumer: str, count: int, block_ms: int) -> list[tuple[int, str, str]]:
        """New outbox entries for this consumer: (partition, entry id, execution id)."""
        streams: dict[Any, Any] = {self.keys.outbox(p): ">" for p in range(self.keys.partitions)}
        res = await self.redis.xreadgroup(DISPATCH_GROUP, consumer, streams, count=count, block=block_ms)
        return self._entries(res)

    async def reclaim_outbox(self, consumer: str, min_idle_ms: int, count: int) -> list[tuple[int, str, str]]:
        """Entries another consumer read but never finished (it died): take them over."""
        out: list[tuple[int, str, str]] = []
        for p in range(self.keys.partitions):
            res = await self.redis.xautoclaim(
                self.keys.outbox(p), DISPATCH_GROUP, consumer, min_idle_ms, "0-0", count=count
            )
            for entry_id, fields in res[1]:
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
        self, p: int, execution_ids: Sequence[str], lease_us: int, now_us: int
    ) -> list[list[Any] | Literal["gone", "busy"]]:
        """Lease a batch of webhook executions for one attempt each (one script call).

        Per execution: the attempt's facts (cue id, scheduled_for, attempts, payload, cue cfg,
        cue name, account, triggered_by), or "gone" (drop its stream entry) or "busy" (a live
        attempt elsewhere holds it: leave the entry pending)."""
        if not execution_ids:
            return []
        k = self.keys
        res = await self._run(
            "deliver_start", [k.leases(p)], [lease_us, k.part(p) + ":", now_us, *execution_ids]
        )
        out: list[list[Any] | Literal["gone", "busy"]] = []
        for i in range(0, len(res), 10):
            code = int(res[i])
            if code == 1:
                row = list(res[i + 1 : i + 9])
                row[4] = config_json(row[4], res[i + 9])  # the stored config + the cue's sch
                out.append(row)
            else:
                out.append("busy" if code == -1 else "gone")
        return out

    async def webhook_secrets(self, account_ids: Sequence[str]) -> dict[str, str]:
        """Current webhook secrets of these accounts, one pipeline."""
        ids = list(dict.fromkeys(account_ids))
        async with self.redis.pipeline(transaction=False) as pipe:
            for account_id in ids:
                pipe.hget(self.keys.account(account_id), "wh_secret")
            rows = await pipe.execute()
        return {a: str(v) for a, v in zip(ids, rows, strict=True) if v is not None}

    async def deliver_finish(
        self, p: int, results: Sequence[Sequence[str | int]], now_us: int
    ) -> list[str | None]:
        """Record a batch of attempt results (one script call); per attempt its new status, or
        None when the execution was no longer in flight. Each result row holds: execution id,
        "ok"/"fail", http status, error, next retry µs, outcome deadline µs, stream entry id,
        decides-one-time-cue 0/1, pause-on-failure 0/1 ("" for absent values)."""
        if not results:
            return []
        k = self.keys
        args: list[str | int] = [k.part(p) + ":", now_us]
        for row in results:
            args.extend(row)
        res = await self._run("deliver_finish", [k.leases(p), k.retries(p), k.outbox(p)], args)
        return [str(v) if v else None for v in res]

    async def count_executions(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Add to monthly executions counters: {(account id, "YYYY-MM"): n}, one pipeline."""
        if not counts:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for (account_id, month), n in counts.items():
                key = self.keys.usage(account_id, month)
                pipe.hincrby(key, "executions", n)
                pipe.expire(key, 62 * 86400)
            await pipe.execute()

    async def ack(self, p: int, entry_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.keys.outbox(p), DISPATCH_GROUP, entry_id)
            pipe.xdel(self.keys.outbox(p), entry_id)
            await pipe.execute()

    async def next_due_in(self, now_us: int) -> int | None:
        """µs until the earliest due cue, retry or delayed fire (None: nothing scheduled)."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(k.partitions):
                for key in (k.due(p), k.retries(p), k.delayed(p)):
                    pipe.zrange(key, 0, 0, withscores=True)
            rows = await pipe.execute()
        scores = [float(r[0][1]) for r in rows if r]
        return None if not scores else int(min(scores)) - now_us

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
