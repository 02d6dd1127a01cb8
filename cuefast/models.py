"""msgspec Structs for stored and wire shapes shared by server, SDK and worker.

Stored cue layout (one Redis hash per cue, see keys.py):

==========  ====================================================================
field       value
==========  ====================================================================
``acct``    owning account id
``name``    cue name
``status``  active | paused | completed | failed
``tr``      transport: webhook | worker
``nr``      next run, µs ("" = none)
``lr``      last run, µs ("" = none)
``rc``      run_count            ``fc``  fired_count
``ca``      created_at µs        ``ua``  updated_at µs
``v``       config version (bumped by every PATCH; optimistic concurrency)
``cfg``     CueConfig as JSON (everything only PATCH changes)
``pl``      payload: compact JSON exactly as submitted (key order kept)
``sch``     schedule summary for the scheduler: ``<type>|<timezone>|<catch_up>|<cron>``
==========  ====================================================================
"""

from __future__ import annotations

import msgspec

DEFAULT_BACKOFF = (1, 5, 15)


class Schedule(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    timezone: str = "UTC"
    cron: str | None = None
    at: int | None = None
    """µs since the epoch (one-time cues)."""


class Callback(msgspec.Struct, kw_only=True):
    url: str | None = None
    method: str = "POST"
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class Retry(msgspec.Struct, kw_only=True):
    max_attempts: int = 3
    backoff_minutes: list[int] = msgspec.field(default_factory=lambda: list(DEFAULT_BACKOFF))


class OnFailure(msgspec.Struct, kw_only=True):
    email: bool = True
    webhook: str | None = None
    pause: bool = False


class Verification(msgspec.Struct, kw_only=True):
    mode: str = "none"


class Delivery(msgspec.Struct, kw_only=True):
    timeout_seconds: int = 30
    outcome_deadline_seconds: int | None = 300


class Alerts(msgspec.Struct, kw_only=True):
    consecutive_failures: int = 3
    missed_window_multiplier: int | None = None


class CueConfig(msgspec.Struct, kw_only=True):
    """The part of a cue that only create and PATCH change."""

    description: str | None = None
    schedule: Schedule
    callback: Callback = msgspec.field(default_factory=Callback)
    retry: Retry = msgspec.field(default_factory=Retry)
    on_failure: OnFailure = msgspec.field(default_factory=OnFailure)
    verification: Verification | None = None
    delivery: Delivery | None = None
    alerts: Alerts | None = None
    catch_up: str = "latest"


def schedule_summary(cfg: CueConfig) -> str:
    """The ``sch`` field: what the scheduler needs, without decoding ``cfg``."""
    s = cfg.schedule
    return f"{s.type}|{s.timezone}|{cfg.catch_up}|{s.cron or ''}"


CONFIG_ENCODER = msgspec.json.Encoder()
CONFIG_DECODER = msgspec.json.Decoder(CueConfig)


class Account(msgspec.Struct, kw_only=True):
    """An account as stored in its Redis hash (all values strings there)."""

    id: str
    email: str
    email_lc: str
    plan: str
    cue_limit: int
    exec_limit: int
    rate_limit: int
    wh_secret: str
    alert_secret: str
    alert_url: str = ""
    key_sha: str
    key_prefix: str
    key_enc: str = ""
    slug: str = ""
    created: int
    updated: int


ACCOUNT_DECODER_FIELDS = frozenset(f.name for f in msgspec.structs.fields(Account))
