"""SSRF rules for callback, on_failure and alert webhook URLs (CONTRACT.md §14).

Save time: ``check_url`` (scheme, userinfo, hostname, blocked names, every resolved
address). Delivery time: ``resolve_target`` applies the same rules again and returns ONE
checked address; the delivery connects to that address (sending ``Host`` and TLS SNI for
the name), so a DNS answer that changes between check and connect cannot redirect it.

Numeric host forms that resolvers accept (``2130706433``, ``0x7f.1``, ``017700000001``,
``127.1``) are parsed here like ``inet_aton`` does, so they are judged as the address they
denote without relying on the resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import unquote, urlsplit

import msgspec

from cuefast.errors import UnsafeURL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

RESOLVE_TIMEOUT = 5.0
BLOCKED_NAMES = frozenset({"localhost", "metadata.google.internal", "metadata.internal"})
ALWAYS_BLOCKED_NAMES = frozenset({"metadata.google.internal", "metadata.internal"})

_net = ipaddress.ip_network
# Always blocked, even with allow_private.
_HARD = tuple(
    _net(n)
    for n in (
        "0.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "fe80::/10",
        "ff00::/8",
    )
)
# Blocked unless allow_private.
_PRIVATE = tuple(
    _net(n)
    for n in (
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "::1/128",
        "fc00::/7",
    )
)


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    allow_private: bool = False
    allow_http: bool = False


class Target(msgspec.Struct, frozen=True, kw_only=True):
    scheme: str
    host: str
    port: int
    ip: str
    path_qs: str


def _unwrap(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_blocked_ip(ip: IPAddress, policy: Policy) -> bool:
    ip = _unwrap(ip)
    if any(ip in net for net in _HARD if net.version == ip.version):
        return True
    if policy.allow_private:
        return False
    return any(ip in net for net in _PRIVATE if net.version == ip.version)


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """IPv4 in any form ``inet_aton`` accepts (decimal, octal, hex; 1–4 parts)."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    nums: list[int] = []
    for part in parts:
        try:
            if part.lower().startswith("0x"):
                nums.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                nums.append(int(part, 8))
            else:
                if not part.isdigit():
                    return None
                nums.append(int(part))
        except ValueError:
            return None
    *head, last = nums
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    value = value * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(value)


def literal_ip(host: str) -> IPAddress | None:
    """The address a host string denotes literally, or None for a name."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if "%" in host:  # IPv6 zone id
        host = host.split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    return _inet_aton(host)


def _split(url: str) -> tuple[str, str, int, str, bool]:
    """(scheme, host, port, path+query, has_userinfo); ValueError when unparseable."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    netloc = parts.netloc
    has_userinfo = "@" in netloc
    hostport = netloc.rsplit("@", 1)[-1]
    if hostport.startswith("["):
        end = hostport.find("]")
        host = hostport[: end + 1] if end != -1 else hostport
        rest = hostport[end + 1 :] if end != -1 else ""
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = hostport.partition(":")
    host = unquote(host).strip().rstrip(".").lower()
    port = int(port_text) if port_text else (443 if scheme == "https" else 80)
    if not 0 < port < 65536:
        raise ValueError("bad port")
    path_qs = parts.path or "/"
    if parts.query:
        path_qs += "?" + parts.query
    return scheme, host, port, path_qs, has_userinfo


def check_url_syntax(url: str, policy: Policy) -> str | None:
    """The first failing text of rules 1–4 (no DNS), or None."""
    try:
        scheme, host, _, _, has_userinfo = _split(url)
    except ValueError:
        return "URL must have a hostname"
    if policy.allow_http or policy.allow_private:
        if scheme not in ("http", "https"):
            return "URL must use http:// or https://"
    elif scheme != "https":
        return "URL must use https://"
    if has_userinfo:
        return "Credentials in callback URLs are not allowed"
    if not host or host in ("[]",):
        return "URL must have a hostname"
    if host in BLOCKED_NAMES and (host in ALWAYS_BLOCKED_NAMES or not policy.allow_private):
        return f"Blocked hostname: {host}"
    return None


async def _default_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def _addresses(host: str, port: int, resolver: Resolver | None) -> list[IPAddress]:
    lit = literal_ip(host)
    if lit is not None:
        return [lit]
    try:
        name = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise UnsafeURL(f"Cannot resolve hostname: {host}") from None
    try:
        raw = await asyncio.wait_for((resolver or _default_resolver)(name, port), RESOLVE_TIMEOUT)
    except (OSError, TimeoutError, UnicodeError):
        raise UnsafeURL(f"Cannot resolve hostname: {host}") from None
    out: list[IPAddress] = []
    for text in raw:
        try:
            out.append(ipaddress.ip_address(text.split("%", 1)[0]))
        except ValueError:
            continue
    if not out:
        raise UnsafeURL(f"Cannot resolve hostname: {host}")
    return out


async def check_url(url: str, policy: Policy, resolver: Resolver | None = None) -> None:
    """Save-time check; raises UnsafeURL with the contract's text."""
    problem = check_url_syntax(url, policy)
    if problem:
        raise UnsafeURL(problem)
    _, host, port, _, _ = _split(url)
    for ip in await _addresses(host, port, resolver):
        if is_blocked_ip(ip, policy):
            raise UnsafeURL("Callback URL resolves to blocked address range")


async def resolve_target(url: str, policy: Policy, resolver: Resolver | None = None) -> Target:
    """Delivery-time check; returns the one address to connect to."""
    problem = check_url_syntax(url, policy)
    if problem == "URL must have a hostname":
        raise UnsafeURL(problem)
    if problem:
        raise UnsafeURL("Callback URL resolved to blocked IP")
    scheme, host, port, path_qs, _ = _split(url)
    try:
        addrs = await _addresses(host, port, resolver)
    except UnsafeURL:
        raise
    if any(is_blocked_ip(ip, policy) for ip in addrs):
        raise UnsafeURL("Callback URL resolved to blocked IP")
    ip = _unwrap(addrs[0])
    return Target(scheme=scheme, host=host.strip("[]"), port=port, ip=str(ip), path_qs=path_qs)
