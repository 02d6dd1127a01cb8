"""Processes that start together on a fresh PostgreSQL schema (``cuefast serve`` plus a
``cuefast dispatcher``, several API workers): each one's ``create_pool`` creates the schema if
missing, and none of them may fail because another created it first."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from cuefast.durability.schema import create_pool, drop_schema


async def test_concurrent_pools_on_a_new_schema_all_start(database_url: str) -> None:
    # CREATE SCHEMA IF NOT EXISTS is not safe against a concurrent one: the loser of the race
    # fails with a unique violation on pg_namespace; 16 processes' worth of first connections,
    # several rounds, reproduced it every time before the creation was serialised
    for _ in range(5):
        schema = f"cfrace_{uuid.uuid4().hex[:10]}"
        try:
            pools = await asyncio.gather(
                *(create_pool(database_url, schema, min_size=1, max_size=1) for _ in range(16))
            )
            for p in pools:
                assert await p.fetchval("SELECT current_schema()") == schema
                await p.close()
        finally:
            await drop_schema(database_url, schema)
        conn = await asyncpg.connect(database_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema) == 0
        finally:
            await conn.close()
