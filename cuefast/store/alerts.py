"""Alerts: each account's alerts (written by the scripts that record the events) and their listing."""

from __future__ import annotations

from collections.abc import Sequence

from cuefast.store.repository import Repository

Alert = dict[str, str]
"""an alert hash (acct, cue, eid, type, msg, md, ca) and its ``id``"""


class Alerts(Repository):
    async def page(
        self,
        account_id: str,
        alert_type: str | None,
        since_us: int | None,
        offset: int,
        limit: int,
        *,
        partitions: Sequence[int] | None = None,
    ) -> tuple[list[Alert], int]:
        """An account's alerts newest first (ties: id descending) and the filtered total, merged
        over the per-partition indexes of ``partitions`` (None: all; an alert lives on its
        execution's partition, so the account's bitmap names them all): two round trips
        (indexes, then the page's hashes)."""
        k = self.keys
        parts = range(k.partitions) if partitions is None else partitions
        low: str | int = "-inf" if since_us is None else since_us
        depth = offset + limit
        async with self.wire.pipeline() as pipe:
            for p in parts:
                index = k.alert_index(p, account_id, alert_type)
                pipe.zrevrangebyscore(index, "+inf", low, start=0, num=depth, withscores=True)
                pipe.zcount(index, low, "+inf")
            res = await pipe.execute()
        merged: list[tuple[float, str, int]] = []
        total = 0
        for i, p in enumerate(parts):
            merged.extend((float(score), str(member), p) for member, score in res[2 * i])
            total += int(res[2 * i + 1])
        merged.sort(reverse=True)
        page = merged[offset:depth]
        async with self.wire.pipeline() as pipe:
            for _, alert_id, p in page:
                pipe.hgetall(k.alert(p, alert_id))
            rows = await pipe.execute()
        out = [dict(row, id=alert_id) for (_, alert_id, _), row in zip(page, rows, strict=True) if row]
        return out, total

    async def get(self, p: int, alert_id: str) -> Alert | None:
        row = await self.redis.hgetall(self.keys.alert(p, alert_id))
        return {**{str(f): str(v) for f, v in row.items()}, "id": alert_id} if row else None
