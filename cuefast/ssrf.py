"""SSRF rules for callback, on_failure and alert webhook URLs (CONTRACT.md §14).

Save time: ``check_url`` applies rules 1–5 in order (scheme, userinfo, hostname, blocked
names, every resolved address) and raises ``UnsafeURL`` with the contract's text.
``check_url_syntax`` is rules 1–4 alone (no DNS) for callers that want to fail fast.

Delivery time: ``resolve_target`` applies the same rules again and returns ONE address
that passed; the delivery connects to that address (``Host`` header and TLS SNI carry the
name), so a DNS answer that changes between check and connect cannot redirect it. Its
failures use the contract's delivery texts: ``URL must have a hostname`` when the URL has
no usable host, otherwise ``Callback URL resolved to blocked IP`` (also for a name that
does not resolve, as the reference does). ``resolve_host`` is the same for a bare
host/port, for use inside an HTTP client's resolver hook.

Host handling (the host is what gets judged, so it is normalised first):

* percent-escapes are decoded, the name is lower-cased, non-ASCII names are converted with
  the ``idna`` codec (which also folds full-width letters and ideographic full stops, so
  ``ｌｏｃａｌｈｏｓｔ`` is ``localhost``) and trailing dots are dropped;
* a host that cannot be IDNA-encoded fails rule 5 (``Cannot resolve hostname: <host>``);
* a host containing a forbidden host character (WHATWG: controls, space, ``# % / : < > ?
  @ [ \\ ] ^ |``) after decoding, a malformed ``[...]`` literal, or a port that is not
  1–65535 makes the URL unusable: ``URL must have a hostname``;
* numeric IPv4 hosts are parsed here exactly like glibc ``inet_aton`` (1–4 parts, each
  decimal, ``0``-prefixed octal or ``0x`` hex: ``2130706433``, ``0x7f.1``,
  ``017700000001``, ``127.1``), so they are judged as the address they denote and never
  reach the resolver; bracketed IPv6 literals may carry a zone id (``%25eth0``), which is
  ignored when judging.

Addresses: IPv4-mapped IPv6 (``::ffff:a.b.c.d``) is judged, and connected to, as the IPv4
address. NAT64 (``64:ff9b::/96``) and 6to4 (``2002::/16``) addresses are also blocked when
the IPv4 address they embed is blocked. A resolver answer that is not an IP address counts
as blocked (fail closed). Blocked whatever the policy, beyond the contract's list: the IETF
protocol block ``192.0.0.0/24``, IPv4-compatible IPv6 ``::a.b.c.d`` (``::/96`` but ``::1``),
IPv4-translated ``::ffff:0:a.b.c.d`` (``::ffff:0:0:0/96``), local-use NAT64
``64:ff9b:1::/48`` (its embedding is not fixed, so nothing in it is judged by the IPv4
address) and deprecated site-local ``fec0::/10``. One function, ``is_blocked_ip``, judges
every address at save time and at delivery time.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from typing import NamedTuple
from urllib.parse import SplitResult, unquote, urlsplit

import msgspec

from cuefast.errors import UnsafeURL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(ascii_host, port) -> IP address strings`` (A and AAAA); raises ``OSError`` on failure."""

RESOLVE_TIMEOUT = 5.0

HTTPS_ONLY = "URL must use https://"
HTTP_OR_HTTPS = "URL must use http:// or https://"
CREDENTIALS = "Credentials in callback URLs are not allowed"
NO_HOSTNAME = "URL must have a hostname"
BLOCKED_RANGE = "Callback URL resolves to blocked address range"
BLOCKED_AT_SEND = "Callback URL resolved to blocked IP"

BLOCKED_NAMES = frozenset({"localhost", "metadata.google.internal", "metadata.internal"})
ALWAYS_BLOCKED_NAMES = frozenset({"metadata.google.internal", "metadata.internal"})


def _nets(*cidrs: str) -> tuple[tuple[ipaddress.IPv4Network, ...], tuple[ipaddress.IPv6Network, ...]]:
    v4 = tuple(ipaddress.IPv4Network(c) for c in cidrs if ":" not in c)
    v6 = tuple(ipaddress.IPv6Network(c) for c in cidrs if ":" in c)
    return v4, v6


