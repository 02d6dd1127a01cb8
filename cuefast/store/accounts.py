"""Accounts: API-key authentication with its rate-limit count, registration, key and e-mail changes."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import msgspec

from cuefast.models import Account
from cuefast.store.connect import UNREACHABLE
from cuefast.store.repository import Repository, pairs
from cuefast.store.scripts import Script
from cuefast.store.status import Status
from cuefast.store.turn_batches import Batches

AUTHENTICATE = Script(
    "accounts_authenticate",
    keys=("api_keys", "rotated", "key_window", "ip_window"),
    argv=(
        "now",
        "key_sha",
        "account_prefix",
        "ip_limit",
        "month",
        "count",
        "partitions_prefix",
        "account_id",
        "ip_here",
        "names_prefix",
    ),
    rest="reservations",
)
CREATE = Script(
    "accounts_create",
    keys=("api_keys", "account", "cue_partitions"),
    argv=("account_id", "key_sha"),
    rest="fields",
)
REGISTER = Script(
    "accounts_register", keys=("emails", "slugs"), argv=("email_lc", "account_id", "slug_count"), rest="slugs"
)
ROTATE_KEY = Script(
    "accounts_rotate_key",
    keys=("api_keys", "account"),
    argv=("now", "old_sha", "new_sha", "new_prefix", "new_enc", "account_id"),
)
RETIRE_KEY = Script(
    "accounts_retire_key", keys=("api_keys", "rotated"), argv=("old_sha", "account_id", "ttl_ms")
)
CUE_PARTITION = Script("accounts_cue_partition", keys=("cue_partitions",), argv=("partition",))
RESERVE_EMAIL = Script("accounts_reserve_email", keys=("emails",), argv=("email_lc", "account_id"))
CHANGE_EMAIL = Script("accounts_change_email", keys=("account",), argv=("now", "email_lc", "email"))
RELEASE_EMAIL = Script("accounts_release_email", keys=("emails",), argv=("email_lc", "account_id"))


def _reserved(made: int, holder: str) -> tuple[Status, str] | None:
    """A reservation's answer from the auth script: None when it was not made (not counted, or
    the key's account is not the one the cue id was drawn for)."""
    return None if made == 0 else (Status(made), holder)


@functools.lru_cache(maxsize=4096)
def cue_partitions(reply: str) -> tuple[int, ...] | None:
    """The partitions an account may have cues on, from the auth script's reply: its bitmap in
    hex (bit 0 = the first byte's high bit), or "*" (any — no bitmap: None). Few distinct
    bitmaps recur, so each is decoded once per process."""
    if reply == "*":
        return None
    octets = bytes.fromhex(reply)
    return tuple(i * 8 + j for i, b in enumerate(octets) for j in range(8) if b & (0x80 >> j))


class Window(NamedTuple):
    """A rate-limit verdict: ``counted`` (False = over the limit, not counted), the requests
    in the 60 s window (including this one when counted), the limit, the oldest request µs."""

    counted: bool
    requests: int
    limit: int
    oldest_us: int


class Reservation(NamedTuple):
    """A create's name reservation folded into the auth script (docs/DESIGN.md "Cue names"):
    ``name`` for ``cue_id``, drawn for ``account_id`` (a hint: nothing is reserved unless the key
    resolves to that account); ``limit``: with the account's ``cue_limit`` as the hint."""

    name: str
    cue_id: str
    account_id: str
    limit: bool


class Asker(NamedTuple):
    """Whose requests an auth call counts: the API key's sha ("" = none), the client IP, the
    IP's limit and the month of the usage warning (requests alike are counted in one call)."""

    key_sha: str
    ip: str
    ip_limit: int
    month: str


