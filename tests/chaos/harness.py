"""The chaos run: real cuefast processes under a steady load while a driver injects faults.

Setup: a private ``redis-server`` (AOF, ``appendfsync always``), a TCP proxy in front of the
PostgreSQL under test (own schema), two webhook receivers, and the roles as separate OS
processes (``tests/procs.py``): ``cuefast api``, two ``scheduler``, two ``dispatcher``, one
``snapshotter`` and one ``cuefast worker`` daemon (``tests.chaos.worker_app``). A supervisor
restarts any process that exits without being told to (a process started while Redis is down
exits; that is what a process manager is for) and records it.

Load, for the whole run: per-second cron cues under a webhook account (plain, with an outcome
deadline, with a timeout longer than the stale window) and a worker account; a manual fire
every ``fire_every`` seconds (with an idempotency key, some with ``send_at``); one-time cues of
both transports every cycle; outcomes POSTed for a third of the outcome cues' deliveries (a
third answer with a response-body outcome, a third never report and time out); an observer
that reads the newest executions and remembers every outcome the first time it sees it.

Each cycle injects one fault of the seeded schedule (``plan.py``) at a random moment: kill -9
or SIGTERM of a random role process (restarted after a random down time), a Redis restart
(kill -9 or SHUTDOWN), PostgreSQL unreachable (connections dropped and refused), or a paused
receiver (requests held, or connections refused). Then the load stops (cues paused once the
schedulers have caught up), the system drains, every role is stopped (the snapshotter writes a
last snapshot), ``cuefast snapshot`` runs once more, and ``invariants.py`` checks what was
collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis

from cuefast.store.executions import index_members
from cuefast.store.keys import Keys
from tests.chaos.backends import PgProxy, RedisServer, free_port, pg_target, proxied_dsn
from tests.chaos.plan import Fault, Profile, schedule
from tests.chaos.receiver import Receiver
from tests.procs import ROOT, Proc, Processes

PREFIX = "chaos"
READY = {
    "api": "serving on",
    "scheduler": "scheduler running",
    "dispatcher": "dispatcher running",
    "snapshotter": "snapshotter running",
    "worker": "starting: handlers",
}
TERMINAL = frozenset({"success", "failed", "missed", "outcome_timeout"})


def h8(eid: str, byte: int) -> int:
    return hashlib.sha256(eid.encode()).digest()[byte]


def outcome_source(eid: str) -> str:
    """Who reports the outcome of an outcome cue's execution: the response body, a POST by the
    harness, or nobody (the deadline passes: ``outcome_timeout``)."""
    return ("body", "post", "none")[h8(eid, 1) % 3]


def outcome_success(eid: str) -> bool:
    return h8(eid, 2) % 4 != 0


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


async def _registry_executions(r: aioredis.Redis, reg: str) -> list[str]:
    """Every execution id in one listing index registry (lua/lib/exec_index.lua)."""
    ids: list[str] = []
    for cell in await r.hkeys(reg):
        ids += [eid for eid, _ in await index_members(r, f"{reg}|z|{cell}")]
    return ids


async def _account_executions(r: aioredis.Redis, keys: Keys, account_id: str) -> list[str]:
    """Every execution id in the account's listing indexes, all partitions."""
    return [
        eid
        for p in range(keys.partitions)
        for eid in await _registry_executions(r, keys.ix_account(p, account_id))
    ]


@dataclass
class CueInfo:
    id: str
    kind: str  # plain | outcome | slow | worker
    account: str  # "hooks-<n>" (webhook cues) | "work" (worker cues)
    one_time: bool
    first_nr: int  # µs: the first slot (recurring) / the one slot (one-time)
    receiver: int = -1


@dataclass
class Account:
    name: str
    key: str
    secret: str
    id: str


@dataclass
class RoleProc:
    role: str
    base: str  # e.g. "dispatcher-1"
    args: list[str]
    gen: int = 0
    proc: Proc | None = None
    ready: bool = False
    held_down: bool = False  # down on purpose (the driver restarts it)


@dataclass
class FaultRecord:
    fault: Fault
    began_wall: float
    ended_wall: float = 0.0
    note: str = ""


@dataclass
class Collected:
    """Everything the invariants need, gathered by the run."""

    profile: Profile
    accounts: dict[str, Account]
    cues: dict[str, CueInfo]
    final_nr: dict[str, int]
    paused_at_us: int
    load_stopped_us: int
    fires: dict[str, tuple[str, str | None]]  # idempotency key → (cue id, execution id)
    fire_mismatch: list[str]
    posted: dict[str, dict[str, Any]]  # eid → outcome body the harness POSTed (200 or 409)
    post_conflicts: list[str]  # 409 on a first POST: someone else recorded an outcome
    observed: dict[str, str]  # eid → outcome JSON the first time it was seen through the API
    observed_changes: list[str]
    page_duplicates: list[tuple[str, list[str]]]  # (account, ids twice on one page)
    deliveries: list[Any]
    unparsed_requests: list[str]
    handler_log: list[dict[str, Any]]
    execs: dict[str, dict[str, str]]  # every execution: Redis's hash, or PostgreSQL's doc once trimmed
    redis_execs: dict[str, dict[str, str]]  # every execution hash under the prefix
    redis_cues: dict[str, dict[str, str]]
    redis_cue_execs: dict[str, list[str]]
    redis_acct_execs: dict[str, list[str]]
    redis_queues: dict[str, Any]
    redis_dirty: dict[str, int]
    redis_accounts: dict[str, dict[str, str]]
    listings: dict[str, Any]
    pg_execs: dict[str, tuple[str, bool, str]]  # id → (status, in_redis, doc)
    pg_cues: dict[str, tuple[str, bool, str]]
    pg_accounts: dict[str, str]
    faults: list[FaultRecord]
    dispatcher_kills_wall: list[float]
    worker_kills: list[tuple[float, str]]
    http_statuses: Counter[str]
    http_500s: list[str]
    unexpected_exits: list[str]
    stop_codes: dict[str, int]
    tracebacks: dict[str, int]
    log_findings: dict[str, int]
    snapshot_cli: tuple[int, str]
    non_terminal_windows: dict[str, str]  # eid → window name (filled while draining)
    drained: bool
    timings: dict[str, float]
    started_wall: float


