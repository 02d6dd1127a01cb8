"""Profiles (how big and how long a chaos run is) and the seeded fault schedule.

A profile fixes the load, the durations and the server settings. ``CI`` is the short run
inside ``./dev test`` (scaled-down durations, ≤ ~2 minutes); ``LONG`` is ``./dev chaos``
(realistic durations: a 30-s PostgreSQL outage, a receiver pause longer than the stale window).

The schedule is drawn from ``random.Random(seed)`` before the run starts: the same seed gives
the same faults in the same order with the same targets, moments and lengths (what the system
happens to be doing at that moment is not reproducible, of course). Fault kinds come in
shuffled rounds — every kind once per round of five — so any five consecutive cycles cover
every kind and a three-cycle run three different ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

KINDS = ("kill9", "sigterm", "redis_restart", "pg_outage", "receiver_pause")
ROLES = ("api", "scheduler", "dispatcher", "snapshotter", "worker")


@dataclass(frozen=True)
class Profile:
    name: str
    cycles: int
    seed: int
    # the load: per-second cron cues (``* * * * * *``, catch_up all) under two accounts
    webhook_cues: int  # plain webhook cues: success on a 2xx
    outcome_cues: int  # webhook cues with an outcome deadline (outcome by body, by POST, or none)
    slow_cues: int  # webhook cues whose timeout is longer than the stale window
    worker_cues: int  # worker-transport cues run by the ``cuefast worker`` daemon
    fire_every: float  # a manual fire every this many seconds
    outcome_deadline: int  # seconds (outcome cues)
    # the cycles
    lead: tuple[float, float]  # the fault comes this long (uniform) into its cycle
    settle: float  # load after the fault has ended (and every role is back), per cycle
    down: tuple[float, float]  # how long a killed / stopped process or Redis stays down
    pg_outage: float  # seconds PostgreSQL is unreachable
    pause: float  # seconds a receiver is paused
    drain_timeout: float  # at most this long for every execution to finish after the load
    hook_accounts: int = 1  # the webhook cues are spread over this many accounts
    status_pages: int = 0  # pages read per status-filtered listing at the end (0: all)
    # processes
    schedulers: int = 2
    dispatchers: int = 2
    env: dict[str, str] = field(default_factory=dict)
    appendfsync: str = "always"

    @property
    def stale_seconds(self) -> int:
        """The dispatcher's stale window: max(CUEFAST_WEBHOOK_STALE_SECONDS, timeout + 60)."""
        return max(
            int(self.env["CUEFAST_WEBHOOK_STALE_SECONDS"]),
            int(self.env["CUEFAST_WEBHOOK_TIMEOUT_SECONDS"]) + 60,
        )

    @property
    def worker_lease(self) -> int:
        return int(self.env["CUEFAST_WORKER_LEASE_SECONDS"])

    def with_(self, **changes: object) -> Profile:
        return replace(self, **changes)  # type: ignore[arg-type]


_COMMON_ENV = {
    "CUEFAST_LOG_LEVEL": "INFO",
    "CUEFAST_PARTITIONS": "4",
    "CUEFAST_ENFORCE_QUOTAS": "false",
    "CUEFAST_IP_RATE_LIMIT": "100000",
    "CUEFAST_DEFAULT_RATE_LIMIT_PER_MINUTE": "1000000",
}

CI = Profile(
    name="ci",
    cycles=5,
    seed=14,  # its first five cycles: kill -9 of a dispatcher, SIGTERM of the API, PostgreSQL
    # unreachable, a Redis kill -9 and restart, a receiver holding requests
    webhook_cues=5,
    outcome_cues=3,
    slow_cues=1,
    worker_cues=4,
    fire_every=0.5,
    outcome_deadline=12,
    lead=(0.5, 3.0),
    settle=3.0,
    down=(0.2, 1.5),
    pg_outage=5.0,
    pause=5.0,
    drain_timeout=90.0,
    env={
        **_COMMON_ENV,
        # the stale window is max(STALE, TIMEOUT + 60) = 62 s: the +60 s floor is not a setting
        "CUEFAST_WEBHOOK_STALE_SECONDS": "1",
        "CUEFAST_WEBHOOK_TIMEOUT_SECONDS": "2",
        "CUEFAST_SNAPSHOT_INTERVAL": "1",
        "CUEFAST_REDIS_RETENTION": "30",  # older finished executions move to PostgreSQL's history
        "CUEFAST_WORKER_LEASE_SECONDS": "6",
        "CUEFAST_WORKER_ALIVE_SECONDS": "4",
        "CUEFAST_WORKER_UNCLAIMED_SECONDS": "300",
        "CUEFAST_DELIVERY_SHUTDOWN_GRACE_SECONDS": "2",
    },
)

