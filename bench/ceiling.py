"""The API bench's ceiling: a bare Litestar + msgspec endpoint doing one Redis HGETALL.

Served by uvicorn with the same settings as ``cuefast serve`` (uvloop, httptools, no access
log), so ``./dev bench api`` can print each cuefast scenario as a ratio of what this stack
does at best on the same machine in the same minute. Run: ``python -m bench.ceiling PORT``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import redis.asyncio as aioredis
import uvicorn
from litestar import Litestar, get
from redis.typing import EncodableT, FieldT

KEY = "cuefast-bench-ceiling"
URL = os.environ.get("CUEFAST_REDIS_URL", "redis://127.0.0.1:6379/0")  # the Redis cuefast is run against


class Cue(msgspec.Struct):
    id: str
    name: str
    status: str
    fields: dict[str, str]


client: aioredis.Redis = aioredis.Redis.from_url(URL, decode_responses=True)


@get("/ceiling/{cue_id:str}")
async def read_cue(cue_id: str) -> Cue:
    """One Redis call (HGETALL of a 10-field hash), one msgspec-encoded answer."""
    # decode_responses=True: str keys and values (redis-py types them bytes | str either way)
    data: dict[str, str] = await client.hgetall(KEY)  # type: ignore[assignment]
    return Cue(id=cue_id, name=data.get("name", ""), status="active", fields=data)


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    fields: dict[FieldT, EncodableT] = {f"f{i}": "x" * 20 for i in range(9)}
    fields["name"] = "bench"
    await client.hset(KEY, mapping=fields)
    yield
    await client.delete(KEY)
    await client.aclose()


def main() -> None:
    app = Litestar([read_cue], lifespan=[lifespan], openapi_config=None)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
