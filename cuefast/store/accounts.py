"""Accounts: API-key authentication with its rate-limit count, registration, key and e-mail changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import msgspec

from cuefast.models import Account
from cuefast.store.repository import Repository, pairs
from cuefast.store.scripts import Script
from cuefast.store.status import Status

AUTHENTICATE = Script(
    "accounts_authenticate",
    keys=("api_keys", "rotated", "key_window", "ip_window"),
    argv=("now", "key_sha", "account_prefix", "ip_limit", "month", "count", "partitions_prefix"),
)
REGISTER = Script(
    "accounts_register",
    keys=("emails", "api_keys", "slugs", "account", "cue_partitions"),
    argv=("email_lc", "account_id", "key_sha", "slug_count"),
    rest="slugs_and_fields",
)
ROTATE_KEY = Script(
    "accounts_rotate_key",
    keys=("api_keys", "account", "rotated"),
    argv=("now", "old_sha", "new_sha", "new_prefix", "new_enc", "ttl_ms", "account_id"),
)
CUE_PARTITION = Script("accounts_cue_partition", keys=("cue_partitions",), argv=("partition",))
CHANGE_EMAIL = Script(
    "accounts_change_email", keys=("emails", "account"), argv=("now", "account_id", "email_lc", "email")
)


def cue_partitions(text: str) -> tuple[int, ...] | None:
    """The partitions an account may have cues on, from the auth script's text ("3,7"; "*":
    any — the account has no bitmap, None)."""
    if text == "*":
        return None
    return tuple(int(p) for p in text.split(",")) if text else ()


class Window(NamedTuple):
    """A rate-limit verdict: ``counted`` (False = over the limit, not counted), the requests
    in the 60 s window (including this one when counted), the limit, the oldest request µs."""

    counted: bool
    requests: int
    limit: int
    oldest_us: int


class AuthResult(NamedTuple):
    """``status`` OK (``account`` set), NO_KEY, NOT_FOUND (an unknown key) or ROTATED;
    ``window`` is None when the request was not counted; ``warn``: executions this month
    reached 80 % of the monthly limit."""

    status: Status
    account: Account | None
    window: Window | None
    warn: bool


class NoticeTargets(NamedTuple):
    """Where an account's notices go ("" when absent)."""

    alert_url: str
    alert_secret: str
    email: str


class QuotaState(NamedTuple):
    """An account's monthly execution limit (None: no such account), the month's executions
    (the account hash's mirror ``ex:<month>``) and the grace start ``qg:<month>`` µs (None: not
    started)."""

    limit: int | None
    used: int
    grace_us: int | None


