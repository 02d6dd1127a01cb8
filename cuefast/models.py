"""msgspec Structs for stored and wire shapes shared by server, SDK and worker.

Stored cue layout (see keys.py): a hash of small fields, kept under Redis's
``hash-max-listpack-value`` (64 B) so it stays a compact listpack, and one string
``<cue key>:cfg`` holding ``<config JSON>\n<payload JSON>`` (the two long values). The store
joins them: readers get one dict with ``cfg`` and ``pl``.

==========  ====================================================================
field       value (an absent field means the default in brackets)
==========  ====================================================================
``acct``    owning account id
``name``    cue name
``status``  active | paused | completed | failed
``tr``      transport: webhook | worker
``nr``      next run, µs ("" = none)
``lr``      last run, µs [none]
``rc``      run_count [0]        ``fc``  fired_count [0]
``fa``      the slot (µs) a cue without a next run fired last — a one-time cue's ``at`` once its
            scheduled execution exists [none]; outlives that execution's retention trim
``ca``      created_at µs        ``ua``  updated_at µs [= ``ca``]
``v``       config version [1] (bumped by every PATCH; optimistic concurrency)
``sch``     the schedule: ``<type>|<timezone>|<catch_up>|<at µs>|<cron>`` (read by the scheduler),
            then ``|<jitter_seconds>`` when jitter is on
``ov``      overlap policy, the scheduler's copy of ``CueConfig.overlap`` [allow]
``rx``      the latest execution the scheduler released to run (overlap policy other than allow
            only) [none]   ``bw``  the execution waiting behind it (``buffer_one``) [none]
``cfg``     (string key) the rest of the CueConfig as JSON, defaults omitted (``stored_config``)
``pl``      (string key) payload: compact JSON exactly as submitted (key order kept)
==========  ====================================================================

The cue id is the key's last part (the store adds ``id`` to what it reads).
"""

from __future__ import annotations

from typing import Any

import msgspec

DEFAULT_BACKOFF = (1, 5, 15)


