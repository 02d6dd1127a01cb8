"""The only code that talks to Redis: one repository per domain over one script runner.

``Store`` holds the client, the key builder (``keys.Keys``), the runner (``scripts.Scripts``,
every script of ``lua/`` registered once and preloaded at start) and the repositories:
``store.cues.create(...)``, ``store.delivery.start(...)``, … Scripts answer with the codes of
``status.Status`` and their results leave the store as named tuples.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from cuefast.store.account_layout import AccountLayout
from cuefast.store.accounts import Accounts, AuthResult, Window
from cuefast.store.alerts import Alerts
from cuefast.store.claims import Claims
from cuefast.store.connect import FULL, UNREACHABLE, connect, refusal, unreachable_cause
from cuefast.store.cues import Cues
from cuefast.store.dashboard_sessions import DashboardSessions
from cuefast.store.delivery import Delivery
from cuefast.store.echo import Echo
from cuefast.store.executions import Executions
from cuefast.store.keys import Keys
from cuefast.store.login import Login
from cuefast.store.notices import Notices
from cuefast.store.outcomes import Outcomes
from cuefast.store.replays import Replays
from cuefast.store.repository import Repository
from cuefast.store.restore import Restore
from cuefast.store.schedule import Schedule
from cuefast.store.scripts import Script, Scripts, load_lua
from cuefast.store.snapshots import Snapshots
from cuefast.store.status import Status
from cuefast.store.system import System
from cuefast.store.task_caps import TaskCaps
from cuefast.store.usage import Usage
from cuefast.store.wake import Wake
from cuefast.store.wire import Replicas
from cuefast.store.workers import Workers

__all__ = [
    "FULL",
    "SCRIPTS",
    "UNREACHABLE",
    "AuthResult",
    "Keys",
    "Status",
    "Store",
    "Window",
    "connect",
    "load_lua",
    "refusal",
    "unreachable_cause",
]

REPOSITORIES: tuple[type[Repository], ...] = (
    AccountLayout,
    Accounts,
    Alerts,
    Claims,
    Cues,
    DashboardSessions,
    Delivery,
    Echo,
    Executions,
    Login,
    Notices,
    Outcomes,
    Replays,
    Restore,
    Schedule,
    Snapshots,
    System,
    TaskCaps,
    Usage,
    Wake,
    Workers,
)
SCRIPTS: tuple[Script, ...] = tuple(script for repo in REPOSITORIES for script in repo.SCRIPTS)
"""every script of ``lua/``, as the repositories call it"""


class Store:
    def __init__(self, redis: aioredis.Redis, keys: Keys, *, replicas: Replicas | None = None) -> None:
        """``replicas``: ``WAIT`` after each write on the wire (``wire.Replicas``)."""
        self.redis = redis
        self.keys = keys
        self.scripts = Scripts(redis, SCRIPTS, replicas=replicas)
        parts = (redis, keys, self.scripts)
        self.accounts = Accounts(*parts)
        self.account_layout = AccountLayout(*parts)
        self.alerts = Alerts(*parts)
        self.claims = Claims(*parts)
        self.cues = Cues(*parts)
        self.dashboard_sessions = DashboardSessions(*parts)
        self.delivery = Delivery(*parts)
        self.echo = Echo(*parts)
        self.executions = Executions(*parts)
        self.login = Login(*parts)
        self.notices = Notices(*parts)
        self.outcomes = Outcomes(*parts)
        self.replays = Replays(*parts)
        self.restore = Restore(*parts)
        self.schedule = Schedule(*parts)
        self.snapshots = Snapshots(*parts)
        self.system = System(*parts)
        self.task_caps = TaskCaps(*parts)
        self.usage = Usage(*parts)
        self.wake = Wake(*parts)
        self.workers = Workers(*parts)

    async def preload(self) -> None:
        """Load every script (``Scripts.preload``: fails at boot on a syntax error)."""
        await self.scripts.preload()

    async def close(self) -> None:
        for repo in (self.claims, self.delivery, self.notices):
            repo.fanout.close()
        await self.scripts.wire.aclose()
        await self.redis.aclose()
