"""The script tests' store: real Redis, this test's key prefix, 4 partitions, every script loaded."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cuefast.store import Store, connect
from cuefast.store.keys import Keys
from tests.conftest import Backend
from tests.lua.indexes import assert_indexed


@pytest.fixture
async def store(backend: Backend, key_prefix: str) -> AsyncIterator[Store]:
    s = Store(connect(backend.url, cluster=backend.cluster), Keys(key_prefix, 4))
    await s.preload()
    try:
        yield s
        await assert_indexed(s)  # every script test leaves the listing indexes consistent
    finally:
        await s.close()