class Schedule(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    timezone: str = "UTC"
    cron: str | None = None
    at: int | None = None
    """µs since the epoch (one-time cues)."""
    jitter_seconds: int = 0
    """cuefast: each fire is delayed by a deterministic offset in ``[0, jitter_seconds)`` s
    (``cron.jitter_offset_us``); ``scheduled_for`` stays the slot, the execution's ``fire_at``
    is when it is delivered or claimable."""


class Callback(msgspec.Struct, kw_only=True, omit_defaults=True):
    url: str | None = None
    method: str = "POST"
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class Retry(msgspec.Struct, kw_only=True, omit_defaults=True):
    max_attempts: int = 3
    backoff_minutes: list[int] = msgspec.field(default_factory=lambda: list(DEFAULT_BACKOFF))

    def delay_after_us(self, attempt: int) -> int | None:
        """Backoff after failed attempt ``attempt`` (1-based), or None when none are left."""
        if attempt >= self.max_attempts:
            return None
        backoff = self.backoff_minutes
        minutes = backoff[min(attempt - 1, len(backoff) - 1)] if backoff else 1
        return minutes * 60_000_000


class OnFailure(msgspec.Struct, kw_only=True, omit_defaults=True):
    email: bool = True
    webhook: str | None = None
    pause: bool = False


class VerificationChecks(msgspec.Struct, kw_only=True, omit_defaults=True):
    """cuefast: evidence the dispatcher checks after a successful outcome (issue 17)."""

    result_url_reachable: bool = False
    result_schema: dict[str, Any] | None = None
    external_id_pattern: str | None = None


class Verification(msgspec.Struct, kw_only=True, omit_defaults=True):
    mode: str = "none"
    checks: VerificationChecks | None = None


class Delivery(msgspec.Struct, kw_only=True, omit_defaults=True):
    timeout_seconds: int = 30
    outcome_deadline_seconds: int | None = 300
    max_concurrency: int | None = None
    """cuefast (issue 17): at most this many of the cue's attempts in flight at once, across every
    dispatcher (``lua/lib/cue_cap.lua`` reads it from the stored JSON); None: no cap"""
    max_concurrency_per_host: int | None = None
    """cuefast (issue 17): at most this many attempts in flight to the cue's callback host, counted
    over the account's cues on that host (``engine/rates.py``); None: no cap"""
    max_per_second: int | None = None
    """cuefast (issue 17): the cue's attempts go to its callback host at most this often, in a
    window per (account, host) shared with the account's other cues for that host
    (``engine/rates.py``); None: no cap"""


class Alerts(msgspec.Struct, kw_only=True, omit_defaults=True):
    consecutive_failures: int = 3
    missed_window_multiplier: int | None = None


class CueConfig(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The part of a cue that only create and PATCH change (stored without its defaults:
    changing a default here changes it for every stored cue that did not set it)."""

    description: str | None = None
    schedule: Schedule
    callback: Callback = msgspec.field(default_factory=Callback)
    retry: Retry = msgspec.field(default_factory=Retry)
    on_failure: OnFailure = msgspec.field(default_factory=OnFailure)
    verification: Verification | None = None
    delivery: Delivery | None = None
    alerts: Alerts | None = None
    catch_up: str = "latest"
    overlap: str = "allow"
    """what a slot coming due while the previous execution is not final does (issue 17):
    allow | skip | buffer_one | cancel_previous; mirrored into the hash as ``ov``"""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    """``{key: value}`` (``cue_input.checked_labels``); the account's label index mirrors it
    (``store/cues.py``, ``cues_set_labels.lua``)."""


def schedule_summary(cfg: CueConfig) -> str:
    """The ``sch`` field: ``<type>|<timezone>|<catch_up>|<at µs>|<cron>`` — what the scheduler
    needs without decoding JSON, and the one stored copy of the schedule (``stored_config``
    leaves it out). Zone names, cron expressions and the enums never contain ``|``, ``"`` or
    ``\\`` (validated on input), so the parts need no escaping."""
    s = cfg.schedule
    head = f"{s.type}|{s.timezone}|{cfg.catch_up}|{'' if s.at is None else s.at}|{s.cron or ''}"
    return f"{head}|{s.jitter_seconds}" if s.jitter_seconds else head


def summary_schedule(sch: str) -> tuple[Schedule, str]:
    """``sch`` → (the schedule, catch_up). A sixth part, present only when jitter is on, is
    ``jitter_seconds`` (a cue without jitter keeps the five-part summary it always had)."""
    kind, tz, catch_up, at, cron, *rest = sch.split("|", 5)
    jitter = int(rest[0]) if rest else 0
    at_us = int(at) if at else None
    schedule = Schedule(type=kind, timezone=tz, cron=cron or None, at=at_us, jitter_seconds=jitter)
    return schedule, catch_up


CONFIG_ENCODER = msgspec.json.Encoder()
CONFIG_DECODER = msgspec.json.Decoder(CueConfig)


_SELF_DEFAULT = frozenset({"callback", "retry", "on_failure"})


def stored_config(cfg: CueConfig) -> str:
    """The config JSON as stored: no schedule or catch_up (they live in ``sch``), no default
    values, no section left empty by that — a realistic cue's config is ~100 B, not ~370 B."""
    raw = msgspec.to_builtins(cfg)
    raw.pop("schedule", None)
    raw.pop("catch_up", None)
    # a section whose default is itself (callback, retry, on_failure) and which holds only
    # defaults encodes as {}: leave it out (an absent verification/delivery/alerts means None)
    return CONFIG_ENCODER.encode({k: v for k, v in raw.items() if v != {} or k not in _SELF_DEFAULT}).decode()


def config_json(stored: str, sch: str) -> str:
    """The full CueConfig JSON (what ``CONFIG_DECODER`` reads) from its stored parts."""
    schedule, catch_up = summary_schedule(sch)
    head = '{"schedule":' + CONFIG_ENCODER.encode(schedule).decode() + ',"catch_up":"' + catch_up + '"'
    return head + ("}" if stored == "{}" else "," + stored[1:])


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
    tcaps: str = ""
    """JSON task → the most worker claims of that task held at once ("" = no task caps;
    ``PUT /v1/worker/task-caps/{task}``)"""
    partitions: tuple[int, ...] | None = None
    """Not in the hash: the partitions the account may have cues (so executions) on, from its
    bitmap (``Keys.cue_partitions``) as authentication read it; None = any (no bitmap)."""


ACCOUNT_DECODER_FIELDS = frozenset(f.name for f in msgspec.structs.fields(Account))