# Blocked whatever the policy: unspecified, link-local (cloud metadata), multicast, reserved,
# IETF protocol assignments, and the IPv6 forms that carry an IPv4 address no one routes as
# IPv6 (IPv4-compatible, IPv4-translated, local-use NAT64) or are deprecated (site-local).
_HARD_V4, _HARD_V6 = _nets(
    "0.0.0.0/8",
    "169.254.0.0/16",
    "192.0.0.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "fe80::/10",
    "ff00::/8",
    "::ffff:0:0:0/96",
    "64:ff9b:1::/48",
    "fec0::/10",
)
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_LOOPBACK_V6 = ipaddress.IPv6Address("::1")
# Blocked unless ``allow_private``: loopback, private, CGNAT, benchmarking, unique-local.
_PRIVATE_V4, _PRIVATE_V6 = _nets(
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "::1/128",
    "fc00::/7",
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_UNPARSEABLE = ipaddress.IPv4Address(0)  # stands for a resolver answer that is no address

# WHATWG forbidden domain code points (after percent-decoding and IDNA).
_FORBIDDEN_HOST = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]")
_V4_PART = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")
_SCHEME = re.compile(r"[\x00-\x20]*([A-Za-z][A-Za-z0-9+.\-]*):")


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    """``allow_private``: local development (loopback/private targets and ``http``);
    ``allow_http``: ``http://`` to public hosts."""

    allow_private: bool = False
    allow_http: bool = False


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """Where a delivery connects: ``ip`` passed the rules; ``host`` is the normalised ASCII
    host for ``Host``/SNI (an IPv6 literal without brackets, an IPv4 literal in dotted
    form); ``port`` is explicit or the scheme default; ``path_qs`` is path + ``?query``."""

    scheme: str
    host: str
    port: int
    ip: str
    path_qs: str = "/"


class _URL(NamedTuple):
    scheme: str
    host: str
    port: int
    path_qs: str
    literal: IPAddress | None


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


@functools.lru_cache(maxsize=4096)
def is_blocked_ip(ip: IPAddress, policy: Policy) -> bool:
    """True when ``ip`` lies in a range the policy blocks (§14); remembered (a pure function:
    a fleet's callbacks resolve to few addresses, and each is judged once per delivery)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None and is_blocked_ip(inner, policy):
            return True
        if ip.ipv4_mapped is not None:
            return False
        if any(ip in net for net in _HARD_V6) or (ip in _V4_COMPATIBLE and ip != _LOOPBACK_V6):
            return True
        return not policy.allow_private and any(ip in net for net in _PRIVATE_V6)
    if any(ip in net for net in _HARD_V4):
        return True
    return not policy.allow_private and any(ip in net for net in _PRIVATE_V4)


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """IPv4 in any form glibc ``inet_aton`` accepts (decimal, octal, hex; 1–4 parts)."""
    parts = host.split(".")
    if len(parts) > 4 or not all(_V4_PART.fullmatch(p) for p in parts):
        return None
    nums = [int(p, 16) if p[:2] in ("0x", "0X") else int(p, 8) if p[0] == "0" else int(p) for p in parts]
    *head, last = nums
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    return ipaddress.IPv4Address(value * 256 ** (4 - len(head)) + last)


def literal_ip(host: str) -> IPAddress | None:
    """The address a host denotes literally (``[IPv6]`` with optional zone id, or any
    ``inet_aton`` IPv4 form), or None for a name."""
    if host.startswith("[") and host.endswith("]"):
        try:
            return ipaddress.IPv6Address(host[1:-1].partition("%")[0])
        except ValueError:
            return None
    return _inet_aton(host)


def _host_port(netloc: str, default_port: int) -> tuple[str, int, IPAddress | None] | None:
    """(host, port, literal address) of a netloc without credentials, or None when it names
    no usable host: the host normalised (IDNA, no trailing dot, a literal in its canonical form)."""
    literal: IPAddress | None
    if netloc.startswith("["):
        end = netloc.find("]")
        literal = literal_ip(unquote(netloc[: end + 1])) if end > 0 else None
        port_part = netloc[end + 1 :]
        if literal is None or (port_part and not port_part.startswith(":")):
            return None
        host, port_text = literal.compressed, port_part[1:]
    else:
        raw_host, _, port_text = netloc.partition(":")
        host = unquote(raw_host).lower()
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                pass  # judged at rule 5: cannot resolve
        host = host.rstrip(".")
        if not host or _FORBIDDEN_HOST.search(host):
            return None
        literal = _inet_aton(host)
        host = host if literal is None else str(literal)
    if not port_text:
        return host, default_port, literal
    if len(port_text) <= 5 and port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536:
        return host, int(port_text), literal
    return None


@functools.lru_cache(maxsize=1024)
def _parse(url: str, policy: Policy) -> _URL | str:
    """The URL split and normalised, or the text of the first failing rule 1–4. A pure function
    of its arguments (no DNS), remembered: a fleet creates many cues with the same callback."""
    parts: SplitResult | None
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
    except ValueError:  # bad brackets, netloc that NFKC-normalises to a delimiter
        parts = None
        m = _SCHEME.match(url.replace("\t", "").replace("\n", "").replace("\r", ""))
        scheme = m.group(1).lower() if m else ""
    lenient = policy.allow_http or policy.allow_private
    if scheme not in (("http", "https") if lenient else ("https",)):
        return HTTP_OR_HTTPS if lenient else HTTPS_ONLY
    if parts is None:
        return NO_HOSTNAME
    if "@" in parts.netloc:
        return CREDENTIALS
    hostport = _host_port(parts.netloc, 443 if scheme == "https" else 80)
    if hostport is None:
        return NO_HOSTNAME
    host, port, literal = hostport
    if literal is None and host in (ALWAYS_BLOCKED_NAMES if policy.allow_private else BLOCKED_NAMES):
        return f"Blocked hostname: {host}"

    path_qs = parts.path or "/"
    if parts.query:
        path_qs += "?" + parts.query
    return _URL(scheme, host, port, path_qs, literal)


def check_url_syntax(url: str, policy: Policy) -> str | None:
    """The text of the first failing rule among 1–4 (no DNS), or None."""
    parsed = _parse(url, policy)
    return parsed if isinstance(parsed, str) else None


async def _system_resolver(host: str, port: int) -> list[str]:
    """A and AAAA records via the running loop's ``getaddrinfo`` (a worker thread)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]


