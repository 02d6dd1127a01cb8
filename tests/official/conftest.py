"""Fixtures for the official clients: their venvs and one real cuefast server per module."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKENDS, Backend, delete_prefix
from tests.official.server import CuefastServer
from tests.official.venvs import CLI_PINS, SDK_PINS, Venv, VenvError, ensure_venv

CUE_LIMIT = 20  # small, so the SDK scenario can reach 403 cue_limit_exceeded
LEASE = 2  # seconds, on the short-lease server
RATE_LIMIT = 600  # per account and minute; small, so it can reach 429 (the scenarios stay far below)


@pytest.fixture(scope="session")
def official_venvs() -> dict[str, Venv]:
    """Both venvs, built side by side on a first run (each ~10 s of pip), reused afterwards."""
    with ThreadPoolExecutor(2) as pool:
        futures = {
            name: pool.submit(ensure_venv, name, pins)
            for name, pins in (("sdk", SDK_PINS), ("cli", CLI_PINS))
        }
    try:
        return {name: f.result() for name, f in futures.items()}
    except VenvError as exc:  # never a skip: the official clients must be tested
        pytest.fail(f"could not build the official clients' venvs:\n{exc}", pytrace=False)


@pytest.fixture(scope="session")
def sdk_venv(official_venvs: dict[str, Venv]) -> Venv:
    """``cueapi-sdk`` + ``cueapi-worker``."""
    return official_venvs["sdk"]


@pytest.fixture(scope="session")
def cli_venv(official_venvs: dict[str, Venv]) -> Venv:
    """The ``cueapi`` CLI (its own venv: it installs a top-level ``cueapi`` package like the SDK)."""
    return official_venvs["cli"]


def _serve(
    redis_url: str, database_url: str, pg_schema: str, log_dir: Path, cluster: bool = False, **settings: str
) -> Iterator[CuefastServer]:
    prefix = f"oc{uuid.uuid4().hex[:10]}"
    srv = CuefastServer(
        {
            "CUEFAST_REDIS_URL": redis_url,
            "CUEFAST_REDIS_CLUSTER": str(cluster).lower(),
            "CUEFAST_DATABASE_URL": database_url,
            "CUEFAST_DATABASE_SCHEMA": pg_schema,
            "CUEFAST_KEY_PREFIX": prefix,
            "CUEFAST_PARTITIONS": "4",
            "CUEFAST_ALLOW_PRIVATE_CALLBACKS": "true",
            "CUEFAST_DEFAULT_CUE_LIMIT": str(CUE_LIMIT),
            "CUEFAST_DEFAULT_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
            **settings,
        },
        log_dir / "server.log",
    )
    srv.start()
    try:
        yield srv
    finally:
        code = srv.stop()
        delete_prefix(Backend(redis_url, cluster), prefix)
        log = srv.log()
    assert code == 0, f"cuefast serve exited with {code}:\n{log[-5000:]}"
    assert "Traceback" not in log, log[-10000:]


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest,
    database_url: str,
    pg_schema: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CuefastServer]:
    """One server for the module: API + scheduler + dispatcher, private callbacks allowed; on
    one Redis, then on the Redis Cluster (marker ``cluster``)."""
    cluster = request.param == "cluster"
    url = request.getfixturevalue("cluster_url" if cluster else "redis_url")
    yield from _serve(url, database_url, pg_schema, tmp_path_factory.mktemp("cuefast-server"), cluster)


@pytest.fixture
def short_lease_server(
    redis_url: str, database_url: str, pg_schema: str, tmp_path: Path
) -> Iterator[CuefastServer]:
    """A server whose worker claims lease for 2 s only (to outlast them with a slow handler)."""
    yield from _serve(redis_url, database_url, pg_schema, tmp_path, CUEFAST_WORKER_LEASE_SECONDS=str(LEASE))


def register(server: CuefastServer, prefix: str) -> tuple[str, str]:
    """A new account: (email, api key)."""
    email = f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"
    res = httpx.post(f"{server.base_url}/v1/auth/register", json={"email": email}, timeout=10)
    assert res.status_code == 201, res.text
    return email, str(res.json()["api_key"])


def client_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment for a client process: no CUEAPI_* leaking in, a private HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUEAPI_", "CUEFAST_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), PYTHONUNBUFFERED="1", **extra)
    return env
