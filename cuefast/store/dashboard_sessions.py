"""Dashboard sessions: the sha256 of a session cookie → the signed-in key's sha and a CSRF token."""

from __future__ import annotations

from typing import NamedTuple

from cuefast.store.repository import Repository


class DashboardSession(NamedTuple):
    key_sha: str
    """sha256 of the API key that signed in (authenticated again on every request)"""
    csrf: str
    """the session's CSRF token (every POST form carries it)"""


class DashboardSessions(Repository):
    async def create(self, session_sha: str, session: DashboardSession, ttl_ms: int) -> None:
        value = f"{session.key_sha}\t{session.csrf}"  # on the wire: covered by WAIT (durable state)
        await self.wire.call("SET", self.keys.dashboard_session(session_sha), value, "PX", ttl_ms)

    async def get(self, session_sha: str) -> DashboardSession | None:
        value = await self.wire.call("GET", self.keys.dashboard_session(session_sha))
        if value is None:
            return None
        key_sha, _, csrf = str(value).partition("\t")
        return DashboardSession(key_sha, csrf) if key_sha and csrf else None

    async def delete(self, session_sha: str) -> None:
        await self.wire.call("DEL", self.keys.dashboard_session(session_sha))