class Accounts(Repository):
    SCRIPTS = (AUTHENTICATE, REGISTER, ROTATE_KEY, CHANGE_EMAIL, CUE_PARTITION)

    async def authenticate(
        self, key_sha: str, *, ip: str = "", ip_limit: int = 0, month: str = "", count: bool, now_us: int
    ) -> AuthResult:
        """Resolve ``key_sha`` ("" = no API key) and, with ``count``, count the request in the
        key's window (a valid key) or the IP's (anything else): one script call."""
        k = self.keys
        res = await self.scripts.run(
            AUTHENTICATE,
            [k.api_keys, k.rotated_key(key_sha), k.key_window(key_sha), k.ip_window(ip)],
            [now_us, key_sha, k.account_prefix, ip_limit, month, 1 if count else 0, k.cue_partitions_prefix],
        )
        status, verdict = Status(int(res[0])), int(res[1])
        window = None if verdict == -1 else Window(verdict == 1, int(res[2]), int(res[3]), int(res[4]))
        if status is not Status.OK:
            return AuthResult(status, None, window, False)
        it = iter(res[7:])
        account = msgspec.convert(dict(zip(it, it, strict=True)), Account, strict=False)
        account.partitions = cue_partitions(str(res[6]))
        return AuthResult(status, account, window, res[5] == 1)

    async def note_cue_partition(self, account_id: str, partition: int) -> None:
        """Mark ``partition`` in the account's cue-partition bitmap (when it has one): before a
        cue is written there, so listings that read only the bitmap's partitions miss none."""
        await self.scripts.run(CUE_PARTITION, [self.keys.cue_partitions(account_id)], [partition])

    async def register(self, account: Account, slug_candidates: Sequence[str]) -> tuple[Status, str]:
        """Create ``account`` with the first free slug: (OK, slug) | (EXISTS, "") e-mail taken |
        (EXHAUSTED, "") every candidate taken."""
        k = self.keys
        fields = {
            f: (v if not isinstance(v, bool) else int(v))
            for f, v in msgspec.structs.asdict(account).items()
            if f not in ("slug", "partitions")
        }
        res = await self.scripts.run(
            REGISTER,
            [k.emails, k.api_keys, k.slugs, k.account(account.id), k.cue_partitions(account.id)],
            [
                account.email_lc,
                account.id,
                account.key_sha,
                len(slug_candidates),
                *slug_candidates,
                *pairs(fields),
            ],
        )
        status = Status(int(res[0]))
        return status, str(res[1]) if status is Status.OK else ""

    async def rotate_key(
        self,
        account_id: str,
        old_sha: str,
        new_sha: str,
        new_prefix: str,
        new_enc: str,
        *,
        ttl_ms: int,
        now_us: int,
    ) -> Status:
        """OK | CONFLICT: ``old_sha`` is no longer the account's key."""
        k = self.keys
        res = await self.scripts.run(
            ROTATE_KEY,
            [k.api_keys, k.account(account_id), k.rotated_key(old_sha)],
            [now_us, old_sha, new_sha, new_prefix, new_enc, ttl_ms, account_id],
        )
        return Status(int(res[0]))

    async def change_email(self, account_id: str, email: str, now_us: int) -> Status:
        """OK | EXISTS: another account has that e-mail."""
        k = self.keys
        res = await self.scripts.run(
            CHANGE_EMAIL, [k.emails, k.account(account_id)], [now_us, account_id, email.lower(), email]
        )
        return Status(int(res[0]))

    async def set_fields(self, account_id: str, fields: Mapping[str, str | int]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.account(account_id), mapping=dict(fields))  # type: ignore[arg-type]
            pipe.sadd(self.keys.dirty(self.keys.auth), f"acct:{account_id}")  # for the snapshotter
            await pipe.execute()

    async def webhook_secrets(self, account_ids: Sequence[str]) -> dict[str, str]:
        """Current webhook secrets of these accounts, one pipeline."""
        ids = list(dict.fromkeys(account_ids))
        async with self.redis.pipeline(transaction=False) as pipe:
            for account_id in ids:
                pipe.hget(self.keys.account(account_id), "wh_secret")
            rows = await pipe.execute()
        return {a: str(v) for a, v in zip(ids, rows, strict=True) if v is not None}

    async def notice_targets(self, account_id: str) -> NoticeTargets:
        row = await self.redis.hmget(self.keys.account(account_id), ["alert_url", "alert_secret", "email"])
        return NoticeTargets(str(row[0] or ""), str(row[1] or ""), str(row[2] or ""))

    async def quota_states(self, account_ids: Sequence[str], month: str) -> list[QuotaState]:
        """The monthly limit, the month's executions and the grace start of each account: one
        pipeline to the auth slot."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for acct in account_ids:
                pipe.hmget(self.keys.account(acct), ["exec_limit", f"ex:{month}", f"qg:{month}"])
            rows = await pipe.execute()
        return [
            QuotaState(
                None if limit is None else int(limit), int(used or 0), None if grace is None else int(grace)
            )
            for limit, used, grace in rows
        ]

    async def start_grace(
        self, account_ids: Sequence[str], month: str, previous_month: str, now_us: int
    ) -> list[int]:
        """Start the grace period ``qg:<month>`` of each account at ``now_us`` unless one started
        already (HSETNX: racing schedulers agree on one start); drops ``previous_month``'s. Returns
        each account's grace start µs. One pipeline."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for acct in account_ids:
                key = self.keys.account(acct)
                pipe.hsetnx(key, f"qg:{month}", now_us)
                pipe.hdel(key, f"qg:{previous_month}")
                pipe.hget(key, f"qg:{month}")
                pipe.sadd(self.keys.dirty(self.keys.auth), f"acct:{acct}")  # for the snapshotter
            res = await pipe.execute()
        return [int(res[4 * i + 2]) for i in range(len(account_ids))]
