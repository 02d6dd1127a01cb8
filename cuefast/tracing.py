"""Optional OpenTelemetry spans (``cuefast[otel]``): API requests, scheduler passes, webhook sends.

Off unless ``configure`` (``cuefast …`` at start-up) finds the ``opentelemetry`` packages
installed *and* ``CUEFAST_OTEL=true`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or its ``_TRACES_``
form) set; ``OTEL_SDK_DISABLED=true`` keeps it off. While off, ``tracer`` is None and nothing
else here runs (no ``opentelemetry`` import of ours): the API's edge is not wrapped, the
webhook client is the plain one (``engine.webhooks.client``) and a scheduler pass tests one
global. On, it installs the SDK's
tracer provider with a batching OTLP/HTTP exporter (its standard ``OTEL_*`` variables apply:
endpoint, headers, ``OTEL_SERVICE_NAME``, default ``cuefast``) unless the process already has a
provider (``opentelemetry-instrument``), which is then used.

A webhook carries the W3C ``traceparent`` of its send span so an agent can join its trace to
cuefast's. The header is not signed (CONTRACT.md §10.3 signs the timestamp and body only), so
adding it leaves the signature as it was; a ``traceparent``/``tracestate`` among a cue's custom
headers is replaced while tracing is on.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from cuefast import logs

log = logging.getLogger(__name__)

tracer: Any = None
"""The ``opentelemetry.trace.Tracer`` while tracing is on, else None (the one switch)."""
_provider: Any = None
"""The tracer provider ``configure`` installed itself (flushed at exit), else None."""
_TRACE_HEADERS = frozenset({"traceparent", "tracestate"})


def wanted(otel: bool, environ: Mapping[str, str]) -> bool:
    """Whether the settings ask for spans (installed or not)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return otel or bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure(*, otel: bool, environ: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on when asked for and installed (see the module docstring); True when on."""
    env = os.environ if environ is None else environ
    if not wanted(otel, env):
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        log.warning(
            "tracing asked for (CUEFAST_OTEL / OTEL_EXPORTER_OTLP_ENDPOINT) but %s is missing: "
            "install cuefast[otel]; no spans are exported",
            exc.name,
        )
        return False
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider):  # nobody set one: ours, exporting OTLP/HTTP
        resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or "cuefast"})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        global _provider
        _provider = provider
    enable(provider)
    log.info("tracing on: OpenTelemetry spans for API requests, scheduler passes and webhooks")
    return True


def enable(provider: Any = None) -> None:
    """Start making spans with ``provider`` (default: the global one)."""
    from cuefast import __version__

    global tracer
    if provider is None:
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
    tracer = provider.get_tracer("cuefast", __version__)
    logs.trace_ids = current_ids


def disable() -> None:
    global tracer
    tracer = None
    logs.trace_ids = None


def shutdown() -> None:
    """Flush and stop the provider ``configure`` installed (end of the process)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None
    disable()


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, None outside one (a log line's fields)."""
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


# --- the three kinds of span -------------------------------------------------------------------


def _from_asgi(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {
        k.decode("latin-1"): v.decode("latin-1")
        for k, v in headers
        if k.lower() in (b"traceparent", b"tracestate")
    }


@contextlib.contextmanager
def server_span(method: str, path: str, headers: Iterable[tuple[bytes, bytes]]) -> Iterator[Any]:
    """An API request's span (kind SERVER), the child of a valid incoming ``traceparent``."""
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind

    parent = extract(_from_asgi(headers))
    with tracer.start_as_current_span(
        method,
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method, "url.path": path},
    ) as span:
        yield span


def end_server_span(span: Any, method: str, route: str | None, status: int, request_id: str) -> None:
    """Name the span by its route template (never the raw path) and record the answer."""
    from opentelemetry.trace import Status, StatusCode

    if route:
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if request_id:
        span.set_attribute("cuefast.request_id", request_id)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """An internal span (a scheduler pass), the current span within the block."""
    with tracer.start_as_current_span(name, attributes=dict(attributes or {})) as current:
        yield current


@contextlib.contextmanager
def webhook_span(method: str, url: str, headers: Mapping[str, str]) -> Iterator[tuple[Any, dict[str, str]]]:
    """A webhook send's span (kind CLIENT) and the headers to send: ``headers`` with this span's
    ``traceparent`` (a custom ``traceparent``/``tracestate`` dropped). The span names the
    target's scheme, host and port, never its path or query (which may hold a token)."""
    from urllib.parse import urlsplit

    from opentelemetry.propagate import inject
    from opentelemetry.trace import SpanKind

    attributes: dict[str, Any] = {"http.request.method": method}
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        attributes["url.scheme"] = parts.scheme
        attributes["server.address"] = parts.hostname or ""
        attributes["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
    for header, key in (
        ("X-CueAPI-Cue-Id", "cuefast.cue_id"),
        ("X-CueAPI-Execution-Id", "cuefast.execution_id"),
        ("X-CueAPI-Attempt", "cuefast.attempt"),
        ("X-CueAPI-Alert-Id", "cuefast.alert_id"),
    ):
        if header in headers:
            attributes[key] = headers[header]
    with tracer.start_as_current_span(f"webhook {method}", kind=SpanKind.CLIENT, attributes=attributes) as sp:
        sent = {k: v for k, v in headers.items() if k.lower() not in _TRACE_HEADERS}
        inject(sent)
        yield sp, sent


def end_webhook_span(sp: Any, status: int | None, error: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    if status is not None:
        sp.set_attribute("http.response.status_code", status)
    if error:
        sp.set_status(Status(StatusCode.ERROR, error))
