"""What every store repository holds: the Redis clients, the key builder and the script runner."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import redis.asyncio as aioredis

from cuefast.store.connect import is_cluster
from cuefast.store.fanout import Fanout
from cuefast.store.keys import Keys
from cuefast.store.scripts import Script, Scripts


class Repository:
    """One domain's reads and writes. ``SCRIPTS`` lists the scripts its methods run."""

    SCRIPTS: ClassVar[tuple[Script, ...]] = ()

    def __init__(self, redis: aioredis.Redis, keys: Keys, scripts: Scripts) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = scripts
        self.wire = scripts.wire
        self.cluster = is_cluster(redis)
        """Redis Cluster: commands naming keys of several slots are split per slot"""
        self.fanout = Fanout()
        """this repository's per-stream reads on Redis Cluster (stream readers only)"""


def pairs(mapping: Mapping[str, str | int]) -> list[str | int]:
    """``mapping`` as ARGV field, value pairs."""
    out: list[str | int] = []
    for k, v in mapping.items():
        out.append(k)
        out.append(v)
    return out
