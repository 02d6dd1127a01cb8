"""on_failure (CONTRACT.md §12.1, §12.2) is durable: the script that records a final failure —
webhook attempts exhausted, worker lease exhausted, worker missed — pauses the cue and queues
the webhook and e-mail notices on the partition's notices stream in the same call, so no crash
can lose them; the dispatcher's notice sender delivers them (one ``cue.failed`` body for every
transport). E-mail: ``smtp://`` upgrades with STARTTLS and never sends credentials in clear —
a real SMTP server (aiosmtpd) on 127.0.0.1, with and without STARTTLS."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from cuefast.config import Settings
from cuefast.engine.dispatcher import Dispatcher
from cuefast.engine.notices import MAX_ATTEMPTS, NoticeSender
from cuefast.engine.webhooks import Webhooks
from cuefast.times import parse_datetime
from tests.api.worker_helpers import Env, make_env
from tests.conftest import Api
from tests.test_alerts import hmac_v1
from tests.test_client import free_port
from tests.test_dispatcher import Receiver, drain, env, webhook_cue
from tests.test_fire import fire


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


__all__ = ["env"]


async def stream(api: Api, name: str = "notices") -> list[dict[str, str]]:
    """Every entry of every partition's notices stream (fields only)."""
    k = api.rt.keys
    out: list[dict[str, str]] = []
    for p in range(k.partitions):
        out += [dict(f) for _, f in await api.rt.store.redis.xrange(k.notices(p))]
    return out


def sender_for(api: Api, clock: Any, webhooks: Webhooks | None = None, **settings: Any) -> NoticeSender:
    """A notice sender with these settings, through ``webhooks`` (default: the runtime's)."""
    return NoticeSender(api.rt.store, api.rt.settings.replace(**settings), clock, webhooks or api.rt.webhooks)


async def test_a_webhook_final_failure_queues_on_failure_with_the_result(env: Any) -> None:
    """The dispatcher that recorded the failure keeps nothing in memory: the pause is done and
    both notices are queued by ``delivery_finish.lua``; another process's notice sender sends the
    webhook later, with the failure's own time, signed, byte-exact (§12.2)."""
    api, clock, sched, dispatcher, receiver = env
    notices = Receiver()
    await notices.start()
    other = Webhooks(api.rt.settings)  # another process's outbound client
    try:
        key = await api.register()
        secret = (await api.request("GET", "/v1/auth/webhook-secret", key)).json()["webhook_secret"]
        receiver.mode = "500"
        cue = await webhook_cue(
            api,
            key,
            receiver.url,
            name="failer",
            retry={"max_attempts": 1},
            on_failure={"pause": True, "webhook": notices.url},
        )
        failed_at = parse_datetime("2031-01-06T09:00:00.25Z")
        clock.set(failed_at)
        await sched.tick()
        assert await drain(dispatcher) == ["failed"]
        await dispatcher.close()  # as if it died right after the script
        detail = (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
        assert detail["status"] == "paused" and detail["next_run"] is None
        queued = await stream(api)
        eid = (await api.request("GET", f"/v1/executions?cue_id={cue['id']}", key)).json()["executions"][0][
            "id"
        ]
        assert sorted(e["k"] for e in queued) == ["f", "w"]
        assert {e["i"] for e in queued} == {eid} and {e["t"] for e in queued} == {str(failed_at)}
        assert notices.requests == []
        clock.advance(42)  # sent later: failed_at stays the failure's time
        assert await sender_for(api, clock, other).step() == 2
        (req,) = notices.requests
        body = json.loads(req["body"])
        assert req["body"] == json.dumps(body, sort_keys=True).encode()
        assert body == {
            "attempts": 1,
            "cue_id": cue["id"],
            "cue_name": "failer",
            "dashboard_url": None,
            "event": "cue.failed",
            "execution_id": eid,
            "failed_at": "2031-01-06T09:00:00.250000+00:00",
            "last_error": "Webhook endpoint returned server error (500)",
            "last_http_status": 500,
        }
        h = req["headers"]
        assert h["User-Agent"] == "CueAPI/1.0" and h["Content-Type"] == "application/json"
        assert h["X-CueAPI-Timestamp"] == str(clock.now_us() // 1_000_000)
        assert h["X-CueAPI-Signature"] == hmac_v1(secret, h["X-CueAPI-Timestamp"], req["body"])
        assert await stream(api) == []  # acknowledged and deleted
    finally:
        await other.close()
        assert notices.runner is not None
        await notices.runner.cleanup()


async def test_an_unaccepted_on_failure_webhook_is_retried_then_given_up(env: Any) -> None:
    api, clock, sched, dispatcher, receiver = env
    notices = Receiver()
    notices.mode = "500"
    await notices.start()
    try:
        key = await api.register()
        receiver.mode = "500"
        cue = await webhook_cue(
            api,
            key,
            receiver.url,
            retry={"max_attempts": 1},
            on_failure={"webhook": notices.url, "email": False},
        )
        await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})
        await fire(api, key, cue["id"])
        assert await drain(dispatcher) == ["failed"]
        sender = sender_for(api, clock)
        await sender.start()
        assert await sender.step() == 1
        for wait in (10, 60, 300):
            clock.advance(wait)
            assert await sender.step() == 1
        clock.advance(3600)
        assert await sender.step() == 0
        assert len(notices.requests) == MAX_ATTEMPTS
        assert len({json.loads(r["body"])["failed_at"] for r in notices.requests}) == 1  # same event
    finally:
        assert notices.runner is not None
        await notices.runner.cleanup()


