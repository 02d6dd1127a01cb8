"""Shared fixtures: real Redis and PostgreSQL, isolated per test by key prefix / schema.

Backends (``redis_url``, ``database_url``), each found on first use only:
``CUEFAST_TEST_REDIS_URL`` / ``CUEFAST_TEST_DATABASE_URL`` when set; else the local services
on 127.0.0.1 when they answer (unless ``CUEFAST_TEST_EMBEDDED=1``); else embedded Valkey /
PostgreSQL started for the session under ``.cuefast/``. Nothing here ever flushes a server:
each test owns the keys under its own prefix and deletes them afterwards.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import redis
from redis.crc import key_slot

from cuefast.api import create_app
from cuefast.clock import FrozenClock, SystemClock
from cuefast.config import Settings, load_settings
from cuefast.runtime import Runtime
from cuefast.store.scripts import Script, Scripts
from cuefast.store.wire import Wire
from tests.chaos.backends import RedisServer
from tests.contract.hook import contract_hook
from tests.refusals import OwnServer

ROOT = Path(__file__).resolve().parent.parent
LOCAL_REDIS = "redis://127.0.0.1:6379/0"
LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/test"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except Exception:
        return False


def _pg_answers(dsn: str) -> bool:
    import asyncpg

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(dsn, timeout=2)
        except Exception:
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


def _use_local() -> bool:
    return os.environ.get("CUEFAST_TEST_EMBEDDED", "") not in ("1", "true")


def _embedded(kind: str) -> Iterator[str]:
    """An embedded Valkey (``kind="redis"``) or PostgreSQL for the session, removed afterwards."""
    from cuefast.embedded.servers import EmbeddedBackends

    data_dir = ROOT / ".cuefast" / f"test-{kind}-{os.getpid()}"
    try:
        with EmbeddedBackends(data_dir, want_redis=kind == "redis", want_postgres=kind == "postgres") as eb:
            yield str(eb.redis_url if kind == "redis" else eb.database_url)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


# The backends are found (or started) on first use only: a test that asks for neither fixture
# (cron, signing, ssrf, keys, config, the layout test …) runs with both servers unreachable.


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("CUEFAST_TEST_REDIS_URL", "")
    if not url and _use_local() and _port_open("127.0.0.1", 6379) and _redis_answers(LOCAL_REDIS):
        url = LOCAL_REDIS
    if url:
        yield url
    else:
        yield from _embedded("redis")


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """A seed URL of a Redis Cluster: ``CUEFAST_TEST_CLUSTER_URL``, else a local one of 3
    primaries + 3 replicas (tests/cluster.py) started for the session on the first free ports from 7100."""
    url = os.environ.get("CUEFAST_TEST_CLUSTER_URL", "")
    if url:
        yield url
        return
    from tests.cluster import local_cluster

    with local_cluster() as url:
        yield url


class Backend(NamedTuple):
    """The Redis a parametrised test runs on: one server, or a Redis Cluster (seed URL)."""

    url: str
    cluster: bool


BACKENDS = ["single", pytest.param("cluster", marks=[pytest.mark.cluster, pytest.mark.slow])]
"""``params`` of a fixture whose tests run on both (``-m "not cluster"`` skips the second; it is
also ``slow``, so the quick loop stays on one Redis)"""


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """One server (the session's ``redis_url``) or the session's Redis Cluster (marked
    ``cluster``); keys are left on the cluster, which goes with the session."""
    if request.param == "cluster":
        return Backend(request.getfixturevalue("cluster_url"), True)
    return Backend(request.getfixturevalue("redis_url"), False)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = os.environ.get("CUEFAST_TEST_DATABASE_URL", "")
    if not url and _use_local() and _port_open("127.0.0.1", 5432) and _pg_answers(LOCAL_PG):
        url = LOCAL_PG
    if url:
        yield url
    else:
        yield from _embedded("postgres")


@pytest.fixture(autouse=True)
def _root_logger_put_back() -> Iterator[None]:
    """The root logger's handlers and level as they were before each test: a test that runs
    ``cuefast.__main__.main`` in-process installs a handler on pytest's captured stderr, which
    is closed after that test and would break every later log line ("--- Logging error ---")."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


_KEYLIKE = re.compile(r"^[A-Za-z0-9_]+:\{[^{}]+\}(:|$)")
SCRIPTS_CALLED: set[str] = set()


@pytest.fixture(scope="session", autouse=True)
def _one_slot_per_script() -> Iterator[None]:
    """Every script call of the whole suite (DESIGN.md §3.7): its KEYS, and every argument that
    names a key or a key prefix for keys derived inside the script, share one hash slot."""
    run, run_many = Scripts.run, Scripts.run_many

    def check(script: Script, keys: Any, args: Any) -> None:
        named = [str(k) for k in keys] + [a for a in args if isinstance(a, str) and _KEYLIKE.match(a)]
        slots = {key_slot(k.encode()) for k in named}
        assert len(slots) <= 1, f"script {script.name} touches several hash slots: {named}"
        SCRIPTS_CALLED.add(script.name)

    async def checked(self: Scripts, script: Script, keys: Any, args: Any) -> Any:
        check(script, keys, args)
        return await run(self, script, keys, args)

    async def checked_many(self: Scripts, calls: Any, also: Any = (), *, partial: bool = False) -> Any:
        for call in calls:
            check(*call)
        return await run_many(self, calls, also, partial=partial)

    Scripts.run = checked  # type: ignore[method-assign]
    Scripts.run_many = checked_many  # type: ignore[method-assign]
    try:
        yield
    finally:
        Scripts.run, Scripts.run_many = run, run_many  # type: ignore[method-assign]


WIRE_SLOT_ERRORS: list[str] = []
"""commands the store's wire was asked to send that name keys of several hash slots"""


def several_slots(command: Sequence[Any]) -> list[str]:
    """The key-like arguments of one wire command when they span several hash slots, else []
    (on Redis Cluster such a command is refused with CROSSSLOT, or misrouted by its first key)."""
    named = [a for a in command[1:] if isinstance(a, str) and _KEYLIKE.match(a)]
    return named if len({key_slot(a.encode()) for a in named}) > 1 else []


@pytest.fixture(scope="session", autouse=True)
def _one_slot_per_wire_command() -> Iterator[None]:
    """Every command the store sends through its wire (``Wire.execute``: every batch, on one
    Redis and, per node, on a cluster) names keys of one hash slot, as the cluster needs; checked
    on one Redis too, so the quick suite finds a multi-slot ``DEL``/``EXISTS``/batch command before
    a cluster would. Recorded (a caller may swallow an exception) and failed by ``_no_wire_slot_error``."""
    execute = Wire.execute

    async def checked(self: Wire, commands: Sequence[Any], patience_s: float | None = None) -> list[Any]:
        for command in commands:
            named = several_slots(command)
            if named:
                WIRE_SLOT_ERRORS.append(f"{command[0]} touches several hash slots: {named}")
        return await execute(self, commands, patience_s)

    Wire.execute = checked  # type: ignore[method-assign]
    try:
        yield
    finally:
        Wire.execute = execute  # type: ignore[method-assign]


@pytest.fixture
def wire_batches(monkeypatch: pytest.MonkeyPatch) -> list[list[Sequence[Any]]]:
    """Every batch of commands the store's wires send from now on (``Wire.execute``: one per
    round trip on one Redis, one per node on a cluster), in order; ``clear()`` it to count a step."""
    batches: list[list[Sequence[Any]]] = []
    execute = Wire.execute

    async def spy(self: Wire, commands: Sequence[Sequence[Any]], *rest: Any, **kw: Any) -> list[Any]:
        batches.append(list(commands))
        return await execute(self, commands, *rest, **kw)

    monkeypatch.setattr(Wire, "execute", spy)
    return batches


@pytest.fixture(autouse=True)
def _no_wire_slot_error() -> Iterator[None]:
    """A test fails when its code sent a wire command over several hash slots."""
    WIRE_SLOT_ERRORS.clear()
    yield
    errors, WIRE_SLOT_ERRORS[:] = WIRE_SLOT_ERRORS[:], []
    assert not errors, errors[:3]


@pytest.fixture(scope="session")
def pg_schema(database_url: str) -> Iterator[str]:
    """The session's own PostgreSQL schema, dropped at the end."""
    schema = f"cftest_{uuid.uuid4().hex[:10]}"
    yield schema
    from cuefast.durability.schema import drop_schema

    asyncio.run(drop_schema(database_url, schema))


def delete_prefix(backend: Backend, prefix: str) -> None:
    """Delete every key under ``prefix`` on one server or every primary of a cluster."""
    if not backend.cluster:
        _delete_prefix(backend.url, prefix)
        return
    r = redis.RedisCluster.from_url(backend.url)
    try:
        for key in list(r.scan_iter(match=f"{prefix}:*", count=1000)):
            r.delete(key)
    finally:
        r.close()


def _delete_prefix(url: str, prefix: str) -> None:
    r = redis.Redis.from_url(url)
    batch = list(r.scan_iter(match=f"{prefix}:*", count=1000))
    for i in range(0, len(batch), 500):
        r.delete(*batch[i : i + 500])


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    yield prefix
    _delete_prefix(redis_url, prefix)


def backend_settings(
    redis_url: str, database_url: str, pg_schema: str, key_prefix: str, **overrides: Any
) -> Settings:
    """Settings on the session's backends, under ``key_prefix``: 4 partitions, private callbacks."""
    return load_settings(
        {},
        redis_url=redis_url,
        database_url=database_url,
        database_schema=pg_schema,
        key_prefix=key_prefix,
        partitions=4,
        allow_private_callbacks=True,
        **overrides,
    )


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A private redis-server for this test alone (``tests/refusals.OwnServer``: one it may put
    in states that refuse writes), stopped after it."""
    s = OwnServer(tmp_path / "redis", appendfsync="no")
    s.start()
    try:
        await s.wait_ready()
        yield s
    finally:
        s.stop()


@pytest.fixture
def settings(redis_url: str, database_url: str, key_prefix: str, pg_schema: str) -> Settings:
    return backend_settings(redis_url, database_url, pg_schema, key_prefix)


@pytest.fixture
def settings_on(backend: Backend, database_url: str, key_prefix: str, pg_schema: str) -> Settings:
    """``settings`` on one server and on the Redis Cluster (parametrised by ``backend``): a module
    whose roles must work on both overrides ``settings`` with it (``on_both_backends``)."""
    return backend_settings(backend.url, database_url, pg_schema, key_prefix, redis_cluster=backend.cluster)


class Api:
    """An HTTP client on the in-process app, with helpers for accounts."""

    def __init__(self, client: httpx.AsyncClient, rt: Runtime) -> None:
        self.client = client
        self.rt = rt

    async def register(self, email: str | None = None) -> str:
        email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
        res = await self.client.post("/v1/auth/register", json={"email": email})
        assert res.status_code == 201, res.text
        key: str = res.json()["api_key"]
        return key

    async def request(self, method: str, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return await self.client.request(method, path, headers=headers, **kw)


async def make_api(settings: Settings, clock: Any = None) -> tuple[Api, Runtime]:
    rt = Runtime(settings, clock or SystemClock())
    await rt.start()
    transport = httpx.ASGITransport(app=create_app(rt, manage_runtime=False))  # type: ignore[arg-type]
    client = httpx.AsyncClient(  # every response is held to /openapi.json (tests/contract)
        transport=transport, base_url="http://cuefast.test", event_hooks={"response": [contract_hook]}
    )
    return Api(client, rt), rt


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    client, rt = await make_api(settings)
    try:
        yield client
    finally:
        await client.client.aclose()
        await rt.close()


@pytest.fixture
def frozen_clock() -> FrozenClock:
    return FrozenClock(1_795_434_122_000_000)


async def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll an (async) predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def assert_error(res: httpx.Response, status: int, code: str, message: str | None = None) -> dict[str, Any]:
    """The contract's envelope with this status and code (and message, when given)."""
    assert res.status_code == status, (res.status_code, res.text)
    assert res.headers["content-type"].startswith("application/json")
    body = res.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert err["code"] == code, err
    assert err["status"] == status, err
    assert isinstance(err["message"], str) and err["message"]
    if message is not None:
        assert err["message"] == message, err
    assert "x-request-id" in res.headers
    return dict(err)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move what collection imported (Litestar, redis, msgspec, the test modules) out of the
    garbage collector's way: every test that builds an app makes the collector run, and walking
    those objects each time was ~15 % of the quick run's CPU time."""
    gc.collect()
    gc.freeze()


SHOTS = Path(os.environ.get("CUEFAST_SCREENSHOTS") or Path(__file__).parent / "browser" / "screenshots")
"""where the browser tests save their screenshots (tests/browser)"""
SHOTS_TAKEN: list[str] = []
"""the screenshots this process saved (tests/browser/conftest.py ``taken``)"""


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In an xdist worker: hand what the summary names to the controlling process."""
    out = getattr(session.config, "workeroutput", None)
    if out is not None:
        out["scripts_called"] = sorted(SCRIPTS_CALLED)
        out["shots_taken"] = list(SHOTS_TAKEN)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """In the controlling process of ``-n N`` (pytest-xdist): gather each worker's lists."""
    out = getattr(node, "workeroutput", {})
    SCRIPTS_CALLED.update(out.get("scripts_called", ()))
    SHOTS_TAKEN.extend(out.get("shots_taken", ()))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """After a run, name the Lua scripts no in-process test called (their one-slot rule was not
    exercised; informational, so that running a subset of the tests stays quiet) and where the
    browser tests' screenshots are."""
    from cuefast.store import SCRIPTS

    missing = sorted({s.name for s in SCRIPTS} - SCRIPTS_CALLED)
    if SCRIPTS_CALLED and missing and terminalreporter.config.option.verbose >= 0:
        terminalreporter.write_line(f"scripts not called in-process: {', '.join(missing)}")
    if SHOTS_TAKEN:
        terminalreporter.write_line(f"dashboard screenshots ({len(SHOTS_TAKEN)}): {SHOTS}")
