"""Alerts end to end (CONTRACT.md §12): streaks over every transport and final failure, the three
alert types, dedup, the signed alert webhook with retries, and on_failure e-mail over SMTP —
real Redis, real HTTP and SMTP receivers on 127.0.0.1, injected clock."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from cuefast.config import Settings
from cuefast.engine.mail import Mailer
from cuefast.engine.notices import MAX_ATTEMPTS, NoticeSender
from cuefast.errors import ConfigError
from cuefast.times import parse_datetime
from tests.api.worker_helpers import Env, make_env
from tests.conftest import Api
from tests.test_dispatcher import Receiver, drain, env, webhook_cue  # noqa: F401  (fixture)
from tests.test_fire import fire


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


VF_MSG = "Execution {} reported success but failed verification (required evidence missing)."


def hmac_v1(secret: str, ts: str, body: bytes) -> str:
    """An independent implementation of the §10.3 signature."""
    return "v1=" + hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()


async def alerts(api: Api, key: str, query: str = "") -> list[dict[str, Any]]:
    res = await api.request("GET", f"/v1/alerts{query}", key)
    assert res.status_code == 200, res.text
    items: list[dict[str, Any]] = res.json()["alerts"]
    return items


async def outcome(api: Api, key: str, eid: str, body: dict[str, Any]) -> dict[str, Any]:
    res = await api.request("POST", f"/v1/executions/{eid}/outcome", key, json=body)
    assert res.status_code == 200, res.text
    out: dict[str, Any] = res.json()
    return out


async def paused_cue(api: Api, key: str, url: str, **over: Any) -> dict[str, Any]:
    cue = await webhook_cue(api, key, url, **over)
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})
    return cue


def sender_for(e: Any, settings: Settings | None = None) -> NoticeSender:
    api, clock, _, _, _ = e
    return NoticeSender(api.rt.store, settings or api.rt.settings, clock, api.rt.webhooks)


async def test_verification_failed_alert_is_posted_signed_with_the_never_fetched_secret(env: Any) -> None:
    """Checklist 49: the alert secret exists from registration; the POST is byte-exact and signed."""
    api, clock, _, dispatcher, receiver = env
    key = await api.register()
    alert_url = receiver.url.replace("/hook", "/alerts")
    res = await api.request("PATCH", "/v1/auth/me", key, json={"alert_webhook_url": alert_url})
    assert res.status_code == 200, res.text
    cue = await paused_cue(api, key, receiver.url, verification={"mode": "require_external_id"})
    ex = await fire(api, key, cue["id"])
    assert await drain(dispatcher) == ["success"]
    got = await outcome(api, key, ex["id"], {"success": True, "result": "done"})
    assert got["outcome_state"] == "verification_failed"
    sender = sender_for(env)
    await sender.start()
    assert await sender.step() == 1
    (req,) = [r for r in receiver.requests if r["path"] == "/alerts"]
    (listed,) = await alerts(api, key)
    h = req["headers"]
    assert h["Content-Type"] == "application/json" and h["User-Agent"] == "CueAPI/1.0"
    assert h["X-CueAPI-Alert-Id"] == listed["id"] and h["X-CueAPI-Alert-Type"] == "verification_failed"
    assert h["X-CueAPI-Timestamp"] == str(clock.now_us() // 1_000_000)
    body = json.loads(req["body"])
    assert req["body"] == json.dumps(body, sort_keys=True).encode()  # canonical form (§10.2)
    assert body == {
        "alert_id": listed["id"],
        "alert_type": "verification_failed",
        "created_at": listed["created_at"].replace("Z", "+00:00"),
        "cue_id": cue["id"],
        "execution_id": ex["id"],
        "message": VF_MSG.format(ex["id"]),
        "metadata": {"outcome_state": "verification_failed", "transport": "webhook"},
        "severity": "warning",
    }
    secret = (await api.request("GET", "/v1/auth/alert-webhook-secret", key)).json()["alert_webhook_secret"]
    assert h["X-CueAPI-Signature"] == hmac_v1(secret, h["X-CueAPI-Timestamp"], req["body"])
    assert listed == {
        "id": listed["id"],
        "cue_id": cue["id"],
        "execution_id": ex["id"],
        "alert_type": "verification_failed",
        "severity": "warning",
        "message": VF_MSG.format(ex["id"]),
        "metadata": {"outcome_state": "verification_failed", "transport": "webhook"},
        "acknowledged": False,
        "created_at": listed["created_at"],
    }
    assert await sender.step() == 0  # delivered once, acknowledged
    # /verify valid:false raises nothing (§8.8); verification_pending etc. neither
    await api.request("POST", f"/v1/executions/{ex['id']}/verify", key, json={"valid": False})
    assert len(await alerts(api, key)) == 1


async def test_three_failure_outcomes_on_a_webhook_cue_raise_exactly_one_alert(env: Any) -> None:
    """Checklist 48, the per-cue threshold, and a success resetting the streak."""
    api, clock, _, dispatcher, receiver = env
    key = await api.register()
    cue = await paused_cue(api, key, receiver.url)
    ids = [(await fire(api, key, cue["id"]))["id"] for _ in range(8)]
    assert await drain(dispatcher) == ["success"] * 8  # delivered: no verdict yet
    for eid in ids[:2]:
        await outcome(api, key, eid, {"success": False, "error": "bad"})
    assert await alerts(api, key) == []
    await outcome(api, key, ids[2], {"success": False})
    (a,) = await alerts(api, key, "?alert_type=consecutive_failures")
    assert a["execution_id"] == ids[2] and a["cue_id"] == cue["id"]
    assert a["message"] == f"Cue {cue['id']} has 3 consecutive failed executions."
    assert a["metadata"] == {"consecutive_failures": 3}
    await outcome(api, key, ids[3], {"success": False})  # a 4th failure raises none
    assert len(await alerts(api, key)) == 1
    await outcome(api, key, ids[4], {"success": True})  # success resets the streak
    clock.advance(1)
    for eid in ids[5:8]:
        await outcome(api, key, eid, {"success": False})
    second = await alerts(api, key)
    assert [x["execution_id"] for x in second] == [ids[7], ids[2]]
    # a cue's own threshold
    other = await paused_cue(api, key, receiver.url, name="two", alerts={"consecutive_failures": 2})
    e1, e2 = (await fire(api, key, other["id"]))["id"], (await fire(api, key, other["id"]))["id"]
    clock.advance(1)
    await outcome(api, key, e1, {"success": False})
    await outcome(api, key, e2, {"success": False})
    (b,) = await alerts(api, key, f"?since={second[0]['created_at']}&limit=1")
    assert b["cue_id"] == other["id"] and b["metadata"] == {"consecutive_failures": 2}
    for x in [*second, b]:  # ids are canonical name-based UUIDs (RFC 9562 variant, version 5)
        u = uuid.UUID(x["id"])
        assert str(u) == x["id"] and u.version == 5 and u.variant == uuid.RFC_4122


async def test_final_delivery_failure_is_a_verdict_counted_once(env: Any) -> None:
    api, clock, _, dispatcher, receiver = env
    key = await api.register()
    cue = await paused_cue(api, key, receiver.url, retry={"max_attempts": 1})
    receiver.mode = "500"
    first = await fire(api, key, cue["id"])
    assert await drain(dispatcher) == ["failed"]  # attempts exhausted: failure verdict (1)
    await outcome(api, key, first["id"], {"success": False})  # verdict already fixed: not counted
    receiver.mode = "ok"
    ids = [(await fire(api, key, cue["id"]))["id"] for _ in range(2)]
    await drain(dispatcher)
    await outcome(api, key, ids[0], {"success": False})  # (2)
    assert await alerts(api, key) == []
    await outcome(api, key, ids[1], {"success": False})  # (3)
    (a,) = await alerts(api, key)
    assert a["alert_type"] == "consecutive_failures" and a["execution_id"] == ids[1]
    stored = await api.rt.store.cues.get(cue["id"])
    assert stored is not None and stored["fs"] == "3" and stored["fsa"] == "1"


async def test_outcome_timeout_raises_an_alert_and_counts_as_failure(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register()
    await api.request(
        "PATCH", "/v1/auth/me", key, json={"alert_webhook_url": receiver.url.replace("/hook", "/alerts")}
    )
    cue = await webhook_cue(
        api,
        key,
        receiver.url,
        delivery={"outcome_deadline_seconds": 120},
        alerts={"consecutive_failures": 1},
    )
    clock.set(parse_datetime("2031-01-06T09:00:00Z"))
    await sched.tick()
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})
    assert await drain(dispatcher) == ["pending_outcome"]
    clock.advance(119)
    await sched.tick()
    assert await alerts(api, key) == []
    clock.advance(1)
    await sched.tick()
    items = await alerts(api, key)
    by_type = {a["alert_type"]: a for a in items}
    assert set(by_type) == {"outcome_timeout", "consecutive_failures"}
    t = by_type["outcome_timeout"]
    eid = t["execution_id"]
    assert t["message"] == f"Execution {eid} did not report an outcome within 120 seconds."
    assert t["metadata"] == {"outcome_deadline_seconds": 120, "transport": "webhook"}
    assert t["created_at"] == "2031-01-06T09:02:00Z"
    assert by_type["consecutive_failures"]["metadata"] == {"consecutive_failures": 1}
    # a late outcome: stored, no new verdict, no second alert
    await outcome(api, key, eid, {"success": False})
    assert len(await alerts(api, key)) == 2
    sender = sender_for(env)
    await sender.start()
    assert await sender.step() == 2
    posted = sorted(r["headers"]["X-CueAPI-Alert-Type"] for r in receiver.requests if r["path"] == "/alerts")
    assert posted == ["consecutive_failures", "outcome_timeout"]


async def test_alert_webhook_retried_after_500_then_given_up(env: Any) -> None:
    api, clock, _, _, receiver = env
    key = await api.register()
    await api.request(
        "PATCH", "/v1/auth/me", key, json={"alert_webhook_url": receiver.url.replace("/hook", "/alerts")}
    )
    cue = await paused_cue(api, key, receiver.url, verification={"mode": "require_result_url"})
    a, b = (await fire(api, key, cue["id"]))["id"], (await fire(api, key, cue["id"]))["id"]
    sender = sender_for(env)
    await sender.start()
    receiver.mode = "500"
    await outcome(api, key, a, {"success": True})
    assert await sender.step() == 1
    assert await sender.step() == 0  # the retry is not due yet
    clock.advance(9)
    assert await sender.step() == 0
    receiver.mode = "ok"
    clock.advance(1)
    assert await sender.step() == 1  # second attempt after 10 s: accepted
    hits = [r for r in receiver.requests if r["path"] == "/alerts"]
    assert len(hits) == 2 and hits[0]["body"] == hits[1]["body"]
    assert hits[0]["headers"]["X-CueAPI-Alert-Id"] == hits[1]["headers"]["X-CueAPI-Alert-Id"]
    clock.advance(3600)
    assert await sender.step() == 0
    # a receiver that never accepts: MAX_ATTEMPTS attempts (10 s, 60 s, 300 s apart), then none
    receiver.requests.clear()
    receiver.mode = "500"
    await outcome(api, key, b, {"success": True})
    assert await sender.step() == 1
    for wait in (10, 60, 300):
        clock.advance(wait)
        assert await sender.step() == 1
    clock.advance(86400)
    assert await sender.step() == 0
    assert len(receiver.requests) == MAX_ATTEMPTS


async def test_notice_of_a_dead_sender_is_taken_over(env: Any) -> None:
    api, _, _, _, receiver = env
    key = await api.register()
    await api.request(
        "PATCH", "/v1/auth/me", key, json={"alert_webhook_url": receiver.url.replace("/hook", "/alerts")}
    )
    cue = await paused_cue(api, key, receiver.url, verification={"mode": "require_external_id"})
    ex = await fire(api, key, cue["id"])
    await outcome(api, key, ex["id"], {"success": True})
    dead, alive = sender_for(env), sender_for(env)
    await dead.start()
    assert len(await api.rt.store.notices.read(dead.consumer, 10, 0)) == 1  # read, never finished
    assert await alive.step() == 0
    assert await alive.step(reclaim=True, idle_ms=0) == 1
    assert [r["path"] for r in receiver.requests] == ["/alerts"]
    assert await alive.step(reclaim=True, idle_ms=0) == 0


async def test_no_alert_webhook_url_keeps_the_alert_listed(env: Any) -> None:
    api, _, _, _, receiver = env
    key = await api.register()
    cue = await paused_cue(api, key, receiver.url, verification={"mode": "require_artifacts"})
    ex = await fire(api, key, cue["id"])
    await outcome(api, key, ex["id"], {"success": True, "artifacts": []})  # empty = absent
    sender = sender_for(env)
    await sender.start()
    assert await sender.step() == 1
    assert receiver.requests == [] and len(await alerts(api, key)) == 1


# ---- worker transport: missed and lease exhaustion are final failures ---------------------
@pytest.fixture
async def wenv(settings: Settings) -> AsyncIterator[Env]:
    async with make_env(settings) as e:
        yield e


async def test_worker_missed_and_lease_exhausted_complete_a_streak(wenv: Env) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key, retry={"max_attempts": 1}, alerts={"consecutive_failures": 2})
    missed = await wenv.fire(key, cue["id"])
    leased = await wenv.fire(key, cue["id"])
    assert (await wenv.claim(key, leased)).status_code == 200
    await wenv.tick(901)  # lease (900 s) exhausted, the other unclaimed for 900 s: missed
    assert (await wenv.get(key, missed))["status"] == "missed"
    assert (await wenv.get(key, leased))["status"] == "failed"
    (a,) = await alerts(wenv.api, key)
    assert a["alert_type"] == "consecutive_failures" and a["metadata"] == {"consecutive_failures": 2}
    assert a["execution_id"] in (missed, leased)
    # worker outcomes count too: a success resets, failures build a new streak
    ids = [await wenv.fire(key, cue["id"]) for _ in range(3)]
    await outcome(wenv.api, key, ids[0], {"success": True})
    await outcome(wenv.api, key, ids[1], {"success": False})
    assert len(await alerts(wenv.api, key)) == 1
    wenv.clock.advance(1)
    await outcome(wenv.api, key, ids[2], {"success": False, "error": "x"})
    newest, _ = await alerts(wenv.api, key)
    assert newest["execution_id"] == ids[2]


async def test_worker_verification_failed_alert_says_worker(wenv: Env) -> None:
    key = await wenv.api.register()
    cue = await wenv.cue(key, verification={"mode": "require_external_id"})
    eid = await wenv.fire(key, cue["id"])
    assert (await wenv.claim(key, eid)).status_code == 200
    assert (await outcome(wenv.api, key, eid, {"success": True}))["outcome_state"] == "verification_failed"
    (a,) = await alerts(wenv.api, key)
    assert a["metadata"] == {"outcome_state": "verification_failed", "transport": "worker"}


# ---- on_failure e-mail over SMTP ------------------------------------------------------------
class SmtpReceiver:
    """A minimal SMTP server on 127.0.0.1 (enough for smtplib): records each message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self.got = asyncio.Event()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.session, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        sender, rcpts = "", []
        say("220 test ESMTP")
        while line := (await reader.readline()).decode().rstrip("\r\n"):
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                say("250 test")
            elif verb == "MAIL":
                sender = line.split(":", 1)[1].strip()
                say("250 OK")
            elif verb == "RCPT":
                rcpts.append(line.split(":", 1)[1].strip())
                say("250 OK")
            elif verb == "DATA":
                say("354 go ahead")
                data = b""
                while (chunk := await reader.readline()) != b".\r\n":
                    data += chunk
                self.messages.append((sender, rcpts, data))
                self.got.set()
                say("250 queued")
            elif verb == "QUIT":
                say("221 bye")
                await writer.drain()
                break
            else:
                say("250 OK")
            await writer.drain()
        writer.close()


