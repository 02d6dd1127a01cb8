"""Bulk-replay jobs: the selected source executions and the job's progress, in the ``{replays}`` slot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from cuefast.store.repository import Repository, pairs
from cuefast.store.scripts import Script
from cuefast.store.status import Status

CREATE = Script(
    "replays_create",
    keys=("idem", "job", "ids", "active"),
    argv=("now", "job_id", "fingerprint", "ttl_ms", "fields"),
    rest="fields_then_ids",
)
TAKE = Script("replays_take", keys=("active", "job", "ids"), argv=("now", "job_id", "lease_us"))
ADVANCE = Script(
    "replays_advance",
    keys=("active", "job"),
    argv=("now", "job_id", "pos", "n", "replayed", "skipped", "next_at", "last_error"),
)


class Batch(NamedTuple):
    """A leased batch of a job: where it starts, the job's account and the source ids."""

    pos: int
    account_id: str
    ids: list[str]


class Replays(Repository):
    SCRIPTS = (CREATE, TAKE, ADVANCE)

    async def create(
        self,
        job_id: str,
        account_id: str,
        fields: Mapping[str, str | int],
        source_ids: Sequence[str],
        *,
        key_digest: str,
        fingerprint: str,
        now_us: int,
        ttl_ms: int = 24 * 3600 * 1000,
    ) -> tuple[Status, str]:
        """Store a job and its sources (no sources: created finished); with an idempotency key,
        (REPEAT | CONFLICT, the first job's id) when the key was used before."""
        k = self.keys
        res = await self.scripts.run(
            CREATE,
            [
                k.replay_idem(account_id, key_digest),
                k.replay(job_id),
                k.replay_ids(job_id),
                k.replays_active(),
            ],
            [now_us, job_id, fingerprint, ttl_ms, len(fields), *pairs(fields), *source_ids],
        )
        return Status(int(res[0])), str(res[1])

    async def get(self, job_id: str) -> dict[str, str]:
        """The job's hash ({} = no such job)."""
        return {str(f): str(v) for f, v in (await self.redis.hgetall(self.keys.replay(job_id))).items()}

    async def due(self, now_us: int, count: int = 8) -> list[str]:
        """Running jobs whose next batch may start."""
        found = await self.redis.zrangebyscore(self.keys.replays_active(), "-inf", now_us, start=0, num=count)
        return [str(j) for j in found]

    async def take(self, job_id: str, now_us: int, lease_us: int) -> Batch | None:
        """Lease the job's next batch (None: not due, taken by another runner, or finished)."""
        k = self.keys
        res = await self.scripts.run(
            TAKE, [k.replays_active(), k.replay(job_id), k.replay_ids(job_id)], [now_us, job_id, lease_us]
        )
        if not res:
            return None
        return Batch(int(res[0]), str(res[1]), [str(i) for i in res[2:]])

    async def advance(
        self,
        job_id: str,
        batch: Batch,
        *,
        replayed: int,
        skipped: int,
        next_at_us: int,
        last_error: str,
        now_us: int,
    ) -> bool:
        """Record a finished batch (False: the job moved on without it — a stale lease)."""
        k = self.keys
        res = await self.scripts.run(
            ADVANCE,
            [k.replays_active(), k.replay(job_id)],
            [now_us, job_id, batch.pos, len(batch.ids), replayed, skipped, next_at_us, last_error],
        )
        return int(res) == 1
