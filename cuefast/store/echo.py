"""Echo records (§16.5): requests kept a few minutes for the CLI quickstart, bounded per client IP."""

from __future__ import annotations

from cuefast.store.repository import Repository
from cuefast.store.scripts import Script
from cuefast.store.status import Status

SAVE = Script("echo_save", keys=("rate", "record"), argv=("limit", "record", "ttl_s"))


class Echo(Repository):
    SCRIPTS = (SAVE,)

    async def save(self, ip: str, hour: int, token: str, record_json: str, *, limit: int, ttl_s: int) -> bool:
        """Keep the record unless the IP stored ``limit`` records this hour (False: not stored)."""
        k = self.keys
        res = await self.scripts.run(
            SAVE, [k.echo_rate(ip, hour), k.echo(token)], [limit, record_json, ttl_s]
        )
        return Status(int(res[0])) is Status.OK

    async def get(self, token: str) -> str | None:
        value = await self.redis.get(self.keys.echo(token))
        return None if value is None else str(value)
