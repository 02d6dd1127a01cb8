"""The server's one outbound-HTTP path: SSRF-checked sends, signed headers, request bodies.

Every webhook cuefast sends — a cue's delivery attempt (CONTRACT.md §10), an on_failure
``cue.failed`` notice (§12.2), an alert (§12.6) — is built by ``signed_headers`` (with
``delivery_request`` / ``cue_failed`` for the bodies) and sent by ``Webhooks.send``.
One ``Webhooks`` per process (``Runtime.webhooks``) is handed to the dispatcher and its
notice sender.

One pooled ``aiohttp.ClientSession`` per process, opened at the first send and closed once
with the runtime; redirects are never followed, responses are not decompressed and at
most ``MAX_RESPONSE_BODY`` bytes of a 2xx body are read. The target is SSRF-checked at send
time without DNS (``precheck``: scheme, userinfo, names, literal IPs; the verdict is kept
per URL); a name is resolved and judged once per new connection by the connector's
``CheckedResolver``, which hands aiohttp only the checked address to connect to. A plain URL
(``plain_target``) with plain headers is sent by ``http1.Client`` instead: the same checks,
bound, timeout and texts at a fraction of aiohttp's CPU per request.

While tracing is on (``cuefast.tracing``) the process's client is ``TracedWebhooks``
(``client``): each send is a span whose W3C ``traceparent`` goes into the headers before
either path sends them, so both carry it; the signed bytes do not change.
"""

from __future__ import annotations

import asyncio
import functools
import re
import socket
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

import aiohttp
import httptools
from aiohttp.abc import AbstractResolver, ResolveResult

from cuefast import ssrf, tracing
from cuefast.config import Settings
from cuefast.engine import http1
from cuefast.errors import UnsafeURL
from cuefast.models import CueConfig
from cuefast.signing import canonical_json, decode_payload, sign
from cuefast.times import fmt_offset

USER_AGENT = "CueAPI/1.0"
PROTECTED = frozenset({"content-type", "content-length", "host", "transfer-encoding", "connection"})
MAX_ERROR = 500
"""An error text at most: a failed send's, and a ``cue.failed`` notice's ``last_error`` (§12.2)"""
MAX_RESPONSE_BODY = 65_536
"""The start of a 2xx response body that is read (a response-body outcome, §11)"""
INVALID_HEADER = "Webhook request has an invalid header"
"""A send refused before it left: a header value with a control character (CR/LF) or a
header name that is no HTTP token (``callback.headers`` are stored as given)."""
PRECHECK_MEMO = 10_000
"""Target URLs whose pre-check verdict a process keeps."""
_NO_HEADERS: Mapping[str, str] = {}


def error_for_status(status: int) -> str:
    if status == 404:
        return "Webhook endpoint not found (404)"
    if status == 408:
        return "Webhook endpoint timed out"
    if status == 500:
        return "Webhook endpoint returned server error (500)"
    if 400 <= status < 500:
        return f"Webhook endpoint rejected request ({status})"
    if status >= 500:
        return f"Webhook endpoint server error ({status})"
    return f"Webhook delivery failed ({status})"


def signed_headers(
    secret: str,
    ts: int,
    body: bytes,
    cueapi: Mapping[str, str] = _NO_HEADERS,
    *,
    custom: Mapping[str, str] = _NO_HEADERS,
    has_body: bool = True,
) -> dict[str, str]:
    """The headers of every outbound webhook (§10.1, §12.2, §12.6): the CueAPI User-Agent,
    the user's ``custom`` headers (a delivery's ``callback.headers``; never one that would
    replace the framing or an ``X-CueAPI-*`` header), JSON content type unless there is no
    body (GET), the §10.3 signature of ``body`` at ``ts`` (Unix s) keyed by ``secret``, then
    the request kind's own ``cueapi`` headers (a delivery's cue, execution and attempt; an
    alert's id and type)."""
    headers = {"User-Agent": USER_AGENT}
    for name, value in custom.items():
        low = name.lower()
        if low in PROTECTED or low.startswith("x-cueapi-"):
            continue  # custom headers never replace the signature or framing headers
        headers[name] = value
    if has_body:
        headers["Content-Type"] = "application/json"
    headers["X-CueAPI-Signature"] = sign(secret, ts, body)
    headers["X-CueAPI-Timestamp"] = str(ts)
    headers.update(cueapi)
    return headers


