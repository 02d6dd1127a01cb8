"""Every role on a Redis Cluster behind a password, with and without TLS (rediss://, a test CA)."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.exceptions import RedisClusterException, RedisError

from cuefast.store import connect
from cuefast.store.cluster_wire import ClusterWire
from cuefast.store.connect import Tls
from tests import cluster as fixture
from tests.cluster import Access, local_cluster, make_certs
from tests.procs import Processes, cluster_env, free_port, until_healthy
from tests.test_dispatcher import Receiver

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(120)]

PASSWORD = "s3cret-pass"


@pytest.fixture(scope="module", params=["tls", "password"])
def secured(request: pytest.FixtureRequest) -> Iterator[tuple[str, Access]]:
    """A 3+3 cluster whose nodes need ``PASSWORD`` (``requirepass``, ``masterauth``); with "tls",
    TLS only (``port 0``, ``tls-port``, ``tls-cluster``, ``tls-replication``, client certificates
    required) with certificates of a CA made for the test."""
    with tempfile.TemporaryDirectory(prefix="cuefast-tls-") as tmp:
        tls = make_certs(Path(tmp)) if request.param == "tls" else None
        access = Access(PASSWORD, tls)
        offset = 3 if request.param == "tls" else 4
        with local_cluster(fixture.FIRST_PORT + offset * fixture.NODES, access=access) as url:
            yield url, access


def _tls(access: Access) -> Tls | None:
    return Tls(access.tls.ca, access.tls.cert, access.tls.key) if access.tls is not None else None


async def test_both_cluster_clients_connect_with_the_password_and_tls(secured: tuple[str, Access]) -> None:
    """redis-py's cluster client and the slot-routed wire (every primary) over TLS with the
    password; the same URL without the password, or without the CA, is refused."""
    url, access = secured
    client = connect(url, cluster=True, tls=_tls(access))
    wire = ClusterWire(client)  # type: ignore[arg-type]
    keys = [f"tls{uuid.uuid4().hex[:6]}:{{s{i}}}" for i in range(30)]  # every primary
    try:
        await client.initialize()  # type: ignore[attr-defined]
        assert await client.set(keys[0], "v")
        assert await wire.execute([("SET", k, i) for i, k in enumerate(keys)]) == ["OK"] * len(keys)
        assert await wire.execute([("GET", k) for k in keys]) == [str(i) for i in range(len(keys))]
        assert len(wire._wires) == 3
    finally:
        await wire.aclose()
        await client.aclose()
    for bad in (url.replace(f":{PASSWORD}@", ""), url) if access.tls else (url.replace(f":{PASSWORD}@", ""),):
        refused = connect(bad, cluster=True)  # no password; or no CA: the test CA is not trusted
        with pytest.raises((RedisError, RedisClusterException)):
            await refused.initialize()  # type: ignore[attr-defined]
        await refused.aclose()


async def test_every_role_runs_on_the_secured_cluster(
    secured: tuple[str, Access], database_url: str, pg_schema: str, tmp_path: Path
) -> None:
    """``cuefast serve`` (API, scheduler, dispatcher, reaper) on ``rediss://:pass@node`` with
    ``CUEFAST_REDIS_TLS_CA`` / ``_CERT`` / ``_KEY`` (or ``redis://:pass@node``): a per-second
    webhook cue is delivered and a worker execution is claimed and finished."""
    url, access = secured
    receiver = Receiver()
    await receiver.start()
    prefix = f"tl{uuid.uuid4().hex[:8]}"
    extra = (
        {
            "CUEFAST_REDIS_TLS_CA": access.tls.ca,
            "CUEFAST_REDIS_TLS_CERT": access.tls.cert,
            "CUEFAST_REDIS_TLS_KEY": access.tls.key,
        }
        if access.tls is not None
        else {}
    )
    env = cluster_env(url, database_url, pg_schema, prefix, **extra)
    port = free_port()
    try:
        async with Processes(tmp_path / "logs", lifetime=100) as procs:
            procs.start("serve", "serve", "--port", str(port), env=env)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                await until_healthy(client, timeout=60)
                res = await client.post("/v1/auth/register", json={"email": f"{prefix}@example.com"})
                auth = {"Authorization": f"Bearer {res.json()['api_key']}"}
                every_second = {"type": "recurring", "cron": "* * * * * *"}
                body = {"name": "hook", "schedule": every_second, "callback": {"url": receiver.url}}
                assert (await client.post("/v1/cues", headers=auth, json=body)).status_code == 201
                body = {
                    "name": "job",
                    "schedule": every_second,
                    "transport": "worker",
                    "payload": {"task": "t"},
                }
                assert (await client.post("/v1/cues", headers=auth, json=body)).status_code == 201
                async with asyncio.timeout(30):
                    while True:
                        res = await client.post("/v1/executions/claim", headers=auth, json={"worker_id": "w"})
                        if res.status_code == 200:
                            break
                        assert res.status_code == 409, res.text
                        await asyncio.sleep(0.1)  # poll: the next second's execution
                eid = res.json()["execution_id"]
                out = await client.post(f"/v1/executions/{eid}/outcome", headers=auth, json={"success": True})
                assert out.status_code == 200, out.text
                async with asyncio.timeout(30):
                    while len(receiver.requests) < 2:
                        await asyncio.sleep(0.05)
                assert (await client.get("/health")).json()["services"]["redis"] == "ok"
            assert await procs.stop("serve") == 0
            assert procs.problems() == []
    finally:
        assert receiver.runner is not None
        await receiver.runner.cleanup()