@pytest.fixture
async def wenv(settings: Any) -> Any:
    async with make_env(settings) as e:
        yield e


async def test_worker_final_failures_pause_and_queue_in_the_script(wenv: Env) -> None:
    """Lease exhausted and missed: the scheduler's scripts pause the cue and queue the notices;
    nothing is left to a task of the scheduler process."""
    key = await wenv.api.register()
    hook = "http://127.0.0.1:9/failed"
    leased_cue = await wenv.cue(
        key, name="leased", retry={"max_attempts": 1}, on_failure={"webhook": hook, "pause": True}
    )
    missed_cue = await wenv.cue(key, name="missed", on_failure={"pause": True, "email": False})
    leased = await wenv.fire(key, leased_cue["id"])
    missed = await wenv.fire(key, missed_cue["id"])
    assert (await wenv.claim(key, leased)).status_code == 200
    wenv.clock.advance(901)
    await wenv.sched.tick()  # no notice sending: the state below is what the scripts wrote
    assert (await wenv.get(key, leased))["status"] == "failed"
    assert (await wenv.get(key, missed))["status"] == "missed"
    for cue in (leased_cue, missed_cue):
        detail = (await wenv.api.request("GET", f"/v1/cues/{cue['id']}", key)).json()
        assert detail["status"] == "paused" and detail["next_run"] is None
    queued = sorted((e["i"], e["k"]) for e in await stream(wenv.api))
    assert queued == sorted([(leased, "f"), (leased, "w")])
    assert not hasattr(wenv.rt.reaper, "flush_notices")  # no in-memory on_failure work


# ---- SMTP: STARTTLS, never credentials in clear ---------------------------------------------
def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cuefast test smtp")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "smtp.pem", tmp / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class Recorder:
    """aiosmtpd handler and authenticator: what arrived, and whether over TLS."""

    def __init__(self) -> None:
        self.logins: list[tuple[str, str, bool]] = []  # (user, password, over TLS)
        self.messages: list[tuple[bytes, bool]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append((bytes(envelope.content or b""), session.ssl is not None))
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login.decode(), data.password.decode(), session.ssl is not None))
        return AuthResult(success=data.login == b"ops@x.io" and data.password == b"s3cr/t")


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Recorder, int, Path]]:
    """(recorder, port, CA file) of a real SMTP server on 127.0.0.1; ``starttls`` param: offered."""
    cert, key = self_signed(tmp_path)
    recorder = Recorder()
    kwargs: dict[str, Any] = {"authenticator": recorder.authenticate}
    if request.param:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
        kwargs |= {"tls_context": tls, "require_starttls": True}
    else:
        kwargs["auth_require_tls"] = False  # it would take credentials in clear: they must not come
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield recorder, port, cert
    finally:
        controller.stop()


