"""OpenTelemetry (issue 16 item 6): spans for API requests, scheduler passes and webhook sends, the
``traceparent`` a receiver sees on both send paths, the OTLP export of a real ``cuefast serve``,
and nothing of it when tracing is off or the extra is missing."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from cuefast import logs, signing, tracing
from cuefast.api.app import create_app
from cuefast.api.edge import Edge
from cuefast.config import Settings, load_settings
from cuefast.engine import webhooks as outbound
from cuefast.engine.webhooks import TracedWebhooks, Webhooks, delivery_request
from cuefast.models import CueConfig
from cuefast.runtime import Runtime
from cuefast.times import parse_datetime
from tests.conftest import make_api
from tests.procs import Processes, free_port, process_env, until_healthy
from tests.test_dispatcher import Receiver, dispatch_env, drain, webhook_cue

PARENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into the SDK's in-memory exporter (off again after the test)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    try:
        yield exporter
    finally:
        tracing.disable()
        provider.shutdown()


def traceparent_of(span: Any) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


async def test_api_request_span_joins_the_callers_trace(
    settings: Settings, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, rt = await make_api(settings)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    logs.setup("INFO", "json", out)
    try:
        key = await api.register()
        spans.clear()
        res = await api.request(
            "GET", "/v1/cues", key, headers={"traceparent": TRACEPARENT, "X-Request-Id": "rq-1"}
        )
        assert res.status_code == 200 and res.headers["x-request-id"] == "rq-1"

        async def boom(*a: object, **k: object) -> None:
            raise RuntimeError("internals")

        monkeypatch.setattr(api.rt.cues, "get", boom)  # a hot route (api/fast.py)
        res = await api.request("GET", "/v1/cues/cue_abcdefghijkl", key, headers={"X-Request-Id": "rq-2"})
        assert res.status_code == 500
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        await api.client.aclose()
        await rt.close()
    listed, failed = spans.get_finished_spans()
    assert listed.name == "GET /v1/cues" and listed.kind is SpanKind.SERVER
    assert listed.parent is not None and f"{listed.parent.span_id:016x}" == PARENT_SPAN
    assert f"{listed.context.trace_id:032x}" == PARENT_TRACE
    assert listed.attributes["http.response.status_code"] == 200
    assert listed.attributes["cuefast.request_id"] == "rq-1"
    assert failed.name == "GET /v1/cues/{cue_id}" and failed.parent is None  # no traceparent: a root
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["http.response.status_code"] == 500
    (line,) = [json.loads(x) for x in out.getvalue().splitlines() if "unhandled error" in x]
    assert line["request_id"] == "rq-2"
    assert line["trace_id"] == f"{failed.context.trace_id:032x}"  # a log line joins its span


async def test_both_send_paths_carry_the_spans_traceparent(spans: InMemorySpanExporter) -> None:
    """The http1 fast path and the aiohttp path send the send span's ``traceparent`` (a custom one
    is replaced); the signature still verifies over the bytes received."""
    receiver = Receiver()
    await receiver.start()
    client = outbound.client(load_settings({}, allow_private_callbacks=True))
    assert isinstance(client, TracedWebhooks)
    secret = "whsec_" + "ab" * 32
    ts = int(time.time())
    try:
        for custom in ({"traceparent": "00-" + "f" * 32 + "-" + "e" * 16 + "-01"}, {"X-Note": "caf\u00e9"}):
            cfg = msgspec.convert(
                {
                    "schedule": {"type": "recurring", "cron": "* * * * *"},
                    "callback": {"url": receiver.url, "headers": custom},
                },
                CueConfig,
            )
            body, headers = delivery_request(
                cfg,
                secret=secret,
                ts=ts,
                cue_id="cue_abcdefghijkl",
                execution_id="8f83b427-f528-4a74-907f-f9f1c90c4999",
                name="n",
                payload='{"a": 1}',
                scheduled_for="2026-11-23T11:42:00+00:00",
                attempt=1,
            )
            result = await client.send(receiver.url, "POST", body, headers, 5)
            assert result.ok, result
        assert client._client is not None and client._session is not None  # one send on each path
    finally:
        await client.close()
        assert receiver.runner is not None
        await receiver.runner.cleanup()
    sent = spans.get_finished_spans()
    assert [s.name for s in sent] == ["webhook POST", "webhook POST"]
    for span, req in zip(sent, receiver.requests, strict=True):
        h = req["headers"]
        assert h["traceparent"] == traceparent_of(span)
        assert signing.verify(req["body"], h["X-CueAPI-Signature"], secret, h["X-CueAPI-Timestamp"])
        assert span.kind is SpanKind.CLIENT
        assert span.attributes["cuefast.execution_id"] == "8f83b427-f528-4a74-907f-f9f1c90c4999"
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["http.response.status_code"] == 200
        assert "url.full" not in span.attributes  # a callback's path or query may hold a token


async def test_scheduler_pass_and_delivery_spans(settings: Settings, spans: InMemorySpanExporter) -> None:
    async with dispatch_env(settings) as (api, clock, sched, dispatcher, receiver):
        key = await api.register()
        await webhook_cue(api, key, receiver.url)
        clock.set(parse_datetime("2031-01-06T09:00:00.5Z"))
        spans.clear()
        assert await sched.tick() == 1
        assert await drain(dispatcher) == ["success"]
    names = [s.name for s in spans.get_finished_spans()]
    passes = [s for s in spans.get_finished_spans() if s.name == "scheduler.pass"]
    assert len(passes) == 1 and passes[0].attributes["cuefast.executions_created"] == 1, names
    (send,) = [s for s in spans.get_finished_spans() if s.name == "webhook POST"]
    assert receiver.requests[0]["headers"]["traceparent"] == traceparent_of(send)


async def test_off_means_the_plain_edge_and_client(settings: Settings) -> None:
    assert tracing.tracer is None
    rt = Runtime(settings)
    try:
        assert type(rt.webhooks) is Webhooks
        assert isinstance(create_app(rt, manage_runtime=False), Edge)
    finally:
        await rt.close()
    assert not tracing.configure(otel=False, environ={})
    assert not tracing.configure(otel=True, environ={"OTEL_SDK_DISABLED": "true"})
    assert tracing.tracer is None


def test_missing_extra_is_one_warning_and_no_tracing() -> None:
    """Without the ``opentelemetry`` packages (blocked here: every server module still imports),
    asking for tracing logs one line and runs without it; without asking, tracing stays off and
    cuefast's span code is not loaded (redis-py may import ``opentelemetry`` itself: its metrics
    are opt-in and cuefast never turns them on)."""
    code = """