_PLAIN_ID = re.compile(r"[A-Za-z0-9_:.+\-]*")
"""an id or timestamp that JSON encodes as itself between quotes"""
_payload_json: dict[str, str] = {}
"""stored payload JSON → its canonical text (payloads repeat: a cue's every execution)"""


def delivery_body(
    attempt: int, *, cue_id: str, execution_id: str, name: str, payload: str, scheduled_for: str
) -> bytes:
    """``canonical_json`` of a delivery's body (§10.2), built from pieces: the same bytes, but
    the payload's canonical text is kept per stored payload and the fixed keys are not sorted
    and encoded again for every attempt."""
    canon = _payload_json.get(payload)
    if canon is None:
        canon = canonical_json(decode_payload(payload)).decode()
        if len(_payload_json) >= PRECHECK_MEMO:
            _payload_json.clear()
        _payload_json[payload] = canon
    if not (
        _PLAIN_ID.fullmatch(cue_id)
        and _PLAIN_ID.fullmatch(execution_id)
        and _PLAIN_ID.fullmatch(scheduled_for)
    ):
        return canonical_json(
            {
                "attempt": attempt,
                "cue_id": cue_id,
                "execution_id": execution_id,
                "name": name,
                "payload": decode_payload(payload),
                "scheduled_for": scheduled_for,
            }
        )
    return (
        f'{{"attempt": {attempt}, "cue_id": "{cue_id}", "execution_id": "{execution_id}", '
        f'"name": {canonical_json(name).decode()}, "payload": {canon}, "scheduled_for": "{scheduled_for}"}}'
    ).encode()


def delivery_request(
    cfg: CueConfig,
    *,
    secret: str,
    ts: int,
    cue_id: str,
    execution_id: str,
    name: str,
    payload: str,
    scheduled_for: str,
    attempt: int,
) -> tuple[bytes, dict[str, str]]:
    """A delivery attempt's request (§10.1): its canonical body (§10.2; none for GET) with
    the stored ``payload`` JSON, and its signed headers. ``secret`` is the account's webhook
    secret, ``scheduled_for`` the formatted slot, ``attempt`` 1-based."""
    has_body = cfg.callback.method != "GET"
    body = b""
    if has_body:
        body = delivery_body(
            attempt,
            cue_id=cue_id,
            execution_id=execution_id,
            name=name,
            payload=payload,
            scheduled_for=scheduled_for,
        )
    cueapi = {
        "X-CueAPI-Cue-Id": cue_id,
        "X-CueAPI-Execution-Id": execution_id,
        "X-CueAPI-Scheduled-For": scheduled_for,
        "X-CueAPI-Attempt": str(attempt),
    }
    return body, signed_headers(secret, ts, body, cueapi, custom=cfg.callback.headers, has_body=has_body)


def cue_failed(
    execution: Mapping[str, str],
    *,
    execution_id: str,
    cue_name: str | None,
    failed_at_us: int,
    dashboard_url: str,
    secret: str,
    ts: int,
) -> tuple[bytes, dict[str, str]]:
    """The on_failure webhook (§12.2) of a finally failed execution, whichever transport: its
    canonical body (§10.2) and signed headers. ``execution`` is the stored execution hash
    (``cue``, ``att``, ``em``, ``hs``); ``secret`` the account's webhook secret."""
    hs = execution.get("hs") or ""
    body = canonical_json(
        {
            "attempts": int(execution.get("att") or 0),
            "cue_id": execution.get("cue", ""),
            "cue_name": cue_name,
            "dashboard_url": dashboard_url or None,
            "event": "cue.failed",
            "execution_id": execution_id,
            "failed_at": fmt_offset(failed_at_us),
            "last_error": (execution.get("em") or "")[:MAX_ERROR],
            "last_http_status": int(hs) if hs else None,
        }
    )
    return body, signed_headers(secret, ts, body)