class _Processes(Processes):
    """``tests.procs.Processes`` without the log dump on close (the report says what happened;
    the logs stay in the run's directory)."""

    async def close(self, failed: bool = False) -> None:
        self._watchdog.cancel()
        for proc in self.procs.values():
            if proc.alive():
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while any(p.alive() for p in self.procs.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._kill_all()


class Chaos:
    def __init__(self, profile: Profile, work_dir: Path, pg_dsn: str, *, say: Callable[[str], None] = print):
        self.p = profile
        self.dir = work_dir
        self.pg_dsn = pg_dsn
        self.say = say
        self.t0 = time.monotonic()
        self.schema = f"chaos_{uuid.uuid4().hex[:10]}"
        self.keys = Keys(PREFIX, int(profile.env["CUEFAST_PARTITIONS"]))
        self.redis = RedisServer(work_dir / "redis", profile.appendfsync)
        self.proxy = PgProxy(pg_target(pg_dsn))
        self.receivers = [Receiver(i, self._secret_of, self._reply) for i in range(2)]
        self.api_port = free_port()
        self.procs = _Processes(work_dir / "logs", lifetime=self._lifetime())
        self.roles: list[RoleProc] = []
        self.env: dict[str, str] = {}
        self.worker_env: dict[str, str] = {}
        self.handler_log = work_dir / "handler.log"
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.api_port}", timeout=15.0)
        self.accounts: dict[str, Account] = {}
        self.cues: dict[str, CueInfo] = {}
        self.fires: dict[str, tuple[str, str | None]] = {}
        self.fire_mismatch: list[str] = []
        self.posted: dict[str, dict[str, Any]] = {}
        self.post_conflicts: list[str] = []
        self.observed: dict[str, str] = {}
        self.observed_changes: list[str] = []
        self.page_duplicates: list[tuple[str, list[str]]] = []
        self.statuses: Counter[str] = Counter()
        self.http_500s: list[str] = []
        self.unexpected_exits: list[str] = []
        self.faults: list[FaultRecord] = []
        self.dispatcher_kills: list[float] = []
        self.redis_restarts: list[float] = []
        self.worker_kills: list[tuple[float, str]] = []
        self.rng = random.Random(profile.seed ^ 0x5EED)  # the load's own choices
        self._load_on = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._fire_tasks: set[asyncio.Task[None]] = set()
        self._to_post: dict[str, float] = {}  # eid → not before (monotonic)
        self._post_account: dict[str, str] = {}
        self._seen_deliveries = [0, 0]
        self._supervising = True
        self.timings: dict[str, float] = {}

    def _lifetime(self) -> float:
        p = self.p
        per_cycle = p.lead[1] + p.settle + max(p.pg_outage, p.pause, p.down[1] + 30) + 30
        return 600 + p.cycles * per_cycle + p.drain_timeout * 2

    def log(self, text: str) -> None:
        self.say(f"[chaos {time.monotonic() - self.t0:7.1f}s] {text}")

    # ---- receivers' view of the cues ------------------------------------------------------
    def _secret_of(self, cue_id: str) -> str | None:
        cue = self.cues.get(cue_id)
        return self.accounts[cue.account].secret if cue else None

    def _reply(self, eid: str, cue_id: str) -> dict[str, Any]:
        cue = self.cues.get(cue_id)
        if cue is not None and cue.kind == "outcome" and outcome_source(eid) == "body":
            ok = outcome_success(eid)
            return {"success": ok, ("result" if ok else "error"): f"b-{eid[:8]}"}
        return {"ok": True}

    # ---- processes --------------------------------------------------------------------------
    def _start_role(self, r: RoleProc) -> None:
        r.gen += 1
        env = self.worker_env if r.role == "worker" else self.env
        r.proc = self.procs.start(f"{r.base}.{r.gen}", *r.args, env=env)
        r.ready = False

    async def _wait_ready(self, r: RoleProc, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            proc = r.proc
            assert proc is not None
            if READY[r.role] in proc.stderr():
                r.ready = True
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} not ready within {timeout} s:\n{proc.stderr()[-3000:]}")
            await asyncio.sleep(0.1)

    async def _supervise(self) -> None:
        """Restart a role process that exited without being told to (and record it)."""
        while self._supervising:
            for r in self.roles:
                proc = r.proc
                if r.held_down or proc is None or proc.alive() or proc.killed:
                    continue
                tail = " | ".join(proc.stderr().strip().splitlines()[-3:])[-400:]
                self.unexpected_exits.append(f"{proc.name} exited with {proc.popen.returncode}: {tail}")
                self.log(f"{proc.name} exited by itself ({proc.popen.returncode}); restarting")
                await asyncio.sleep(0.5)
                if self._supervising and not r.held_down:
                    self._start_role(r)
            await asyncio.sleep(0.2)

    async def all_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        for r in self.roles:
            while True:
                try:
                    await self._wait_ready(r, max(1.0, deadline - time.monotonic()))
                    break
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)  # it died meanwhile: the supervisor restarts it
        while not await self._api_up():
            if time.monotonic() > deadline:
                raise RuntimeError("the API does not answer /health")
            await asyncio.sleep(0.2)

    async def _api_up(self) -> bool:
        try:
            res = await self.http.get("/health", timeout=3)
            return res.status_code == 200
        except httpx.HTTPError:
            return False

    # ---- HTTP with retries --------------------------------------------------------------------
    async def call(
        self, method: str, path: str, account: str | None, body: Any = None, *, retry_for: float = 180.0
    ) -> httpx.Response:
        """Retried while the API is down, Redis is away (503) or the server fails (5xx); any other
        answer is returned. 500s are recorded: the API must never answer one."""
        headers = {"Authorization": f"Bearer {self.accounts[account].key}"} if account else {}
        deadline = time.monotonic() + retry_for
        delay = 0.1
        while True:
            try:
                res = await self.http.request(method, path, headers=headers, json=body)
                self.statuses[str(res.status_code)] += 1
                if res.status_code == 500:
                    self.http_500s.append(f"{method} {path}: {res.text[:300]}")
                if res.status_code < 500 and res.status_code != 429:
                    return res
            except httpx.HTTPError as exc:
                self.statuses[type(exc).__name__] += 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method} {path}: no answer within {retry_for} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    # ---- setup ------------------------------------------------------------------------------
    async def setup(self) -> None:
        self.log(f"profile {self.p.name}: {self.p.cycles} cycles, seed {self.p.seed}, dir {self.dir}")
        self.redis.start()
        await self.redis.wait_ready()
        await self.proxy.start()
        for r in self.receivers:
            await r.start()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")}
        self.env.update(
            CUEFAST_REDIS_URL=self.redis.url,
            CUEFAST_DATABASE_URL=proxied_dsn(self.pg_dsn, self.proxy.port),
            CUEFAST_DATABASE_SCHEMA=self.schema,
            CUEFAST_KEY_PREFIX=PREFIX,
            CUEFAST_ALLOW_PRIVATE_CALLBACKS="true",
            CUEFAST_PORT=str(self.api_port),
            **self.p.env,
        )
        roles = [RoleProc("api", "api-0", ["api"])]
        roles += [RoleProc("scheduler", f"scheduler-{i}", ["scheduler"]) for i in range(self.p.schedulers)]
        roles += [
            RoleProc("dispatcher", f"dispatcher-{i}", ["dispatcher"]) for i in range(self.p.dispatchers)
        ]
        roles.append(RoleProc("snapshotter", "snapshotter-0", ["snapshotter"]))
        self.roles = roles
        for r in roles:
            self._start_role(r)
        self._tasks.append(asyncio.create_task(self._supervise()))
        await self.all_ready()
        for name in [*(f"hooks-{n}" for n in range(self.p.hook_accounts)), "work"]:
            await self._register(name)
        await self._create_cues()
        self.worker_env = {k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")}
        self.worker_env.update(
            CUEFAST_API_KEY=self.accounts["work"].key,
            CUEFAST_BASE_URL=f"http://127.0.0.1:{self.api_port}",
            CUEFAST_WORKER_GRACE_SECONDS="3",
            CHAOS_HANDLER_LOG=str(self.handler_log),
            PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        )
        worker = RoleProc(
            "worker",
            "worker-0",
            ["worker", "--app", "tests.chaos.worker_app:worker", "--wait-seconds", "1",
             "--heartbeat-interval", "1", "--concurrency", "16"],
        )  # fmt: skip
        self.roles.append(worker)
        self._start_role(worker)
        await self._wait_ready(worker)
        self.timings["setup"] = time.monotonic() - self.t0
        self.log(f"{len(self.cues)} cues, {len(self.roles)} role processes up")

    async def _register(self, name: str) -> None:
        email = f"chaos-{name}-{uuid.uuid4().hex[:6]}@example.com"
        res = await self.call("POST", "/v1/auth/register", None, {"email": email})
        assert res.status_code == 201, res.text
        key = res.json()["api_key"]
        self.accounts[name] = Account(name, key, "", "")
        secret = (await self.call("GET", "/v1/auth/webhook-secret", name)).json()["webhook_secret"]
        r = aioredis.Redis.from_url(self.redis.url, decode_responses=True)
        try:
            acct = await r.hget(self.keys.key_index(sha := hashlib.sha256(key.encode()).hexdigest()), sha)
        finally:
            await r.aclose()
        assert acct, "account id not found"
        self.accounts[name] = Account(name, key, secret, str(acct))

    def _cue_body(self, kind: str, i: int, one_time_at: float | None) -> tuple[str, dict[str, Any]]:
        schedule_: dict[str, Any] = (
            {"type": "once", "at": iso(one_time_at)}
            if one_time_at is not None
            else {"type": "recurring", "cron": "* * * * * *"}
        )
        name = f"{kind}-{'once-' if one_time_at else ''}{i}"
        body: dict[str, Any] = {
            "name": name,
            "schedule": schedule_,
            "catch_up": "all",
            "on_failure": {"email": False},
            "retry": {"max_attempts": 5, "backoff_minutes": [0]},
        }
        if kind == "worker":
            body.update(transport="worker", payload={"task": "chaos", "i": i})
            return "work", body
        body.update(
            callback={"url": f"{self.receivers[i % 2].url}/hook/{name}"}, payload={"kind": kind, "i": i}
        )
        if kind == "outcome":
            body["delivery"] = {"timeout_seconds": 3, "outcome_deadline_seconds": self.p.outcome_deadline}
        elif kind == "slow":
            body["delivery"] = {
                "timeout_seconds": self.p.stale_seconds + 60,
                "outcome_deadline_seconds": None,
            }
        return f"hooks-{i % self.p.hook_accounts}", body

    async def create_cue(self, kind: str, i: int, one_time_at: float | None = None) -> CueInfo | None:
        account, body = self._cue_body(kind, i, one_time_at)
        res = await self.call("POST", "/v1/cues", account, body)
        if res.status_code == 400 and one_time_at is not None and one_time_at < time.time():
            self.log(f"one-time cue {body['name']} not created: the API was away until its time passed")
            return None
        if res.status_code == 409:  # created by a request whose answer was lost (API killed)
            listing = await self._all_pages("/v1/cues", account, "cues")
            (doc,) = [c for c in listing if c["name"] == body["name"]]
        else:
            assert res.status_code == 201, res.text
            doc = res.json()
        nr = doc["next_run"]
        if nr is None:  # a PATCH or the scheduler already moved it: read the stored first slot
            nr = iso(one_time_at or 0)
        first = int(datetime.fromisoformat(nr).timestamp() * 1_000_000)
        cue = CueInfo(
            doc["id"], kind, account, one_time_at is not None, first, i % 2 if kind != "worker" else -1
        )
        self.cues[cue.id] = cue
        return cue

    async def _create_cues(self) -> None:
        p = self.p
        plan = (
            [("plain", i) for i in range(p.webhook_cues)]
            + [("outcome", i) for i in range(p.outcome_cues)]
            + [("slow", i) for i in range(p.slow_cues)]
            + [("worker", i) for i in range(p.worker_cues)]
        )
        await asyncio.gather(*(self.create_cue(kind, i) for kind, i in plan))

    async def _all_pages(
        self, path: str, account: str, key: str, limit: int = 100, max_pages: int = 0
    ) -> list[dict[str, Any]]:
        return (await self._pages(path, account, key, limit, max_pages))[0]

    async def _pages(
        self, path: str, account: str, key: str, limit: int = 100, max_pages: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        """Every page of a listing (at most ``max_pages`` when > 0) and its last ``total``."""
        out: list[dict[str, Any]] = []
        sep = "&" if "?" in path else "?"
        offset = pages = 0
        while True:
            res = await self.call("GET", f"{path}{sep}limit={limit}&offset={offset}", account)
            assert res.status_code == 200, res.text
            doc = res.json()
            out.extend(doc[key])
            pages += 1
            if len(doc[key]) < limit or pages == max_pages:
                return out, int(doc.get("total", len(out)))
            offset += limit

    # ---- the load ---------------------------------------------------------------------------
    def start_load(self) -> None:
        self._load_on.set()
        for coro in (self._fire_loop(), self._outcome_loop(), self._observer_loop()):
            self._tasks.append(asyncio.create_task(self._guard(coro)))

    async def _guard(self, coro: Awaitable[None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a harness bug must not go unnoticed
            self.log(f"load task failed: {type(exc).__name__}: {exc}")
            raise

    async def _fire_loop(self) -> None:
        n = 0
        recurring = [c for c in self.cues.values() if not c.one_time and c.kind != "slow"]
        while self._load_on.is_set():
            await asyncio.sleep(self.p.fire_every)
            if not self._load_on.is_set():
                break
            n += 1
            cue = self.rng.choice(recurring)
            key = f"fire-{n}"
            body: dict[str, Any] = {"idempotency_key": key, "payload_override": {"fire": n}}
            if self.rng.random() < 0.25:
                body["send_at"] = iso(time.time() + self.rng.uniform(1, 3))
            self.fires[key] = (cue.id, None)
            task = asyncio.create_task(self._fire(key, cue, body))
            self._fire_tasks.add(task)
            task.add_done_callback(self._fire_tasks.discard)

    async def _fire(self, key: str, cue: CueInfo, body: dict[str, Any]) -> None:
        res = await self.call("POST", f"/v1/cues/{cue.id}/fire", cue.account, body)
        if res.status_code != 200:
            self.fire_mismatch.append(f"{key}: {res.status_code} {res.text[:200]}")
            return
        eid = res.json()["id"]
        self.fires[key] = (cue.id, eid)
        # a retry of the same key must answer the same execution
        if self.rng.random() < 0.1:
            again = await self.call("POST", f"/v1/cues/{cue.id}/fire", cue.account, body)
            if again.status_code != 200 or again.json()["id"] != eid:
                self.fire_mismatch.append(f"{key}: repeat answered {again.status_code} {again.text[:200]}")

    def fires_pending(self) -> int:
        return sum(1 for _, eid in self.fires.values() if eid is None)

    async def _outcome_loop(self) -> None:
        """POST the outcome of every delivered outcome-cue execution whose source is 'post'."""
        while not self._stopping.is_set():
            now = time.monotonic()
            for r in self.receivers:
                new = r.deliveries[self._seen_deliveries[r.index] :]
                self._seen_deliveries[r.index] += len(new)
                for d in new:
                    cue = self.cues.get(d.cue_id)
                    wanted = cue is not None and cue.kind == "outcome" and outcome_source(d.eid) == "post"
                    if cue and wanted and d.eid not in self.posted and d.eid not in self._to_post:
                        self._to_post[d.eid] = now + self.rng.uniform(0, 2)
                        self._post_account[d.eid] = cue.account
            due = [eid for eid, at in self._to_post.items() if at <= now][:50]
            if due:
                await asyncio.gather(*(self._post_outcome(eid) for eid in due))
            await asyncio.sleep(0.3)

    async def _post_outcome(self, eid: str) -> None:
        account = self._post_account[eid]
        ok = outcome_success(eid)
        body = {"success": ok, ("result" if ok else "error"): f"p-{eid[:8]}", "metadata": {"via": "post"}}
        tries = 0
        while True:
            tries += 1
            try:
                res = await self.call("POST", f"/v1/executions/{eid}/outcome", account, body, retry_for=5)
                break
            except RuntimeError:  # the API is away for a while: keep it queued
                if self._stopping.is_set():
                    return
        self._to_post.pop(eid, None)
        if res.status_code == 200 and res.json().get("outcome_recorded") is True:
            self.posted[eid] = body
        elif res.status_code == 409:
            self.posted[eid] = body
            if tries == 1 and res.json()["error"]["code"] == "outcome_already_recorded":
                # our first POST found an outcome: legitimate only when an earlier request of ours
                # reached the server (there was none) — checked against the stored value at the end
                self.post_conflicts.append(eid)
        else:
            self.post_conflicts.append(f"{eid}: {res.status_code} {res.text[:200]}")

    def posts_pending(self) -> int:
        return len(self._to_post)

    async def _observer_loop(self) -> None:
        """Remember every outcome the first time the API shows it; report changes and duplicates."""
        while not self._stopping.is_set():
            for account in self.accounts:
                try:
                    res = await self.call("GET", "/v1/executions?limit=100", account, retry_for=2)
                except RuntimeError:
                    continue
                if res.status_code != 200:
                    continue
                items = res.json()["executions"]
                ids = [e["id"] for e in items]
                if len(ids) != len(set(ids)):
                    dup = [i for i, n in Counter(ids).items() if n > 1]
                    self.page_duplicates.append((account, dup))
                for e in items:
                    self.observe(e)
            await asyncio.sleep(2.0)

    def observe(self, e: dict[str, Any]) -> None:
        if e.get("outcome") is None:
            return
        text = json.dumps(e["outcome"], sort_keys=True)
        first = self.observed.setdefault(e["id"], text)
        if first != text:
            self.observed_changes.append(f"{e['id']}: first {first} now {text}")

    async def _one_time_cues(self, cycle: int) -> None:
        at = time.time() + 3
        await asyncio.gather(
            self.create_cue("plain", 1000 + cycle, at), self.create_cue("worker", 1000 + cycle, at)
        )

    # ---- faults -----------------------------------------------------------------------------
    async def run_cycles(self) -> None:
        faults = schedule(self.p)
        for fault in faults:
            began = time.monotonic()
            self.log(f"cycle {fault.cycle + 1}/{self.p.cycles}: {fault.describe()}")
            await self._one_time_cues(fault.cycle)
            await asyncio.sleep(max(0.0, fault.lead - (time.monotonic() - began)))
            rec = FaultRecord(fault, time.time())
            self.faults.append(rec)
            try:
                await self.inject(fault, rec)
            finally:
                rec.ended_wall = time.time()
            await self.all_ready()
            await asyncio.sleep(self.p.settle)
        self.timings["cycles"] = time.monotonic() - self.t0 - self.timings["setup"]

    def _pick(self, role: str, instance: int) -> RoleProc:
        candidates = [r for r in self.roles if r.role == role]
        return candidates[instance % len(candidates)]

    async def inject(self, fault: Fault, rec: FaultRecord) -> None:
        if fault.kind in ("kill9", "sigterm"):
            r = self._pick(fault.target, fault.instance)
            assert r.proc is not None
            r.held_down = True
            try:
                if fault.kind == "kill9":
                    if r.proc.alive():
                        self.procs.kill(r.proc.name)
                    if r.role == "dispatcher":
                        self.dispatcher_kills.append(time.time())
                    if r.role == "worker":
                        self.worker_kills.append((time.time(), r.proc.name))
                    rec.note = f"killed {r.proc.name}"
                else:
                    began = time.monotonic()
                    try:
                        code = await self.procs.stop(r.proc.name, timeout=60)
                        rec.note = f"{r.proc.name} exited {code} after {time.monotonic() - began:.1f}s"
                        if code != 0:
                            self.unexpected_exits.append(f"{r.proc.name} exited {code} on SIGTERM")
                    except AssertionError as exc:
                        rec.note = str(exc)
                        self.unexpected_exits.append(str(exc))
                await asyncio.sleep(fault.down)
                self._start_role(r)
            finally:
                r.held_down = False
            await self._wait_ready(r)
        elif fault.kind == "redis_restart":
            self.redis_restarts.append(time.time())
            await self.redis.restart(hard=fault.target == "hard", down_seconds=fault.down)
            rec.note = f"redis restarted ({fault.target})"
        elif fault.kind == "pg_outage":
            self.proxy.outage()
            await asyncio.sleep(fault.length)
            self.proxy.restore()
            rec.note = f"{self.proxy.dropped} connections dropped so far"
        elif fault.kind == "receiver_pause":
            index, mode = fault.target.split(":")
            receiver = self.receivers[int(index)]
            await receiver.pause(mode)
            await asyncio.sleep(fault.length)
            held = sum(1 for d in receiver.deliveries if d.held)
            await receiver.resume()
            rec.note = f"{held} requests held so far"

    # ---- stop, drain, collect ----------------------------------------------------------------
    async def stop_load(self) -> tuple[dict[str, int], int]:
        """Stop firing; once the schedulers have caught up, read every recurring cue's next_run and
        pause the cues. Returns (next_run per cue, when the pause began µs)."""
        self._load_on.clear()
        await self.all_ready()
        deadline = time.monotonic() + 60
        while self.fires_pending() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        r = aioredis.Redis.from_url(self.redis.url, decode_responses=True)
        try:
            while True:
                now = int(time.time() * 1_000_000)
                late = 0
                for p in range(self.keys.partitions):
                    late += await r.zcount(self.keys.due(p), "-inf", now - 500_000)
                if late == 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            recurring = [c for c in self.cues.values() if not c.one_time]
            nrs = await asyncio.gather(*(r.hget(self.keys.cue(c.id), "nr") for c in recurring))
        finally:
            await r.aclose()
        final = {c.id: int(nr) for c, nr in zip(recurring, nrs, strict=True) if nr}
        paused_at = int(time.time() * 1_000_000)
        await asyncio.gather(
            *(self.call("PATCH", f"/v1/cues/{c.id}", c.account, {"status": "paused"}) for c in recurring)
        )
        self.log(f"load stopped: {len(recurring)} cues paused, {len(self.fires)} manual fires")
        return final, paused_at

    async def drain(self) -> tuple[bool, dict[str, str]]:
        """Until every execution is terminal, no request is open and every outcome is posted."""
        deadline = time.monotonic() + self.p.drain_timeout
        began = time.monotonic()
        r = aioredis.Redis.from_url(self.redis.url, decode_responses=True)
        try:
            while True:
                execs = await self._exec_states(r)
                open_ = [eid for eid, st in execs.items() if st not in TERMINAL]
                busy = sum(rc.open_requests() for rc in self.receivers) + self.posts_pending()
                if not open_ and not busy:
                    self.log(f"drained in {time.monotonic() - began:.1f}s ({len(execs)} executions)")
                    return True, {}
                if time.monotonic() > deadline:
                    self.log(f"drain timed out: {len(open_)} executions not terminal, {busy} requests busy")
                    return False, await self._windows(r, open_)
                await asyncio.sleep(0.5)
        finally:
            await r.aclose()

    async def _exec_states(self, r: aioredis.Redis) -> dict[str, str]:
        ids: list[str] = []
        for acct in self.accounts.values():
            ids += await _account_executions(r, self.keys, acct.id)
        out: dict[str, str] = {}
        for i in range(0, len(ids), 2000):
            chunk = ids[i : i + 2000]
            async with r.pipeline(transaction=False) as pipe:
                for eid in chunk:
                    pipe.hget(self.keys.execution(self.keys.execution_partition(eid) or 0, eid), "st")
                states = await pipe.execute()
            out.update({eid: st or "" for eid, st in zip(chunk, states, strict=True)})
        return out

    async def _windows(self, r: aioredis.Redis, open_: list[str]) -> dict[str, str]:
        """Executions still not terminal that a documented window explains (name), or ''."""
        now = time.time()
        stale_us = self.p.stale_seconds * 1_000_000
        out: dict[str, str] = {}
        killed_workers = {name for _, name in self.worker_kills}
        for eid in open_:
            p = self.keys.execution_partition(eid) or 0
            h = await r.hgetall(self.keys.execution(p, eid))
            lease = await r.zscore(self.keys.leases(p), eid)
            claim = await r.zscore(self.keys.claims(p), eid)
            window = ""
            if h.get("st") == "delivering" and lease is not None and lease / 1e6 > now:
                start = (lease - stale_us) / 1e6
                if any(t >= start - 1 for t in self.dispatcher_kills):
                    window = "stale window after a dispatcher kill -9"
                elif any(t >= start - 1 for t in self.redis_restarts):
                    window = "stale window after a Redis restart"
            elif h.get("st") == "delivering" and claim is not None and claim / 1e6 > now and killed_workers:
                window = "worker lease after a worker kill -9"
            out[eid] = window
        return out

    async def stop_roles(self, order: list[str]) -> dict[str, int]:
        """SIGTERM the processes of these roles, one role after the other; their exit codes."""
        self._supervising = False
        codes: dict[str, int] = {}
        for role in order:
            names = [r.proc.name for r in self.roles if r.role == role and r.proc is not None]
            for r in self.roles:
                if r.role == role:
                    r.held_down = True
            try:
                codes.update(await self.procs.stop_all(names, timeout=60))
            except AssertionError as exc:
                self.unexpected_exits.append(str(exc))
        return codes

    async def snapshot_cli(self) -> tuple[int, str]:
        """``cuefast snapshot`` once more, with nothing else running."""
        proc = self.procs.start("snapshot-cli", "snapshot", env=self.env)
        deadline = time.monotonic() + 120
        while proc.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if proc.alive():
            self.procs.kill(proc.name)
            return -9, "timed out"
        out = proc.out.read_text(errors="replace") + proc.stderr()
        return int(proc.popen.returncode), out.strip().splitlines()[-1] if out.strip() else ""

    async def collect_api(self) -> dict[str, Any]:
        """Every listing the invariants compare, read through the public API with pagination."""
        out: dict[str, Any] = {
            "executions": {},
            "by_status": {},
            "cue_execs": {},
            "cue_pages": {},
            "cues": {},
        }
        for name in self.accounts:
            out["executions"][name] = await self._pages("/v1/executions", name, "executions")
            out["cues"][name] = await self._all_pages("/v1/cues", name, "cues")
            statuses = {e["status"] for e in out["executions"][name][0]}
            for st in sorted(statuses):
                out["by_status"][(name, st)] = await self._pages(
                    f"/v1/executions?status={st}", name, "executions", max_pages=self.p.status_pages
                )
            claimable = await self.call("GET", "/v1/executions/claimable?limit=100", name)
            out.setdefault("claimable", {})[name] = claimable.json().get("executions", [])
        for cue in self.cues.values():
            out["cue_execs"][cue.id] = await self._all_pages(
                f"/v1/executions?cue_id={cue.id}", cue.account, "executions"
            )
            pages: list[dict[str, Any]] = []
            offset = 0
            while True:
                res = await self.call(
                    "GET", f"/v1/cues/{cue.id}?execution_limit=100&execution_offset={offset}", cue.account
                )
                assert res.status_code == 200, res.text
                items = res.json().get("executions") or []
                pages.extend(items)
                if len(items) < 100:
                    break
                offset += 100
            out["cue_pages"][cue.id] = pages
        for items, _ in out["executions"].values():
            for e in items:
                self.observe(e)
        return out

    async def collect_redis(self) -> dict[str, Any]:
        r = aioredis.Redis.from_url(self.redis.url, decode_responses=True)
        k = self.keys
        try:
            execs: dict[str, dict[str, str]] = {}
            names = [key async for key in r.scan_iter(match=f"{PREFIX}:{{p*}}:exec:*", count=2000)]
            for i in range(0, len(names), 1000):
                chunk = names[i : i + 1000]
                async with r.pipeline(transaction=False) as pipe:
                    for key in chunk:
                        pipe.hgetall(key)
                    rows = await pipe.execute()
                for key, row in zip(chunk, rows, strict=True):
                    execs[key.rsplit(":", 1)[1]] = row
            cues, cue_execs = {}, {}
            for cue in self.cues.values():
                h = await r.hgetall(k.cue(cue.id))
                cfg = await r.get(k.cue_config(cue.id))
                if cfg is not None:
                    h["_cfg"] = cfg
                cues[cue.id] = h
                cue_execs[cue.id] = await _registry_executions(r, k.ix_cue(cue.id))
            acct_execs: dict[str, list[str]] = {}
            accounts: dict[str, dict[str, str]] = {}
            queues: dict[str, Any] = {}
            for name, acct in self.accounts.items():
                acct_execs[name] = await _account_executions(r, k, acct.id)
                accounts[acct.id] = await r.hgetall(k.account(acct.id))
            for p in range(k.partitions):
                for label, key in (
                    ("leases", k.leases(p)),
                    ("retry", k.retries(p)),
                    ("delayed", k.delayed(p)),
                    ("deadlines", k.deadlines(p)),
                    ("claims", k.claims(p)),
                    ("unclaimed", k.unclaimed(p)),
                ):
                    queues[f"{label}[{p}]"] = await r.zrange(key, 0, -1)
                for acct in self.accounts.values():
                    queues[f"work:{acct.name}[{p}]"] = await r.zrange(k.work(p, acct.id), 0, -1)
                outbox = k.outbox(p)
                entries = await r.xrange(outbox, "-", "+", count=10_000) if await r.exists(outbox) else []
                queues[f"outbox[{p}]"] = [f.get("e", "") for _, f in entries]
            dirty = {}
            for slot in k.slots():
                dirty[slot] = await r.scard(k.dirty(slot)) + await r.scard(k.dirty_processing(slot))
            return {
                "execs": execs,
                "cues": cues,
                "cue_execs": cue_execs,
                "acct_execs": acct_execs,
                "queues": queues,
                "dirty": dirty,
                "accounts": accounts,
            }
        finally:
            await r.aclose()

    async def collect_pg(self) -> dict[str, Any]:
        conn = await asyncpg.connect(self.pg_dsn, server_settings={"search_path": self.schema})
        try:
            execs = {
                str(row["id"]): (row["status"], row["in_redis"], row["doc"])
                for row in await conn.fetch("SELECT id, status, in_redis, doc::text AS doc FROM executions")
            }
            cues = {
                row["id"]: (row["status"], row["deleted"], row["doc"])
                for row in await conn.fetch("SELECT id, status, deleted, doc::text AS doc FROM cues")
            }
            accounts = {
                row["id"]: row["doc"] for row in await conn.fetch("SELECT id, doc::text AS doc FROM accounts")
            }
        finally:
            await conn.close()
        return {"execs": execs, "cues": cues, "accounts": accounts}

    def read_handler_log(self) -> list[dict[str, Any]]:
        if not self.handler_log.exists():
            return []
        out = []
        for line in self.handler_log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def scan_logs(self) -> tuple[dict[str, int], dict[str, int]]:
        """Tracebacks per role and notable log lines (known defects leave these)."""
        tracebacks: Counter[str] = Counter()
        findings: Counter[str] = Counter()
        patterns = {
            "NOGROUP": "NOGROUP (consumer group gone: A4)",
            "snapshot cycle failed": "snapshot cycle failed",
            "scheduler pass failed": "scheduler pass failed",
            "dispatcher loop error": "dispatcher loop error",
            "delivery failed unexpectedly": "delivery failed unexpectedly",
            "Recovered from stale": "stale recovery",
        }
        for proc in self.procs.procs.values():
            text = proc.stderr()
            role = proc.name.split("-")[0]
            tracebacks[role] += text.count("Traceback")
            for needle, label in patterns.items():
                if needle in text:
                    findings[label] += text.count(needle)
        return dict(tracebacks), dict(findings)

    # ---- the whole run -----------------------------------------------------------------------
    async def run(self) -> Collected:
        started = time.time()
        try:
            await self.setup()
            self.start_load()
            await self.run_cycles()
            final_nr, paused_at = await self.stop_load()
            load_stopped = int(time.time() * 1_000_000)
            drained, windows = await self.drain()
            self._stopping.set()
            self.timings["drain"] = (
                time.monotonic() - self.t0 - self.timings["setup"] - self.timings["cycles"]
            )
            # the snapshotter first (its clean stop writes a snapshot): no retention trim may move
            # rows from Redis to the history while the listings are paged through
            stop_codes = await self.stop_roles(["snapshotter"])
            listings = await self.collect_api()
            stop_codes |= await self.stop_roles(["worker", "api", "scheduler", "dispatcher"])
            snap = await self.snapshot_cli()
            rs = await self.collect_redis()
            pg = await self.collect_pg()
            tracebacks, findings = self.scan_logs()
            self.timings["total"] = time.monotonic() - self.t0
            return Collected(
                profile=self.p,
                accounts=self.accounts,
                cues=self.cues,
                final_nr=final_nr,
                paused_at_us=paused_at,
                load_stopped_us=load_stopped,
                fires=self.fires,
                fire_mismatch=self.fire_mismatch,
                posted=self.posted,
                post_conflicts=self.post_conflicts,
                observed=self.observed,
                observed_changes=self.observed_changes,
                page_duplicates=self.page_duplicates,
                deliveries=[d for r in self.receivers for d in r.deliveries],
                unparsed_requests=[u for r in self.receivers for u in r.unsigned],
                handler_log=self.read_handler_log(),
                execs={**_trimmed(pg["execs"]), **rs["execs"]},
                redis_execs=rs["execs"],
                redis_cues=rs["cues"],
                redis_cue_execs=rs["cue_execs"],
                redis_acct_execs=rs["acct_execs"],
                redis_queues=rs["queues"],
                redis_dirty=rs["dirty"],
                redis_accounts=rs["accounts"],
                listings=listings,
                pg_execs=pg["execs"],
                pg_cues=pg["cues"],
                pg_accounts=pg["accounts"],
                faults=self.faults,
                dispatcher_kills_wall=self.dispatcher_kills,
                worker_kills=self.worker_kills,
                http_statuses=self.statuses,
                http_500s=self.http_500s,
                unexpected_exits=self.unexpected_exits,
                stop_codes=stop_codes,
                tracebacks=tracebacks,
                log_findings=findings,
                snapshot_cli=snap,
                non_terminal_windows=windows,
                drained=drained,
                timings=self.timings,
                started_wall=started,
            )
        finally:
            await self.close()

    async def close(self) -> None:
        self._supervising = False
        self._load_on.clear()
        self._stopping.set()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.procs.close(failed=False)
        for r in self.receivers:
            await r.close()
        await self.proxy.close()
        await self.http.aclose()
        self.redis.stop()
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(self.pg_dsn)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            finally:
                await conn.close()


def _trimmed(pg_execs: dict[str, tuple[str, bool, str]]) -> dict[str, dict[str, str]]:
    """Executions retention moved out of Redis: their last state is PostgreSQL's doc."""
    return {eid: json.loads(doc) for eid, (_, in_redis, doc) in pg_execs.items() if not in_redis}


def default_pg_dsn() -> str:
    return os.environ.get("CUEFAST_TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"


if __name__ == "__main__":  # pragma: no cover - use ``python -m tests.chaos``
    sys.exit("run: python -m tests.chaos --help")