import sys, logging, io
blocked = "--blocked" in sys.argv
if blocked:
    for name in ("opentelemetry", "opentelemetry.trace"):
        sys.modules[name] = None
from cuefast import logs, tracing
import cuefast.api.app, cuefast.engine.dispatcher, cuefast.engine.scheduler, cuefast.runtime
out = io.StringIO()
logs.setup("INFO", "json", out)
on = tracing.configure(otel=True, environ={}) if blocked else tracing.configure(otel=False, environ={})
print(on, tracing.tracer is None, "opentelemetry.propagate" in sys.modules)
print(out.getvalue())
"""
    for flag, expect in (("--blocked", "False True False"), ("--plain", "False True False")):
        res = subprocess.run(
            [sys.executable, "-c", code, flag], capture_output=True, text=True, timeout=60, check=True
        )
        first, _, rest = res.stdout.partition("\n")
        assert first == expect, res.stdout + res.stderr
        if flag == "--blocked":
            line = json.loads(rest.strip())
            assert line["level"] == "WARNING" and "install cuefast[otel]" in line["message"]


class Collector:
    """A real OTLP/HTTP receiver: ``POST /v1/traces`` with a protobuf export request."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        export = trace_service_pb2.ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        for rs in export.resource_spans:
            for ss in rs.scope_spans:
                self.spans.extend(ss.spans)
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_a_real_server_exports_spans_and_signs_traceparent_webhooks(
    settings: Settings, tmp_path: Path
) -> None:
    """``cuefast serve`` with ``OTEL_EXPORTER_OTLP_ENDPOINT``: the API span continues the
    caller's trace, a scheduler pass fires a one-time cue, its delivery reaches a real receiver
    with a ``traceparent`` naming the exported send span, and JSON log lines carry request ids."""
    collector, receiver = Collector(), Receiver()
    await collector.start()
    await receiver.start()
    port = free_port()
    env = process_env(
        settings,
        CUEFAST_PORT=str(port),
        CUEFAST_LOG_LEVEL="DEBUG",
        CUEFAST_LOG_FORMAT="json",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_SERVICE_NAME="cuefast-test",
    )
    try:
        async with Processes(tmp_path / "logs", lifetime=80) as procs:
            procs.start("serve", "serve", env=env)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                await until_healthy(http)
                reg = await http.post("/v1/auth/register", json={"email": "otel@example.com"})
                key = reg.json()["api_key"]
                auth = {"Authorization": f"Bearer {key}"}
                secret = (await http.get("/v1/auth/webhook-secret", headers=auth)).json()["webhook_secret"]
                at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
                res = await http.post(
                    "/v1/cues",
                    headers={**auth, "traceparent": TRACEPARENT, "X-Request-Id": "create-1"},
                    json={
                        "name": "once",
                        "schedule": {"type": "once", "at": at},
                        "callback": {"url": receiver.url},
                        "payload": {"k": 1},
                    },
                )
                assert res.status_code == 201, res.text
                assert res.headers["x-request-id"] == "create-1"
                async with asyncio.timeout(30):
                    while not receiver.requests:
                        await asyncio.sleep(0.05)
                (req,) = receiver.requests
                h = req["headers"]
                assert signing.verify(req["body"], h["X-CueAPI-Signature"], secret, h["X-CueAPI-Timestamp"])
                _, trace_id, span_id, _ = h["traceparent"].split("-")
                async with asyncio.timeout(20):
                    while not {"POST /v1/cues", "scheduler.pass"} <= {
                        s.name for s in collector.spans
                    } or not any(s.span_id.hex() == span_id for s in collector.spans):
                        await asyncio.sleep(0.05)
            (create,) = [s for s in collector.spans if s.name == "POST /v1/cues"]
            assert create.trace_id.hex() == PARENT_TRACE and create.parent_span_id.hex() == PARENT_SPAN
            (send,) = [s for s in collector.spans if s.span_id.hex() == span_id]
            assert send.name == "webhook POST" and send.trace_id.hex() == trace_id
            err = procs.procs["serve"].stderr()
            lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
            assert lines and all(x["ts"].endswith("Z") for x in lines)
            assert any(x["message"].startswith("tracing on") for x in lines)
            assert secret not in err and key not in err
    finally:
        for runner in (collector.runner, receiver.runner):
            if runner is not None:
                await runner.cleanup()