class CheckedResolver(AbstractResolver):
    """aiohttp resolver that only ever returns addresses that pass the SSRF rules."""

    def __init__(self, policy: ssrf.Policy, resolver: ssrf.Resolver | None = None) -> None:
        self.policy = policy
        self.resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        # the host alone is judged here (the URL's scheme was checked before the request)
        ip = await ssrf.resolve_host(host, port, self.policy, self.resolver)
        fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
        return [
            {
                "hostname": host,
                "host": ip,
                "port": port,
                "family": fam,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


class _NameNeedsDNS(Exception):
    """Raised by the pre-check's resolver: the host is a name, judged at connect time."""


async def _no_dns(host: str, port: int) -> list[str]:
    raise _NameNeedsDNS


async def precheck(url: str, policy: ssrf.Policy) -> None:
    """The send-time SSRF rules that need no DNS: scheme, userinfo, hostname syntax,
    blocked names and a literal IP's range (aiohttp connects to a literal IP without asking
    the resolver). A name is judged by ``CheckedResolver`` when the connector opens a new
    connection, so a send costs at most one lookup per new connection and none per
    request on a kept-alive one. Raises ``UnsafeURL`` with the delivery-time texts."""
    try:
        await ssrf.resolve_target(url, policy, _no_dns)
    except _NameNeedsDNS:
        return


PLAIN_METHODS = frozenset({"POST", "PUT", "PATCH", "GET", "DELETE"})
"""methods the fast path sends (a HEAD's response has no body to frame by its length)"""
_PLAIN_TARGET = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*(\?[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*)?")
"""a request target with nothing to quote (anything else goes through aiohttp, which quotes)"""
_PLAIN_HOST = re.compile(r"[a-z0-9.\-]+|\[[0-9a-f:.]+\]")


class _Plain(NamedTuple):
    """A URL as the fast path sends it: pool key (scheme, host, port), request target, Host."""

    key: tuple[str, str, int]
    target: str
    host_header: str


def plain_target(url: str) -> _Plain | None:
    """The fast path's parts of ``url``, or None when it needs aiohttp: a scheme other than
    http(s), userinfo, a host that is not plain ASCII, a path or query that aiohttp would
    quote or normalise (``%`` not followed by two hex digits, dot segments)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or "@" in parts.netloc:
        return None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if not _PLAIN_HOST.fullmatch(host):
        return None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not _PLAIN_TARGET.fullmatch(target) or "/." in parts.path or re.search(r"%(?![0-9A-Fa-f]{2})", target):
        return None
    default = 443 if scheme == "https" else 80
    host_header = host if port is None or port == default else f"{host}:{port}"
    return _Plain((scheme, host, port or default), target, host_header)


class SendResult(NamedTuple):
    """What one send came to: the HTTP status (None when no response came), the error text
    of a failed send ("" for a 2xx) and the start of a 2xx response's body."""

    status: int | None
    error: str
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


async def read_bounded(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The body up to ``limit`` bytes: ``StreamReader.read(n)`` returns only what has
    arrived so far, so a body sent in several pieces is read until its end or the limit."""
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = await content.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class Webhooks:
    """The process's outbound HTTP client (see the module docstring). ``resolver`` replaces
    the system DNS for the SSRF check (tests); the connector's bound is
    ``CUEFAST_DELIVERY_CONCURRENCY`` (the dispatcher's global slots bound its deliveries)."""

    def __init__(self, settings: Settings, resolver: ssrf.Resolver | None = None) -> None:
        self.policy = ssrf.Policy(
            allow_private=settings.allow_private_callbacks, allow_http=settings.allow_http_callbacks
        )
        self.resolver = resolver
        self.limit = settings.delivery_concurrency
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._prechecked: dict[str, str] = {}  # target URL → precheck verdict
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._client: http1.Client | None = None
        self._plain_urls: dict[str, _Plain | None] = {}  # target URL → its fast-path parts

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("webhooks client closed")
        connector = aiohttp.TCPConnector(
            limit=self.limit,
            limit_per_host=0,  # the dispatcher's per-host bound (an attempt waits without a slot)
            resolver=CheckedResolver(self.policy, self.resolver),
            use_dns_cache=False,
        )
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    async def close(self) -> None:
        """Close the pools (once; sending afterwards is an error)."""
        self._closed = True
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout

    async def _precheck(self, url: str) -> str:
        """``precheck``'s verdict for this URL ("" = passed, else the error text), kept per
        URL: it depends on the URL and the policy only (no DNS), and is a measurable part of
        a delivery's CPU. The memo is bounded (cleared when full)."""
        verdict = self._prechecked.get(url)
        if verdict is None:
            try:
                await precheck(url, self.policy)
                verdict = ""
            except UnsafeURL as exc:
                verdict = exc.message
            if len(self._prechecked) >= PRECHECK_MEMO:
                self._prechecked.clear()
            self._prechecked[url] = verdict
        return verdict

    def _plain(self, url: str) -> _Plain | None:
        """The fast path's view of a URL (``http1.py``), None when aiohttp must send it: kept
        per URL like the pre-check."""
        if url in self._plain_urls:
            return self._plain_urls[url]
        plain = plain_target(url)
        if len(self._plain_urls) >= PRECHECK_MEMO:
            self._plain_urls.clear()
        self._plain_urls[url] = plain
        return plain

    async def _connect(self, host: str, port: int) -> str:
        return await ssrf.resolve_host(host, port, self.policy, self.resolver)

    async def send(
        self, url: str, method: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> SendResult:
        """One request, never raising for what the target does: a refused URL, no
        connection, a timeout or a non-2xx status come back as the contract's error text."""
        if self._closed:
            raise RuntimeError("webhooks client closed")
        refused = await self._precheck(url)
        if refused:
            return SendResult(None, refused, b"")
        plain = self._plain(url) if method in PLAIN_METHODS else None
        if plain is not None:
            has_body = method != "GET"
            head = http1.request_head(
                method, plain.target, plain.host_header, headers, len(body) if has_body else None
            )
            if head is not None:
                return await self._send_plain(plain, head, body if has_body else b"", timeout_s)
        return await self._send_aiohttp(url, method, body, headers, timeout_s)

    async def _send_plain(self, plain: _Plain, head: bytes, body: bytes, timeout_s: float) -> SendResult:
        client = self._client
        if client is None:
            client = self._client = http1.Client(self.limit, self._connect)
        try:
            async with asyncio.timeout(timeout_s):
                status, data = await client.request(plain.key, head, body, MAX_RESPONSE_BODY)
        except UnsafeURL as exc:  # from the SSRF check of the host, at connect time
            return SendResult(None, exc.message, b"")
        except TimeoutError:
            return SendResult(None, "Webhook endpoint timed out", b"")
        except (OSError, http1.Closed):  # refused, reset, TLS failure, closed without a response
            return SendResult(None, "Could not connect to webhook endpoint", b"")
        except httptools.HttpParserError as exc:
            return SendResult(None, (str(exc) or type(exc).__name__)[:MAX_ERROR], b"")
        if 200 <= status < 300:
            return SendResult(status, "", data)
        return SendResult(status, error_for_status(status), b"")

    async def _send_aiohttp(
        self, url: str, method: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> SendResult:
        session = self._session or self._open()
        try:
            async with session.request(
                method,
                url,
                data=body if method != "GET" else None,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout(timeout_s),
            ) as resp:
                status = resp.status
                if 200 <= status < 300:
                    return SendResult(status, "", await read_bounded(resp.content, MAX_RESPONSE_BODY))
                return SendResult(status, error_for_status(status), b"")
        except UnsafeURL as exc:  # from CheckedResolver, at connect time
            return SendResult(None, exc.message, b"")
        except TimeoutError:
            return SendResult(None, "Webhook endpoint timed out", b"")
        except (
            aiohttp.ClientConnectorError,
            aiohttp.ClientSSLError,
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
        ):
            return SendResult(None, "Could not connect to webhook endpoint", b"")
        except aiohttp.ClientError as exc:
            return SendResult(None, (str(exc) or type(exc).__name__)[:MAX_ERROR], b"")
        except ValueError:  # aiohttp refuses a header with CR/LF (a stored callback header)
            return SendResult(None, INVALID_HEADER, b"")


@functools.lru_cache(maxsize=4096)
def host_key(url: str) -> str:
    """``host:port`` of a callback URL, what the per-host bound counts (the URL itself when
    it does not parse: it fails the SSRF pre-check anyway); memoised (a cue's attempts ask it up
    to three times each: its host's bound and the host caps)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        return f"{parts.hostname or ''}:{port}"
    except ValueError:
        return url


class TracedWebhooks(Webhooks):
    """``Webhooks`` with a span per send and its ``traceparent`` in the request headers (the one
    place both the http1 and the aiohttp path take their headers from)."""

    async def send(
        self, url: str, method: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> SendResult:
        if tracing.tracer is None:
            return await super().send(url, method, body, headers, timeout_s)
        with tracing.webhook_span(method, url, headers) as (span, traced):
            result = await super().send(url, method, body, traced, timeout_s)
            tracing.end_webhook_span(span, result.status, result.error)
            return result


def client(settings: Settings, resolver: ssrf.Resolver | None = None) -> Webhooks:
    """The process's outbound client: ``TracedWebhooks`` while tracing is on, else ``Webhooks``
    (no span code on the delivery path)."""
    cls = Webhooks if tracing.tracer is None else TracedWebhooks
    return cls(settings, resolver)