LONG = Profile(
    name="long",
    cycles=100,
    seed=0,
    webhook_cues=8,
    outcome_cues=4,
    slow_cues=2,
    worker_cues=6,
    fire_every=0.5,
    outcome_deadline=30,
    lead=(1.0, 8.0),
    settle=8.0,
    down=(0.2, 3.0),
    pg_outage=30.0,
    pause=80.0,  # longer than the stale window (65 s) plus the 5-s XAUTOCLAIM pass
    drain_timeout=150.0,
    hook_accounts=3,  # ~25,000 executions per account: listings are paged to the end
    status_pages=20,  # a status filter reads every execution of the account per page
    env={
        **_COMMON_ENV,
        # stale window max(60, 5 + 60) = 65 s (the default 300 s would make 100 cycles take hours)
        "CUEFAST_WEBHOOK_STALE_SECONDS": "60",
        "CUEFAST_WEBHOOK_TIMEOUT_SECONDS": "5",
        "CUEFAST_SNAPSHOT_INTERVAL": "5",
        "CUEFAST_REDIS_RETENTION": "300",
        "CUEFAST_WORKER_LEASE_SECONDS": "30",
        "CUEFAST_WORKER_ALIVE_SECONDS": "20",
        "CUEFAST_WORKER_UNCLAIMED_SECONDS": "900",
        "CUEFAST_DELIVERY_SHUTDOWN_GRACE_SECONDS": "10",
    },
)

PROFILES = {"ci": CI, "long": LONG}


@dataclass(frozen=True)
class Fault:
    cycle: int
    kind: str
    target: str  # role (kill9/sigterm), "hard"/"shutdown" (redis_restart), "" (pg), "<i>:<mode>" (pause)
    instance: int  # which process of the role (taken modulo the number running)
    lead: float  # seconds into the cycle
    down: float  # seconds the process / Redis stays down
    length: float  # seconds of the outage or pause

    def describe(self) -> str:
        if self.kind in ("kill9", "sigterm"):
            return f"{self.kind} {self.target}[{self.instance}] at +{self.lead:.1f}s, down {self.down:.1f}s"
        if self.kind == "redis_restart":
            return f"redis {self.target} restart at +{self.lead:.1f}s, down {self.down:.1f}s"
        if self.kind == "pg_outage":
            return f"postgres unreachable at +{self.lead:.1f}s for {self.length:.0f}s"
        receiver, mode = self.target.split(":")
        return f"receiver {receiver} {mode} at +{self.lead:.1f}s for {self.length:.0f}s"


def schedule(profile: Profile) -> list[Fault]:
    rng = random.Random(profile.seed)
    faults: list[Fault] = []
    round_: list[str] = []
    for cycle in range(profile.cycles):
        if not round_:
            round_ = list(KINDS)
            rng.shuffle(round_)
        kind = round_.pop()
        lead = rng.uniform(*profile.lead)
        down = rng.uniform(*profile.down)
        instance = rng.randrange(1000)
        if kind in ("kill9", "sigterm"):
            target, length = rng.choice(ROLES), 0.0
        elif kind == "redis_restart":
            target, length = rng.choice(("hard", "shutdown")), 0.0
        elif kind == "pg_outage":
            target, length = "", profile.pg_outage
        else:
            target, length = f"{rng.randrange(2)}:{rng.choice(('hold', 'refuse'))}", profile.pause
        faults.append(Fault(cycle, kind, target, instance, lead, down, length))
    return faults
