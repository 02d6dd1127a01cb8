"""Delivery-time SSRF checks without a DNS lookup per attempt (CONTRACT.md §10.8, §14).

``Webhooks.send`` pre-checks what needs no DNS (scheme, userinfo, names, literal IPs); a name
is resolved and judged once per new connection by the connector's ``CheckedResolver``.
Real aiohttp requests to real receivers on 127.0.0.1; DNS is injected where it is counted.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from cuefast import ssrf
from cuefast.config import Settings
from cuefast.engine.dispatcher import Dispatcher
from cuefast.engine.webhooks import Webhooks
from cuefast.times import parse_datetime
from tests.test_dispatcher import drain, env, only_execution, webhook_cue

__all__ = ["env"]

STRICT = {"allow_private_callbacks": False, "allow_http_callbacks": True}


class CountingDNS:
    """An injected resolver: ``answers`` per host; every call is recorded."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.answers:
            raise OSError("no such host")
        return self.answers[host]


@asynccontextmanager
async def strict_dispatcher(
    api: Any, settings: Settings, clock: Any, dns: Any = None
) -> AsyncIterator[Dispatcher]:
    """A dispatcher under the strict policy, with its own outbound client using ``dns``."""
    strict = settings.replace(**STRICT)
    webhooks = Webhooks(strict, dns)
    d = Dispatcher(api.rt.store, strict, clock, webhooks)
    await d.start()
    try:
        yield d
    finally:
        await d.close()
        await webhooks.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "localhost"])
async def test_blocked_literal_or_name_needs_no_dns(env: Any, settings: Settings, host: str) -> None:
    api, clock, sched, _, receiver = env
    key = await api.register()
    url = f"http://{host}:{receiver.port}/hook"
    cue = await webhook_cue(api, key, url)  # saved under allow_private
    dns = CountingDNS({})
    async with strict_dispatcher(api, settings, clock, dns) as strict:
        clock.set(parse_datetime("2031-01-06T09:00:01Z"))
        await sched.tick()
        assert await drain(strict) == ["retrying"]
    assert dns.calls == [] and receiver.requests == []
    e = await only_execution(api, key, cue["id"])
    assert e["error_message"] == "Callback URL resolved to blocked IP" and e["http_status"] is None
    assert e["attempts"] == 1


async def test_name_resolving_to_blocked_ip_is_caught_by_the_connector(env: Any, settings: Settings) -> None:
    """The resolver hook is the one DNS check: its refusal surfaces through aiohttp as the
    contract's text, no request reaches the receiver."""
    _, _, _, _, receiver = env
    dns = CountingDNS({"hook.test": ["127.0.0.1"], "mixed.test": ["93.184.216.34", "10.0.0.7"]})
    strict = Webhooks(settings.replace(**STRICT), dns)
    try:
        for host in ("hook.test", "mixed.test", "nowhere.test"):
            res = await strict.send(f"http://{host}:{receiver.port}/hook", "POST", b"{}", {}, 5)
            assert res == (None, "Callback URL resolved to blocked IP", b""), host
    finally:
        await strict.close()
    assert [h.rstrip(".") for h in dns.calls] == ["hook.test", "mixed.test", "nowhere.test"]
    assert receiver.requests == []


async def test_dns_once_per_connection_not_per_attempt(env: Any) -> None:
    api, _, _, _, receiver = env
    dns = CountingDNS({"hook.test": ["127.0.0.1"]})
    webhooks = Webhooks(api.rt.settings, dns)
    try:
        for _ in range(5):
            sent = await webhooks.send(f"http://hook.test:{receiver.port}/hook", "POST", b"{}", {}, 5)
            assert (sent.status, sent.error) == (200, "")
    finally:
        await webhooks.close()
    assert len(receiver.requests) == 5
    assert len(dns.calls) == 1  # the kept-alive connection was reused; no lookup per attempt
    assert receiver.requests[0]["headers"]["Host"] == f"hook.test:{receiver.port}"


def _loopback_hostname() -> str | None:
    name = socket.gethostname()
    try:
        ip = ipaddress.ip_address(socket.gethostbyname(name))
    except (OSError, ValueError):
        return None
    return name if ip.is_loopback and name.lower() not in ssrf.BLOCKED_NAMES else None


async def test_execution_to_loopback_name_retries_under_strict_policy(env: Any, settings: Settings) -> None:
    """End to end with the system resolver: a saved callback whose name resolves to
    127.0.0.1 (this machine's hostname) becomes a retrying execution, never a crash."""
    name = _loopback_hostname()
    if name is None:
        pytest.skip("this machine's hostname does not resolve to a loopback address")
    api, clock, sched, _, receiver = env
    key = await api.register()
    cue = await webhook_cue(api, key, f"http://{name}:{receiver.port}/hook")
    async with strict_dispatcher(api, settings, clock) as strict:
        clock.set(parse_datetime("2031-01-06T09:00:01Z"))
        await sched.tick()
        assert await drain(strict) == ["retrying"]
    assert receiver.requests == []
    e = await only_execution(api, key, cue["id"])
    assert e["status"] == "retrying" and e["error_message"] == "Callback URL resolved to blocked IP"