async def test_on_failure_email_sent_over_smtp(env: Any) -> None:
    api, _, _, dispatcher, receiver = env
    smtp = SmtpReceiver()
    await smtp.start()
    try:
        email_addr = "owner@example.com"
        key = await api.register(email_addr)
        cue = await paused_cue(api, key, receiver.url, name="mailer", retry={"max_attempts": 1})
        silent = await paused_cue(
            api, key, receiver.url, name="silent", retry={"max_attempts": 1}, on_failure={"email": False}
        )
        receiver.mode = "500"
        ex = await fire(api, key, cue["id"])
        await fire(api, key, silent["id"])
        assert sorted(await drain(dispatcher)) == ["failed", "failed"]
        url = f"smtp://127.0.0.1:{smtp.port}?from=alerts@cuefast.test"
        sender = sender_for(env, msgspec.structs.replace(api.rt.settings, smtp_url=url))
        await sender.start()
        assert await sender.step() == 1  # only the cue with on_failure.email
        ((mail_from, rcpts, data),) = smtp.messages
        assert mail_from == "<alerts@cuefast.test>" and rcpts == [f"<{email_addr}>"]
        msg = email.message_from_bytes(data, policy=email.policy.default)
        assert msg["Subject"] == "[cuefast] Cue mailer failed" and msg["To"] == email_addr
        text = msg.get_body().get_content()  # type: ignore[union-attr]
        assert ex["id"] in text and "Webhook endpoint returned server error (500)" in text
        # at most 10 per account per hour
        for _ in range(11):
            await fire(api, key, cue["id"])
        await drain(dispatcher)
        await sender.step()
        assert len(smtp.messages) == 10
    finally:
        assert smtp.server is not None
        smtp.server.close()
        await smtp.server.wait_closed()


