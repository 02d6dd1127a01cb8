"""/openapi.json against a real ``cuefast serve`` (issue 13, item 5): schemathesis generates
requests for every operation from the schema (a bounded number each, fixed seed) and checks
every answer: no 5xx, the status documented for the operation, the documented content type
and headers, and a body that conforms to the documented schema.

The server runs with its own key prefix on the test backends; requests carry a registered
key. ``POST /v1/auth/key/regenerate`` gets a throwaway account each time (it would revoke the
shared key), and batch claims do not long-poll (``wait_seconds`` 0).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cuefast.config import load_settings
from tests.conftest import _delete_prefix
from tests.procs import Processes, process_env

EXAMPLES = int(os.environ.get("CUEFAST_SCHEMATHESIS_EXAMPLES", "8"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class Live:
    def __init__(self, url: str) -> None:
        self.url = url
        self.key = self.register()

    def register(self) -> str:
        res = httpx.post(self.url + "/v1/auth/register", json={"email": f"st-{uuid.uuid4().hex}@example.com"})
        assert res.status_code == 201, res.text
        return str(res.json()["api_key"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live(
    redis_url: str, database_url: str, pg_schema: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    cfg = load_settings(
        {},
        redis_url=redis_url,
        database_url=database_url,
        database_schema=pg_schema,
        key_prefix=prefix,
        partitions=4,
        allow_private_callbacks=True,
    )
    port = _free_port()
    env = process_env(
        cfg,
        CUEFAST_IP_RATE_LIMIT="1000000",
        CUEFAST_LOG_LEVEL="WARNING",
        CUEFAST_SESSION_SECRET="schemathesis-session-secret-0123456789",  # else the session routes answer 503
    )
    procs = Processes(Path(tmp_path_factory.mktemp("schemathesis")), lifetime=600)
    procs.start("serve", "serve", "--port", str(port), env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, procs.logs()
            time.sleep(0.1)
        yield Live(url)
    finally:
        asyncio.run(procs.close())
        _delete_prefix(redis_url, prefix)


@pytest.mark.slow
def test_live_server_conforms_to_its_schema(live: Live) -> None:
    """One Hypothesis run per operation (the schemathesis pytest plugin does not load under
    this pytest); every failure of every operation is collected and reported together."""
    schema = schemathesis.openapi.from_url(live.url + "/openapi.json")
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        tested += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            key = live.key
            if case.operation.path == "/v1/auth/key/regenerate":
                key = live.register()
            if case.operation.path == "/v1/worker/claim" and isinstance(case.body, dict):
                case.body["wait_seconds"] = 0
            headers = {"Authorization": f"Bearer {key}"}
            case.call_and_validate(base_url=live.url, headers=headers, checks=CHECKS, timeout=30)

        try:
            run()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}"[:3000])
    assert tested >= 41, tested
    assert not failures, "\n\n".join(failures)
