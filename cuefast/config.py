"""Settings: one frozen struct built once, from ``CUEFAST_*`` environment variables.

Every field below is a variable named ``CUEFAST_<FIELD IN UPPER CASE>``. An unknown
``CUEFAST_*`` variable (a typo) or a value of the wrong type stops start-up with a
clear message: a scheduler that silently ignores ``CUEFAST_REDIS_ULR`` is worse than
one that refuses to start.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Any

import msgspec

from cuefast.errors import ConfigError

PREFIX = "CUEFAST_"
DEFAULT_PARTITIONS = 128
"""Partitions of a new install when ``CUEFAST_PARTITIONS`` is unset: ~4-8 per primary on a
Redis Cluster of 16-32 primaries (README "Scaling out"; idle cost measured in bench/README.md)."""

# Variables that are read by tools around cuefast (the test suite, the bench), not by
# the server; tolerated so that a shared environment does not stop the server.
_FOREIGN = frozenset(
    {
        "CUEFAST_TEST_REDIS_URL",
        "CUEFAST_TEST_DATABASE_URL",
        "CUEFAST_TEST_EMBEDDED",
        "CUEFAST_VENV",
        # the SDK and the worker daemon (cuefast/client, cuefast/worker)
        "CUEFAST_API_KEY",
        "CUEFAST_WORKER_APP",
        "CUEFAST_WORKER_ID",
        "CUEFAST_WORKER_CONCURRENCY",
        "CUEFAST_WORKER_PREFETCH",
        "CUEFAST_WORKER_AGENT",
        "CUEFAST_WORKER_WAIT_SECONDS",
        "CUEFAST_WORKER_GRACE_SECONDS",
    }
)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # --- backends ---------------------------------------------------------------
    redis_url: str = ""
    """Redis/Valkey URL (`redis://`, `rediss://`, `unix://`). Empty: embedded Valkey."""
    redis_cluster: bool = False
    """`CUEFAST_REDIS_URL` names one node (any) of a Redis Cluster: every role runs over
    `redis.asyncio.RedisCluster` and a slot-routed wire (docs/DESIGN.md "Redis Cluster")."""
    redis_tls_ca: str = ""
    """PEM file of the CA that signed the Redis servers' certificates (``rediss://``); empty:
    the system's CAs."""
    redis_tls_cert: str = ""
    """PEM client certificate for Redis (``tls-auth-clients yes``); with ``CUEFAST_REDIS_TLS_KEY``."""
    redis_tls_key: str = ""
    """PEM private key of ``CUEFAST_REDIS_TLS_CERT``."""
    redis_wait_replicas: int = 0
    """When above 0, every batch of writes on the store's wire ends with ``WAIT <n> <timeout>``
    (same write, same round trip): a request is answered only once ``n`` replicas hold its
    writes; fewer within the timeout answers 503 (README "Failover and the loss window")."""
    redis_wait_timeout_ms: int = 1000
    """How long a ``WAIT`` (``CUEFAST_REDIS_WAIT_REPLICAS``) waits for the replicas."""
    database_url: str = ""
    """PostgreSQL DSN. Empty: embedded PostgreSQL."""
    database_schema: str = "public"
    """PostgreSQL schema cuefast's tables live in."""
    data_dir: str = ".cuefast"
    """Where the embedded servers keep their data."""
    key_prefix: str = "cf"
    """Prefix of every Redis key (lets several installs or test runs share one Redis)."""
    partitions: int = 0
    """Number of keyspace partitions (hash slots used). 0 (unset): the count this Redis was set
    up with, ``DEFAULT_PARTITIONS`` for a new install. A value that differs from the stored
    count stops start-up; ``cuefast repartition --to N`` changes it (README "Scaling out")."""
    # --- serving ----------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_json: bool = False
    metrics_token: str = ""
    """When set, GET /metrics needs ``Authorization: Bearer <token>``; empty: open."""
    # --- contract settings (CONTRACT.md §2) --------------------------------------
    allow_register: bool = True
    allow_private_callbacks: bool = False
    allow_http_callbacks: bool = False
    allow_eviction: bool = False
    """Start the server roles even when Redis runs with a ``maxmemory-policy`` other than
    ``noeviction`` (keys, i.e. cues and executions, can then vanish); logged as an error."""
    webhook_timeout_seconds: int = 30
    notify_timeout_seconds: int = 10
    webhook_stale_seconds: int = 300
    worker_lease_seconds: int = 900
    worker_alive_seconds: int = 180
    worker_unclaimed_seconds: int = 900
    worker_max_claim_seconds: int = 21600
    worker_registry_limit: int = 1000
    """Most workers registered per account (``POST /v1/worker/heartbeat``); cuefast setting."""
    default_plan: str = "free"
    default_cue_limit: int = 1_000_000
    default_monthly_execution_limit: int = 1_000_000_000
    default_rate_limit_per_minute: int = 60_000
    ip_rate_limit: int = 60
    api_workers: int = 1
    """API processes serving one port (``--workers``); cuefast setting."""
    enforce_quotas: bool = True
    response_body_outcomes: bool = True
    key_reveal_secret: str = ""
    dashboard_url: str = ""
    base_url: str = "http://localhost:8000"
    smtp_url: str = ""
    """Outgoing mail (on_failure e-mails, magic links): ``smtp://`` or ``smtps://[user:pass@]host``;
    empty: magic links are logged instead (engine/mail.py)."""
    session_secret: str = ""
    """HS256 key of session JWTs (§16.2), at least 32 characters; empty: the session routes answer
    503 ``session_unavailable`` and only API keys authenticate. Never logged."""
    # --- webhook delivery (per dispatcher process) ----------------------------------
    delivery_concurrency: int = 512
    """Most webhook requests one dispatcher process has in flight."""
    delivery_per_host: int = 64
    """Most requests in flight to one callback host:port per dispatcher process. Attempts
    beyond it wait without taking a global slot; while the host stays saturated they are
    handed back (re-queued a little later, no attempt counted), so a slow host cannot hold
    the dispatcher's capacity."""
    delivery_shutdown_grace_seconds: float = 10.0
    """On shutdown, how long requests already sent may run before they are cut off and
    their executions released to another dispatcher (attempts not yet sent are released
    at once)."""
    # --- durability ---------------------------------------------------------------
    snapshot_interval: float = 5.0
    redis_retention: int = 7 * 86400
    """Seconds an execution stays in Redis once finished (older history is in PostgreSQL)."""

    def __post_init__(self) -> None:
        self._check_redis()
        if not 0 <= self.partitions <= 256:
            raise ConfigError("CUEFAST_PARTITIONS must be between 1 and 256 (0 or unset: the stored count)")
        if not 1 <= self.api_workers <= 64:
            raise ConfigError("CUEFAST_API_WORKERS must be between 1 and 64")
        if not 1 <= self.port <= 65535:
            raise ConfigError("CUEFAST_PORT must be between 1 and 65535")
        if not self.key_prefix or any(c in self.key_prefix for c in "{}: "):
            raise ConfigError("CUEFAST_KEY_PREFIX must be non-empty without '{', '}', ':' or spaces")
        if not self.database_schema.replace("_", "").isalnum():
            raise ConfigError("CUEFAST_DATABASE_SCHEMA must be letters, digits and underscores")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ConfigError("CUEFAST_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        for name in (
            "webhook_timeout_seconds",
            "notify_timeout_seconds",
            "webhook_stale_seconds",
            "worker_lease_seconds",
            "worker_alive_seconds",
            "worker_unclaimed_seconds",
            "worker_max_claim_seconds",
            "worker_registry_limit",
            "redis_retention",
            "delivery_concurrency",
            "delivery_per_host",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{PREFIX}{name.upper()} must be at least 1")
        for name in (
            "default_cue_limit",
            "default_monthly_execution_limit",
            "default_rate_limit_per_minute",
            "ip_rate_limit",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{PREFIX}{name.upper()} must not be negative")
        if self.delivery_shutdown_grace_seconds < 0:
            raise ConfigError("CUEFAST_DELIVERY_SHUTDOWN_GRACE_SECONDS must not be negative")
        if self.session_secret and len(self.session_secret) < 32:
            raise ConfigError("CUEFAST_SESSION_SECRET must be at least 32 characters (or empty: no sessions)")
        if self.snapshot_interval <= 0:
            raise ConfigError("CUEFAST_SNAPSHOT_INTERVAL must be positive")

    def _check_redis(self) -> None:
        """The Redis settings hold together (cluster, TLS files, WAIT)."""
        if self.redis_cluster and not self.redis_url:
            raise ConfigError("CUEFAST_REDIS_CLUSTER=true needs CUEFAST_REDIS_URL (one node of the cluster)")
        if self.redis_cluster and self.redis_url.startswith("unix:"):
            raise ConfigError("CUEFAST_REDIS_CLUSTER=true needs a redis:// or rediss:// URL")
        tls = (self.redis_tls_ca, self.redis_tls_cert, self.redis_tls_key)
        if any(tls) and not self.redis_url.startswith("rediss://"):
            raise ConfigError("CUEFAST_REDIS_TLS_* settings need a rediss:// CUEFAST_REDIS_URL")
        if bool(self.redis_tls_cert) != bool(self.redis_tls_key):
            raise ConfigError("CUEFAST_REDIS_TLS_CERT and CUEFAST_REDIS_TLS_KEY go together")
        if self.redis_wait_replicas < 0:
            raise ConfigError("CUEFAST_REDIS_WAIT_REPLICAS must not be negative")
        if not 1 <= self.redis_wait_timeout_ms <= 30_000:  # 0 waits forever; the wire aborts at 60 s
            raise ConfigError("CUEFAST_REDIS_WAIT_TIMEOUT_MS must be between 1 and 30000")

    def replace(self, **changes: Any) -> Settings:
        return msgspec.structs.replace(self, **changes)


FIELDS: dict[str, type] = {f.name: f.type for f in msgspec.structs.fields(Settings)}


def env_name(field: str) -> str:
    return PREFIX + field.upper()


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse(var: str, raw: str, kind: Any) -> Any:
    text = raw.strip()
    if kind is bool or kind == "bool":
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{var}={raw!r} is not a boolean (use true or false)")
    if kind is int or kind == "int":
        try:
            return int(text.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{var}={raw!r} is not an integer") from None
    if kind is float or kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{var}={raw!r} is not a number") from None
    return raw


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from the environment (``os.environ`` by default).

    ``overrides`` (field names) win over the environment: the CLI uses them for flags.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for var, raw in env.items():
        if not var.startswith(PREFIX) or var in _FOREIGN:
            continue
        field = var[len(PREFIX) :].lower()
        if field not in FIELDS:
            known = [env_name(f) for f in FIELDS]
            hint = difflib.get_close_matches(var, known, n=1)
            extra = f" (did you mean {hint[0]}?)" if hint else ""
            raise ConfigError(f"Unknown setting {var}{extra}")
        values[field] = _parse(var, raw, FIELDS[field])
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except TypeError as exc:  # pragma: no cover - overrides with a wrong name
        raise ConfigError(str(exc)) from None