async def test_email_logged_without_smtp(env: Any, caplog: pytest.LogCaptureFixture) -> None:
    api, _, _, dispatcher, receiver = env
    key = await api.register()
    cue = await paused_cue(api, key, receiver.url, retry={"max_attempts": 1})
    receiver.mode = "500"
    await fire(api, key, cue["id"])
    await drain(dispatcher)
    sender = sender_for(env)
    await sender.start()
    with caplog.at_level("WARNING", logger="cuefast.engine.notices"):
        assert await sender.step() == 1
    assert any("on_failure e-mail (no SMTP configured)" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
async def test_dispatcher_run_sends_notices(env: Any) -> None:
    """The hook: a running dispatcher also runs the notice sender (same session)."""
    api, _, _, dispatcher, receiver = env
    key = await api.register()
    await api.request(
        "PATCH", "/v1/auth/me", key, json={"alert_webhook_url": receiver.url.replace("/hook", "/alerts")}
    )
    cue = await paused_cue(api, key, receiver.url, verification={"mode": "require_external_id"})
    ex = await fire(api, key, cue["id"])
    await outcome(api, key, ex["id"], {"success": True})
    stop = asyncio.Event()
    runner = type(dispatcher)(api.rt.store, api.rt.settings, dispatcher.clock, api.rt.webhooks)
    task = asyncio.create_task(runner.run(stop, block_ms=50))

    async def posted() -> None:
        while not any(r["path"] == "/alerts" for r in receiver.requests):
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(posted(), 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def test_smtp_url_forms_and_no_password_in_repr() -> None:
    m = Mailer("smtps://ops%40x.io:s3cr%2Ft@mail.example.com?from=alerts@x.io")
    assert (m.tls, m.host, m.port, m.user, m.password, m.sender) == (
        True,
        "mail.example.com",
        465,
        "ops@x.io",
        "s3cr/t",
        "alerts@x.io",
    )
    assert "s3cr" not in repr(m)
    plain = Mailer("smtp://127.0.0.1:2525")
    assert (plain.tls, plain.port, plain.user, plain.sender) == (False, 2525, "", "cuefast@localhost")
    for bad in ("http://mail.example.com", "smtp://", "mail.example.com:25"):
        with pytest.raises(ConfigError):
            Mailer(bad)


def test_notice_and_alert_keys_share_the_partition_slot() -> None:
    from redis.crc import key_slot

    from cuefast.store.keys import Keys

    k = Keys("cf", 16)
    for p in (0, 7, 15):
        slots = {
            key_slot(x.encode())
            for x in (k.notices(p), k.notice_retries(p), k.alert(p, "a"), k.alert_index(p, "acct", "x"))
        }
        assert slots == {key_slot(k.execution(p, "e").encode())}