async def failed_with_mail(env: Any) -> tuple[Api, Any, Dispatcher]:
    api, clock, sched, dispatcher, receiver = env
    key = await api.register("owner@example.com")
    receiver.mode = "500"
    cue = await webhook_cue(api, key, receiver.url, name="mailer", retry={"max_attempts": 1})
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})
    await fire(api, key, cue["id"])
    assert await drain(dispatcher) == ["failed"]
    return api, clock, dispatcher


@pytest.mark.parametrize("smtp_server", [True], indirect=True)
async def test_smtp_upgrades_with_starttls_before_the_credentials(
    env: Any, smtp_server: tuple[Recorder, int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, port, ca = smtp_server
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # the certificate is checked against it
    api, clock, dispatcher = await failed_with_mail(env)
    sender = sender_for(api, clock, smtp_url=f"smtp://ops%40x.io:s3cr%2Ft@127.0.0.1:{port}")
    await sender.start()
    assert await sender.step() == 1
    assert recorder.logins == [("ops@x.io", "s3cr/t", True)]  # only after the upgrade
    ((data, over_tls),) = recorder.messages
    assert over_tls and b"Subject: [cuefast] Cue mailer failed" in data
    assert await stream(api) == []


@pytest.mark.parametrize("smtp_server", [True], indirect=True)
async def test_an_unverifiable_certificate_fails_the_send(
    env: Any, smtp_server: tuple[Recorder, int, Path], caplog: pytest.LogCaptureFixture
) -> None:
    recorder, port, _ = smtp_server  # its CA is not trusted here
    api, clock, dispatcher = await failed_with_mail(env)
    sender = sender_for(api, clock, smtp_url=f"smtp://ops%40x.io:s3cr%2Ft@127.0.0.1:{port}")
    await sender.start()
    with caplog.at_level("ERROR", logger="cuefast.engine.notices"):
        assert await sender.step() == 1
    assert recorder.logins == [] and recorder.messages == []
    assert any("notice not sent" in r.getMessage() for r in caplog.records)
    assert "s3cr" not in caplog.text
    assert await stream(api) == []  # rescheduled (the retry zset), not lost
    assert sum([await api.rt.store.redis.zcard(api.rt.keys.notice_retries(p)) for p in range(4)]) == 1
    clock.advance(10)
    await sender.step()
    assert recorder.messages == []


@pytest.mark.parametrize("smtp_server", [False], indirect=True)
async def test_no_credentials_in_clear_without_starttls(
    env: Any, smtp_server: tuple[Recorder, int, Path], caplog: pytest.LogCaptureFixture
) -> None:
    recorder, port, _ = smtp_server
    api, clock, dispatcher = await failed_with_mail(env)
    sender = sender_for(api, clock, smtp_url=f"smtp://ops%40x.io:s3cr%2Ft@127.0.0.1:{port}")
    await sender.start()
    with caplog.at_level("ERROR", logger="cuefast.engine.notices"):
        assert await sender.step() == 1
        for wait in (10, 60, 300):  # retried by the notice policy, then given up
            clock.advance(wait)
            assert await sender.step() == 1
        clock.advance(3600)
        assert await sender.step() == 0
    assert recorder.logins == [] and recorder.messages == []
    refusals = [r for r in caplog.records if "offers no STARTTLS" in r.getMessage()]
    assert len(refusals) == MAX_ATTEMPTS and all(r.levelname == "ERROR" for r in refusals)
    assert "s3cr" not in caplog.text
    # without credentials, a server without STARTTLS still gets the mail
    sender = sender_for(api, clock, smtp_url=f"smtp://127.0.0.1:{port}")
    key = await api.register("second@example.com")
    cue = await webhook_cue(api, key, env[4].url, name="plain", retry={"max_attempts": 1})
    await api.request("PATCH", f"/v1/cues/{cue['id']}", key, json={"status": "paused"})
    await fire(api, key, cue["id"])
    assert await drain(dispatcher) == ["failed"]
    assert await sender.step() == 1
    ((_, over_tls),) = recorder.messages
    assert not over_tls
