"""Cues: a cue's two keys, its status indexes and due entry, cue-name reservations, the label index."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from cuefast.models import config_json
from cuefast.store.batch import Batch
from cuefast.store.executions import LIST as EXECUTIONS_LIST
from cuefast.store.executions import list_rows
from cuefast.store.keys import CUE_STATUSES
from cuefast.store.repository import Repository, pairs
from cuefast.store.scripts import Call, Script
from cuefast.store.status import Status

CREATE = Script(
    "cues_create",
    keys=("cue", "config", "due", "index"),
    argv=("now", "cue_id", "next_run", "config"),
    rest="fields",
)
UPDATE = Script(
    "cues_update",
    keys=("cue", "due", "active", "paused", "completed", "failed", "config"),
    argv=("account_id", "version", "cue_id", "status", "next_run", "config"),
    rest="fields",
)
DELETE = Script(
    "cues_delete",
    keys=("cue", "config", "due", "active", "paused", "completed", "failed"),
    argv=("account_id", "cue_id"),
)
RESERVE_NAME = Script(
    "cues_reserve_name", keys=("names",), argv=("now", "name", "cue_id", "limit_hint", "replace_if")
)
RELEASE_NAME = Script("cues_release_name", keys=("names",), argv=("name", "cue_id"))
SET_LABELS = Script(
    "cues_set_labels", keys=("labels",), argv=("now", "prefix", "cue_id", "score", "mode"), rest="pairs"
)

SMALL_VALUE = 64  # Redis's hash-max-listpack-value: a longer value makes a hash a hashtable

Cue = dict[str, str]
"""a cue as one dict: the hash's fields (models.py names them), ``id``, ``cfg`` (the full
CueConfig JSON) and ``pl`` (the payload JSON)"""


class CueWithExecutions(NamedTuple):
    """A cue (None: gone), a page of its execution ids (newest first) and their total."""

    cue: Cue | None
    execution_ids: list[str]
    total: int
    extra: list[Any]
    """the replies of the reads ``also`` queued on the same pipeline, in order"""


# A cue is two keys (docs/DESIGN.md "Why a cue is two keys"): its hash holds the small fields (a
# payload of at most 64 B too, as ``pl``: the scheduler copies it into every execution without a
# second read), and a string next to it holds the stored config JSON, followed by
# "\n<payload JSON>" when the payload is longer (compact JSON never contains a raw newline).
# Readers get one dict: "pl", and "cfg" as the full CueConfig JSON (models.config_json); writers
# pass "cfg" as models.stored_config.
def _split(fields: Mapping[str, str | int]) -> tuple[dict[str, str | int], str]:
    """(the hash's fields, the config string) of a cue's ``fields``."""
    small = {f: v for f, v in fields.items() if f not in ("cfg", "pl", "id")}
    payload = str(fields["pl"])
    if len(payload.encode()) <= SMALL_VALUE:
        small["pl"] = payload
        return small, str(fields["cfg"])
    return small, f"{fields['cfg']}\n{payload}"


def _view(cue_id: str, data: Mapping[Any, Any], blob: Any) -> Cue | None:
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


class Cues(Repository):
    SCRIPTS = (CREATE, UPDATE, DELETE, RESERVE_NAME, RELEASE_NAME, SET_LABELS)

    def _status_indexes(self, p: int, account_id: str) -> list[str]:
        return [self.keys.cue_index(p, account_id, s) for s in CUE_STATUSES]

    async def create(self, cue_id: str, fields: Mapping[str, str | int]) -> Status:
        """Write a new cue; ``fields`` as models.py names them, ``cfg`` and ``pl`` included.
        OK | EXISTS (a cue with that id)."""
        k = self.keys
        p = k.cue_partition(cue_id)
        small, blob = _split(fields)
        res = await self.scripts.run(
            CREATE,
            [
                k.cue(cue_id),
                k.cue_config(cue_id),
                k.due(p),
                k.cue_index(p, str(fields["acct"]), str(fields["status"])),
            ],
            [fields["ca"], cue_id, fields["nr"], blob, *pairs(small)],
        )
        return Status(int(res[0]))

    async def get(self, cue_id: str) -> Cue | None:
        pipe = self.wire.pipeline()
        pipe.hgetall(self.keys.cue(cue_id))
        pipe.get(self.keys.cue_config(cue_id))
        data, blob = await pipe.execute()
        return _view(cue_id, data, blob)

    async def get_many(self, cue_ids: Sequence[str]) -> list[Cue | None]:
        if not cue_ids:
            return []
        pipe = self.wire.pipeline()
        for cue_id in cue_ids:
            pipe.hgetall(self.keys.cue(cue_id))
            pipe.get(self.keys.cue_config(cue_id))
        rows = await pipe.execute()
        return [_view(c, rows[2 * i], rows[2 * i + 1]) for i, c in enumerate(cue_ids)]

    async def get_with_executions(
        self, cue_id: str, limit: int, offset: int, also: Sequence[Callable[[Batch], None]] = ()
    ) -> CueWithExecutions:
        """The cue, a page of its execution ids (newest first, from its listing index:
        ``executions_list.lua``) and their total; each of ``also`` queues more reads on the same
        pipeline (another repository's ``queue_…``): one round trip."""
        k = self.keys

        def queue_cue(pipe: Batch) -> None:
            pipe.hgetall(k.cue(cue_id))
            pipe.get(k.cue_config(cue_id))

        page, data, blob, *extra = await self.scripts.run_many(
            [(EXECUTIONS_LIST, [k.ix_cue(cue_id)], [offset + limit, "", "", "", 0, ""])], [queue_cue, *also]
        )
        ids = [eid for _, eid in list_rows(page)[offset:]]
        return CueWithExecutions(_view(cue_id, data, blob), ids, int(page[0]), extra)

    def queue_owner(self, pipe: Batch, cue_id: str) -> None:
        """Queue the read of the cue's account id (None: no such cue) on another repository's
        pipeline, to save a round trip."""
        pipe.hget(self.keys.cue(cue_id), "acct")

    async def owner(self, cue_id: str) -> str | None:
        """The cue's account id (None: no such cue)."""
        found = await self.redis.hget(self.keys.cue(cue_id), "acct")
        return None if found is None else str(found)

    async def exists(self, cue_id: str) -> bool:
        return bool(await self.redis.exists(self.keys.cue(cue_id)))

    async def fields(self, cue_ids: Sequence[str], fields: Sequence[str]) -> dict[str, dict[str, str | None]]:
        """``fields`` of each cue, one pipeline (absent cues: every field None). ``cfg`` is the full
        config JSON and ``pl`` the payload wherever the cue keeps them (its hash, or the config
        string beside it: "Why a cue is two keys")."""
        ids = list(dict.fromkeys(cue_ids))
        if not ids:
            return {}
        two_keys = "cfg" in fields or "pl" in fields
        names = [f for f in fields if f != "cfg"] + (["sch", "pl"] if two_keys else [])
        pipe = self.wire.pipeline()
        for cue_id in ids:
            pipe.hmget(self.keys.cue(cue_id), names)
            if two_keys:
                pipe.get(self.keys.cue_config(cue_id))
        rows = await pipe.execute()
        step = 2 if two_keys else 1
        out: dict[str, dict[str, str | None]] = {}
        for i, cue_id in enumerate(ids):
            got = dict(zip(names, rows[i * step], strict=True))
            blob = rows[i * step + 1] if two_keys else None
            if all(v is None for v in got.values()) and blob is None:
                out[cue_id] = dict.fromkeys(fields)
                continue
            if two_keys and blob is not None:
                stored, long, payload = str(blob).partition("\n")
                got["cfg"] = config_json(stored, str(got.get("sch") or ""))
                got["pl"] = payload if long else (got.get("pl") or "{}")
            out[cue_id] = {f: None if got.get(f) is None else str(got[f]) for f in fields}
        return out

    async def count_live(self, account_id: str) -> int:
        """Cues in ``active`` or ``paused`` (what the cue limit counts)."""
        k = self.keys
        async with self.wire.pipeline() as pipe:  # follows ASK while a slot migrates
            for p in range(k.partitions):
                pipe.zcard(k.cue_index(p, account_id, "active"))
                pipe.zcard(k.cue_index(p, account_id, "paused"))
            counts: list[int] = await pipe.execute()
        return sum(counts)

    async def list_ids(
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
        async with self.wire.pipeline() as pipe:  # follows ASK while a slot migrates
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

    async def update(
        self,
        cue_id: str,
        account_id: str,
        expected_version: str,
        *,
        status: str = "",
        next_run: str = "keep",
        fields: Mapping[str, str | int],
    ) -> Status:
        """Apply a PATCH (``cfg`` and ``pl`` in ``fields`` go together, both or neither): OK |
        NOT_FOUND | CONFLICT (the version moved, or ``next_run`` is a slot that fired)."""
        k = self.keys
        p = k.cue_partition(cue_id)
        small, blob = _split(fields) if "cfg" in fields else (dict(fields), "")
        res = await self.scripts.run(
            UPDATE,
            [k.cue(cue_id), k.due(p), *self._status_indexes(p, account_id), k.cue_config(cue_id)],
            [account_id, expected_version, cue_id, status, next_run, blob, *pairs(small)],
        )
        return Status(int(res[0]))

    async def update_many(
        self, account_id: str, writes: Sequence[tuple[str, str, str, str, Mapping[str, str | int]]]
    ) -> list[Status]:
        """``update`` of many cues without a config change, one round trip: each (cue id, the
        version read, the new status, next_run, fields)."""
        k = self.keys
        calls = []
        for cue_id, version, status, next_run, fields in writes:
            p = k.cue_partition(cue_id)
            calls.append(
                (
                    UPDATE,
                    [k.cue(cue_id), k.due(p), *self._status_indexes(p, account_id), k.cue_config(cue_id)],
                    [account_id, version, cue_id, status, next_run, "", *pairs(fields)],
                )
            )
        return [Status(int(res[0])) for res in await self.scripts.run_many(calls)] if calls else []

    async def delete(self, cue_id: str, account_id: str) -> str | None:
        """Delete; returns the cue's name, or None when it is not the account's cue."""
        k = self.keys
        p = k.cue_partition(cue_id)
        res = await self.scripts.run(
            DELETE,
            [k.cue(cue_id), k.cue_config(cue_id), k.due(p), *self._status_indexes(p, account_id)],
            [account_id, cue_id],
        )
        return str(res[1]) if Status(int(res[0])) is Status.OK else None

    # ---- names (unique per account, on the account's slot) ----------------------------------
    async def reserve_name(
        self,
        account_id: str,
        name: str,
        cue_id: str,
        now_us: int,
        *,
        limit_hint: int = -1,
        replace_if: str = "",
    ) -> tuple[Status, str]:
        """Reserve ``name`` for ``cue_id``: (OK, ""), (EXISTS, the holder's value
        "<cue id>:<reserved at, s>") or (COUNT, "") when the names alone cannot prove the cue
        limit is not reached."""
        res = await self.scripts.run(
            RESERVE_NAME, [self.keys.cue_names(account_id)], [now_us, name, cue_id, limit_hint, replace_if]
        )
        status = Status(int(res[0]))
        return status, str(res[1]) if status is Status.EXISTS else ""

    async def release_name(self, account_id: str, name: str, cue_id: str, *, unindex: bool = False) -> None:
        """Free ``name`` if it still belongs to ``cue_id``; ``unindex``: and drop the cue from the
        account's label index (a deleted cue: the same round trip, the same slot)."""
        k = self.keys
        calls: list[Call] = [(RELEASE_NAME, [k.cue_names(account_id)], [name, cue_id])]
        if unindex:
            calls.append(
                (SET_LABELS, [k.cue_labels(account_id)], [0, k.label_index(account_id, ""), cue_id, 0, "set"])
            )
        await self.scripts.run_many(calls)

    async def name_holder(self, account_id: str, name: str) -> str | None:
        value = await self.redis.hget(self.keys.cue_names(account_id), name)
        return None if value is None else str(value)

    # ---- labels (the account's index, on the account's slot: docs/DESIGN.md "Cue labels") ------
    async def index_labels(
        self,
        account_id: str,
        cue_id: str,
        created_us: int,
        labels: Mapping[str, str],
        now_us: int,
        *,
        add: bool,
    ) -> None:
        """Index ``labels`` for the cue: ``add`` (before the cue's write) keeps what the index
        holds for it too; otherwise (after the write) the index holds exactly ``labels``."""
        await self.scripts.run(
            SET_LABELS,
            [self.keys.cue_labels(account_id)],
            [
                now_us,
                self.keys.label_index(account_id, ""),
                cue_id,
                created_us,
                "add" if add else "set",
                *label_pairs(labels),
            ],
        )

    async def restore_labels(
        self, rows: Sequence[tuple[str, str, int, Mapping[str, str]]], now_us: int
    ) -> None:
        """Index each (account id, cue id, created µs, labels) exactly (``cuefast restore``), one
        round trip."""
        k = self.keys
        calls: list[Call] = [
            (
                SET_LABELS,
                [k.cue_labels(acct)],
                [now_us, k.label_index(acct, ""), cue_id, created, "set", *label_pairs(labels)],
            )
            for acct, cue_id, created, labels in rows
            if labels
        ]
        if calls:
            await self.scripts.run_many(calls)

    async def label_candidates(
        self, account_id: str, selectors: Sequence[tuple[str, str | None]]
    ) -> list[str]:
        """The cue ids the index holds for every selector (``(key, value)``; value None: the key
        with any value), newest first (ties: id descending). A superset of the cues that carry
        the labels now (callers check each cue)."""
        k = self.keys
        names = list(dict.fromkeys(k.label_index(account_id, key, value) for key, value in selectors))
        rows: Any
        if len(names) == 1:
            rows = await self.redis.zrange(names[0], 0, -1, withscores=True)
        else:
            rows = await self.redis.zinter(names, aggregate="MAX", withscores=True)
        ordered = sorted(((float(score), str(member)) for member, score in rows), reverse=True)
        return [member for _, member in ordered]

    async def indexed_labels(self, account_id: str, cue_ids: Sequence[str]) -> list[str | None]:
        """What the index holds for each cue ("<written µs>,<k>=<v>,…"; None: nothing)."""
        if not cue_ids:
            return []
        values = await self.redis.hmget(self.keys.cue_labels(account_id), list(cue_ids))
        return [None if v is None else str(v) for v in values]

    async def repair_labels(
        self, account_id: str, fixes: Sequence[tuple[str, int, str, Mapping[str, str]]], now_us: int
    ) -> None:
        """Each (cue id, its created µs, the value read, the cue's labels now — {} for a deleted
        cue): the index made to hold exactly those labels if it still holds the value read (one
        round trip)."""
        k = self.keys
        prefix = k.label_index(account_id, "")
        calls: list[Call] = [
            (
                SET_LABELS,
                [k.cue_labels(account_id)],
                [now_us, prefix, cid, ca, "set_if", seen, *label_pairs(lb)],
            )
            for cid, ca, seen, lb in fixes
        ]
        if calls:
            await self.scripts.run_many(calls)


def label_pairs(labels: Mapping[str, str]) -> list[str]:
    """``labels`` as the script's 'k=v' arguments."""
    return [f"{key}={value}" for key, value in labels.items()]