class AuthResult(NamedTuple):
    """``status`` OK (``account`` set), NO_KEY, NOT_FOUND (an unknown key) or ROTATED;
    ``window`` is None when the request was not counted; ``warn``: executions this month
    reached 80 % of the monthly limit; ``reserved``: what the folded ``Reservation`` answered —
    (OK, ""), (EXISTS, holder), (COUNT, "") as ``CueStore.reserve_name`` — None: not made."""

    status: Status
    account: Account | None
    window: Window | None
    warn: bool
    reserved: tuple[Status, str] | None = None


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
    SCRIPTS = (
        AUTHENTICATE,
        CREATE,
        REGISTER,
        ROTATE_KEY,
        RETIRE_KEY,
        CUE_PARTITION,
        RESERVE_EMAIL,
        CHANGE_EMAIL,
        RELEASE_EMAIL,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batches: Batches[Asker, Reservation | None, AuthResult] = Batches(self._count)

    async def authenticate(
        self,
        key_sha: str,
        *,
        ip: str = "",
        ip_limit: int = 0,
        month: str = "",
        count: bool,
        now_us: int,
        reserve: Reservation | None = None,
    ) -> AuthResult:
        """Resolve ``key_sha`` ("" = no API key) and, with ``count``, count the request in the
        key's window (a valid key) or the IP's (anything else): one script call on one auth
        shard — the key's, which is its account's. Two only for a key issued before the shards
        (its account lives elsewhere) or a request without a valid key whose IP is on another
        shard than the key. ``reserve``: and reserve a create's cue name once the request is
        counted (the account's cue-names hash is on its shard), in the same call. Counted
        requests of one key and IP that arrive in the same event-loop iteration share that call
        (``turn_batches``): it counts them, and makes their reservations, in order, as it would
        have for their calls sent one after another."""
        who = Asker(key_sha, ip, ip_limit, month)
        if count and key_sha:
            return await self._batches.join(who, now_us, reserve)
        return (await self._count(who, [reserve] if count else [], now_us))[0]

    async def _count(
        self, who: Asker, reserves: Sequence[Reservation | None], now_us: int
    ) -> list[AuthResult]:
        """``authenticate`` for the requests of ``who``, one per item of ``reserves`` (none: one
        request, not counted), one result each."""
        k = self.keys
        n = len(reserves)
        shard = k.key_shard(who.key_sha) if who.key_sha else k.ip_shard(who.ip)
        res = await self._authenticate(shard, who, "", n=n, now_us=now_us, reserves=reserves)
        status = Status(int(res[0]))
        if status is Status.ELSEWHERE:
            account_id = str(res[6])
            home = k.account_shard(account_id)
            if home != shard:  # a key older than the shards: the account's shard answers
                res = await self._authenticate(home, who, account_id, n=n, now_us=now_us, reserves=reserves)
                status = Status(int(res[0]))
            else:  # the map names an account that is gone
                status, res = (
                    Status.NOT_FOUND,
                    [Status.NOT_FOUND, -2 if n else -1, 0, who.ip_limit, now_us, 0],
                )
        if int(res[1]) == -2:  # not a valid key: the requests count in their IP's window, on the IP's shard
            by_ip = who._replace(key_sha="")
            res = [status, *(await self._authenticate(k.ip_shard(who.ip), by_ip, "", n=n, now_us=now_us))[1:]]
        counted = int(res[1])
        windows: list[Window | None] = [None]
        if counted != -1:
            total, limit, oldest = int(res[2]), int(res[3]), int(res[4])
            first = total - counted  # in the window before these requests
            windows = [
                Window(True, first + i + 1, limit, oldest)
                if i < counted
                else Window(False, total, limit, oldest)
                for i in range(n)
            ]
        if status is not Status.OK:
            return [AuthResult(status, None, w, False) for w in windows]
        it = iter(res[9:])
        account = msgspec.convert(dict(zip(it, it, strict=True)), Account, strict=False)
        account.partitions = cue_partitions(str(res[6]))
        warn = res[5] == 1
        if not res[7]:  # no reservation asked: the common case
            return [AuthResult(status, account, w, warn) for w in windows]
        answers = iter(zip(res[7], res[8], strict=True))  # one per reservation asked, in order
        results = []
        for w, r in zip(windows, reserves or [None], strict=True):
            reserved = None
            if r is not None:
                made, holder = next(answers)
                reserved = _reserved(int(made), str(holder))
            results.append(AuthResult(status, account, w, warn, reserved))
        return results

    async def _authenticate(
        self,
        shard: int,
        who: Asker,
        account_id: str,
        *,
        n: int,
        now_us: int,
        reserves: Sequence[Reservation | None] = (),
    ) -> list[Any]:
        """One call of the auth script on ``shard``, counting ``n`` requests of ``who`` and making
        their name reservations (``reserves``: one per request, None where it has none)."""
        k = self.keys
        key_sha, ip = who.key_sha, who.ip
        ip_here = k.ip_shard(ip) == shard
        slot = k.shard(shard)
        res: list[Any] = await self.scripts.run(
            AUTHENTICATE,
            [
                k.api_keys(shard),
                f"{slot}:rot:{key_sha}",
                k.key_window(shard, key_sha),
                k.ip_window(ip) if ip_here else f"{slot}:rl:ip:",
            ],
            [
                now_us,
                key_sha,
                k.account_prefix(shard),
                who.ip_limit,
                who.month,
                n,
                k.cue_partitions_prefix(shard),
                account_id,
                1 if ip_here else 0,
                k.names_prefix(shard),
                *(
                    arg
                    for i, r in enumerate(reserves, 1)
                    if r is not None
                    for arg in (i, r.name, r.cue_id, r.account_id, 1 if r.limit else 0)
                ),
            ],
        )
        return res

    async def account_of_key(self, key_sha: str) -> str | None:
        """The account id an API-key hash maps to (tests, benches)."""
        found = await self.wire.call("HGET", self.keys.key_index(key_sha), key_sha)
        return None if found is None else str(found)

    async def note_cue_partition(self, account_id: str, partition: int) -> None:
        """Mark ``partition`` in the account's cue-partition bitmap (when it has one): before a
        cue is written there, so listings that read only the bitmap's partitions miss none."""
        await self.scripts.run(CUE_PARTITION, [self.keys.cue_partitions(account_id)], [partition])

    async def register(self, account: Account, slug_candidates: Sequence[str]) -> tuple[Status, str]:
        """Create ``account`` with the first free slug: (OK, slug) | (EXISTS, "") e-mail taken |
        (EXHAUSTED, "") every candidate taken. ``account.key_sha`` must be of the account's
        shard (``Keys.key_shard``). Three ordered steps over two slots, each safe to stop
        after: the account on its shard (unreachable: nobody has its key yet), then its e-mail
        and slug on the global slot (or the account deleted again), then its slug and the
        snapshot mark on its shard."""
        k = self.keys
        assert k.key_shard(account.key_sha) == k.account_shard(account.id), "a key of another shard"
        fields = {
            f: (v if not isinstance(v, bool) else int(v))
            for f, v in msgspec.structs.asdict(account).items()
            if f not in ("slug", "partitions")
        }
        home = k.account_shard(account.id)
        created = await self.scripts.run(
            CREATE,
            [k.api_keys(home), k.account(account.id), k.cue_partitions(account.id)],
            [account.id, account.key_sha, *pairs(fields)],
        )
        if Status(int(created[0])) is not Status.OK:  # pragma: no cover - 72 random bits
            raise RuntimeError("account id taken")
        res = await self.scripts.run(
            REGISTER,
            [k.emails, k.slugs],
            [account.email_lc, account.id, len(slug_candidates), *slug_candidates],
        )
        status = Status(int(res[0]))
        if status is not Status.OK:
            async with self.wire.pipeline() as pipe:  # one slot: in order on one connection
                pipe.hdel(k.api_keys(home), account.key_sha)
                pipe.delete(k.account(account.id), k.cue_partitions(account.id))
                await pipe.execute()
            return status, ""
        slug = str(res[1])
        await self.set_fields(account.id, {"slug": slug})
        return status, slug

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
        """OK | CONFLICT: ``old_sha`` is no longer the account's key. ``new_sha`` must be of the
        account's shard. Two steps: the account's shard takes the new key (the old one answers
        key_rotated from then on: authentication trusts the account's ``key_sha``), then the old
        key's shard drops its map entry and marks it rotated."""
        k = self.keys
        home = k.account_shard(account_id)
        assert k.key_shard(new_sha) == home, "a key of another shard"
        res = await self.scripts.run(
            ROTATE_KEY,
            [k.api_keys(home), k.account(account_id)],
            [now_us, old_sha, new_sha, new_prefix, new_enc, account_id],
        )
        status = Status(int(res[0]))
        if status is Status.OK:
            await self.scripts.run(
                RETIRE_KEY, [k.key_index(old_sha), k.rotated_key(old_sha)], [old_sha, account_id, ttl_ms]
            )
        return status

    async def change_email(self, account_id: str, email: str, now_us: int) -> Status:
        """OK | EXISTS: another account has that e-mail. Three steps: the new e-mail reserved
        (global slot), the account changed (its shard), the old one released (global slot); a
        retried change completes one that stopped between them."""
        k = self.keys
        email_lc = email.lower()
        res = await self.scripts.run(RESERVE_EMAIL, [k.emails], [email_lc, account_id])
        if Status(int(res[0])) is not Status.OK:
            return Status.EXISTS
        res = await self.scripts.run(CHANGE_EMAIL, [k.account(account_id)], [now_us, email_lc, email])
        if Status(int(res[0])) is not Status.OK:  # the account is gone: free the reservation
            await self.scripts.run(RELEASE_EMAIL, [k.emails], [email_lc, account_id])
            return Status.NOT_FOUND
        old = str(res[1])
        if old != email_lc:
            await self.scripts.run(RELEASE_EMAIL, [k.emails], [old, account_id])
        return Status.OK

    async def set_fields(self, account_id: str, fields: Mapping[str, str | int]) -> None:
        async with self.wire.pipeline() as pipe:  # one slot: in order, in one write, on one connection
            pipe.hset(self.keys.account(account_id), fields)
            pipe.sadd(self.keys.dirty(self.keys.account_slot(account_id)), f"acct:{account_id}")
            await pipe.execute()

    async def webhook_secrets(self, account_ids: Sequence[str]) -> dict[str, str | None]:
        """Current webhook secrets of these accounts, one pipeline; an account without one is
        left out. None: the account's shard could not be reached (Redis Cluster, its primary
        down; the others' secrets are read), so its webhooks cannot be signed now."""
        ids = list(dict.fromkeys(account_ids))
        async with self.wire.pipeline() as pipe:
            for account_id in ids:
                pipe.hget(self.keys.account(account_id), "wh_secret")
            rows = await pipe.execute(raise_on_error=False)
        out: dict[str, str | None] = {}
        for a, v in zip(ids, rows, strict=True):
            if isinstance(v, UNREACHABLE):
                out[a] = None
            elif isinstance(v, Exception):
                raise v
            elif v is not None:
                out[a] = str(v)
        return out

    async def notice_targets(self, account_id: str) -> NoticeTargets:
        key = self.keys.account(account_id)
        row = await self.wire.call("HMGET", key, "alert_url", "alert_secret", "email")
        return NoticeTargets(str(row[0] or ""), str(row[1] or ""), str(row[2] or ""))

    async def quota_states(self, account_ids: Sequence[str], month: str) -> list[QuotaState]:
        """The monthly limit, the month's executions and the grace start of each account: one
        pipeline to the auth slot."""
        async with self.wire.pipeline() as pipe:
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
        async with self.wire.pipeline() as pipe:
            for acct in account_ids:
                key = self.keys.account(acct)
                pipe.hsetnx(key, f"qg:{month}", now_us)
                pipe.hdel(key, f"qg:{previous_month}")
                pipe.hget(key, f"qg:{month}")
                pipe.sadd(
                    self.keys.dirty(self.keys.account_slot(acct)), f"acct:{acct}"
                )  # for the snapshotter
            res = await pipe.execute()
        return [int(res[4 * i + 2]) for i in range(len(account_ids))]
