"""The httpx response hook that holds every response of the test ``Api`` client to the
contract (``checker.Contract``), installed by ``tests.conftest.make_api``.

The schema is the app's own ``/openapi.json``, built once per session from the route table.
A response that breaks it fails the request that got it, with what was wrong.
"""

from __future__ import annotations

from functools import cache

import httpx

from cuefast.api.app import create_litestar
from cuefast.config import load_settings
from cuefast.runtime import Runtime
from tests.contract.checker import Contract


@cache
def contract() -> Contract:
    rt = Runtime(load_settings({}, redis_url="redis://127.0.0.1:1/0", database_url="x"))
    app = create_litestar(rt, manage_runtime=False)
    return Contract(app.openapi_schema.to_schema())


async def contract_hook(response: httpx.Response) -> None:
    await response.aread()
    req = response.request
    problems = contract().check(
        req.method,
        req.url.path,
        response.status_code,
        response.headers.get("content-type", ""),
        response.content,
    )
    if problems:
        raise AssertionError(
            f"contract: {req.method} {req.url.path} → {response.status_code}: {'; '.join(problems)}\n"
            f"body: {response.content[:500]!r}"
        )
