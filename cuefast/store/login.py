"""Login records (§16): device codes, magic-link and one-time session tokens, login rate limits.

Every record is found by the SHA-256 hex of its secret (a device code's value, a token), never
by the secret itself, and lives on the auth shard that digest names (``Keys.login_shard``): one
slot per script. A device code's hash holds ``st`` (status), ``ca``/``exp`` (µs), ``tok`` (the
SHA-256 of its magic-link token while ``email_sent``), ``email``, and once approved ``acct``,
``new`` and ``sealed`` (what the first poll hands over, encrypted with a key derived from the
device code itself, so Redis never holds an API key or a session token in clear).
"""

from __future__ import annotations

from typing import NamedTuple

from cuefast.store.repository import Repository, pairs
from cuefast.store.scripts import Script
from cuefast.store.status import Status

LIMIT = Script("login_limit", keys=("window",), argv=("now", "window_us", "limit"))
DEVICE_CREATE = Script("login_device_create", keys=("device",), argv=("now", "expires", "keep_s"))
DEVICE_STEP = Script("login_device_step", keys=("device",), argv=("now", "from", "to", "tok"), rest="fields")
DEVICE_POLL = Script("login_device_poll", keys=("device", "polls"), argv=("now", "limit"))


class Limited(NamedTuple):
    """A login rate-limit verdict: ``ok`` (counted), else the oldest request µs in the window."""

    ok: bool
    oldest_us: int


class Poll(NamedTuple):
    """A poll's answer: the status; with ``approved``, what the first poll takes over."""

    status: str
    sealed: str = ""
    account_id: str = ""
    email: str = ""
    new: bool = False


class Login(Repository):
    SCRIPTS = (LIMIT, DEVICE_CREATE, DEVICE_STEP, DEVICE_POLL)

    async def take(self, kind: str, subject: str, *, limit: int, window_us: int, now_us: int) -> Limited:
        """Count one request of ``subject`` (an IP, a digest) against the ``kind`` limit."""
        res = await self.scripts.run(
            LIMIT, [self.keys.login_window(kind, subject)], [now_us, window_us, limit]
        )
        ok = Status(int(res[0])) is Status.OK
        return Limited(ok, 0 if ok else int(res[1]))

    async def give_back(self, kind: str, subject: str, now_us: int) -> None:
        """Uncount a request ``take`` counted at ``now_us`` (another limit refused it)."""
        await self.wire.call("LREM", self.keys.login_window(kind, subject), -1, str(now_us))

    async def create_device(self, code_sha: str, *, now_us: int, expires_us: int, keep_s: int) -> bool:
        """False: a live code has this value."""
        res = await self.scripts.run(
            DEVICE_CREATE, [self.keys.device_code(code_sha)], [now_us, expires_us, keep_s]
        )
        return Status(int(res[0])) is Status.OK

    async def device(self, code_sha: str) -> dict[str, str] | None:
        """A device code's fields (module docstring), or None."""
        fields = await self.redis.hgetall(self.keys.device_code(code_sha))
        return {str(f): str(v) for f, v in fields.items()} or None

    async def step(
        self,
        code_sha: str,
        *,
        now_us: int,
        from_status: str,
        to_status: str,
        tok: str = "",
        fields: dict[str, str | int] | None = None,
    ) -> tuple[Status, str]:
        """Move a code ``from_status`` → ``to_status`` (login_device_step.lua): (status, the
        code's status when WRONG_STATE — ``expired`` once past its expiry)."""
        res = await self.scripts.run(
            DEVICE_STEP,
            [self.keys.device_code(code_sha)],
            [now_us, from_status, to_status, tok, *pairs(fields or {})],
        )
        status = Status(int(res[0]))
        return status, str(res[1]) if len(res) > 1 else ""

    async def poll(self, code_sha: str, *, limit: int, now_us: int) -> Poll | Limited:
        k = self.keys
        res = await self.scripts.run(
            DEVICE_POLL, [k.device_code(code_sha), k.device_polls(code_sha)], [now_us, limit]
        )
        if Status(int(res[0])) is Status.LIMIT:
            return Limited(False, int(res[1]))
        if res[1] == "approved":
            return Poll("approved", str(res[2]), str(res[3]), str(res[4]), res[5] == "1")
        return Poll(str(res[1]))

    async def put_token(self, key: str, value: str, *, now_us: int, ttl_s: int) -> None:
        """A one-time token's record (``Keys.magic_link`` / ``Keys.session_once``): ``value`` and
        its expiry µs (the clock's, so a record expires on the service's clock; the key's TTL
        drops it later)."""
        await self.wire.call("SET", key, f"{now_us + ttl_s * 1_000_000}|{value}", "EX", ttl_s + 60)

    async def take_token(self, key: str, now_us: int) -> str | None:
        """The value of a live one-time token, deleted as it is read (single use)."""
        held = await self.wire.call("GETDEL", key)
        if held is None:
            return None
        expires, _, value = str(held).partition("|")
        return value if expires.isdigit() and now_us < int(expires) else None

    async def account_id_of_email(self, email_lc: str) -> str | None:
        found = await self.redis.hget(self.keys.emails, email_lc)
        return None if found is None else str(found)

    async def account_fields(self, account_id: str) -> dict[str, str]:
        """The account hash (empty: no such account)."""
        fields = await self.redis.hgetall(self.keys.account(account_id))
        return {str(f): str(v) for f, v in fields.items()}