async def _lookup(url: _URL, resolver: Resolver | None) -> list[IPAddress] | None:
    """Every address the host stands for; None when it cannot be resolved."""
    if url.literal is not None:
        return [url.literal]
    if not url.host.isascii():  # IDNA encoding failed
        return None
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            answers = await (resolver or _system_resolver)(url.host, url.port)
    except (OSError, TimeoutError, ValueError):  # gaierror is an OSError
        return None
    out: list[IPAddress] = []
    for text in answers:
        try:
            out.append(ipaddress.ip_address(text.partition("%")[0]))
        except ValueError:
            out.append(_UNPARSEABLE)
    return out or None


async def check_url(url: str, policy: Policy, resolver: Resolver | None = None) -> None:
    """Save-time check (rules 1–5 in order); raises ``UnsafeURL`` with the contract's text."""
    parsed = _parse(url, policy)
    if isinstance(parsed, str):
        raise UnsafeURL(parsed)
    addresses = await _lookup(parsed, resolver)
    if addresses is None:
        raise UnsafeURL(f"Cannot resolve hostname: {parsed.host}")
    if any(is_blocked_ip(ip, policy) for ip in addresses):
        raise UnsafeURL(BLOCKED_RANGE)


async def resolve_target(url: str, policy: Policy, resolver: Resolver | None = None) -> Target:
    """Delivery-time check: the same rules, then ONE address that passed to connect to.

    Raises ``UnsafeURL("URL must have a hostname")`` for a URL without a usable host and
    ``UnsafeURL("Callback URL resolved to blocked IP")`` for every other failure
    (scheme, credentials, blocked name, unresolvable name, any blocked address).
    """
    parsed = _parse(url, policy)
    if isinstance(parsed, str):
        raise UnsafeURL(NO_HOSTNAME if parsed == NO_HOSTNAME else BLOCKED_AT_SEND)
    addresses = await _lookup(parsed, resolver)
    if addresses is None or any(is_blocked_ip(ip, policy) for ip in addresses):
        raise UnsafeURL(BLOCKED_AT_SEND)
    ip = addresses[0]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return Target(
        scheme=parsed.scheme, host=parsed.host, port=parsed.port, ip=str(ip), path_qs=parsed.path_qs
    )


async def resolve_host(host: str, port: int, policy: Policy, resolver: Resolver | None = None) -> str:
    """Delivery-time rules 3–5 for a bare host (what an HTTP client's resolver hook gets);
    returns the one checked IP to connect to. Raises like ``resolve_target``; the scheme
    is not judged here (check the full URL with ``resolve_target`` for that)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return (await resolve_target(f"https://{netloc}/", policy, resolver)).ip
