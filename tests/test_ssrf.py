"""SSRF rules (CONTRACT.md §14): every vector at save time and at delivery time."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest

from cuefast import ssrf
from cuefast.errors import UnsafeURL
from cuefast.ssrf import (
    Policy,
    Resolver,
    check_url,
    check_url_syntax,
    is_blocked_ip,
    literal_ip,
    resolve_host,
    resolve_target,
)

STRICT = Policy()
LOCAL = Policy(allow_private=True)
HTTP = Policy(allow_http=True)
BLOCKED = "Callback URL resolves to blocked address range"
AT_SEND = "Callback URL resolved to blocked IP"

TABLE = {
    "public.example": ["93.184.216.34"],
    "internal.example": ["10.1.2.3"],
    "mixed.example": ["93.184.216.34", "192.168.1.1"],
    "v6.example": ["2606:2800:220:1:248:1893:25c8:1946"],
    "v6-local.example": ["::1"],
    "mapped.example": ["::ffff:10.0.0.1"],
    "mapped-public.example": ["::ffff:93.184.216.34"],
    "meta.example": ["169.254.169.254"],
    "rebind.example": ["127.0.0.1"],
    "garbage.example": ["not-an-ip"],
    "empty.example": [],
    "localhost": ["127.0.0.1", "::1"],
    "xn--bcher-kva.example": ["93.184.216.34"],
}
CALLS: list[str] = []


async def DNS(host: str, port: int) -> list[str]:
    CALLS.append(host)
    if host not in TABLE:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return TABLE[host]


async def NO_DNS(host: str, port: int) -> list[str]:
    raise AssertionError(f"literal host must not reach the resolver: {host}")


async def reason(url: str, policy: Policy = STRICT, resolver: Resolver = DNS) -> str | None:
    try:
        await check_url(url, policy, resolver)
    except UnsafeURL as exc:
        return exc.message
    return None


async def send_reason(url: str, policy: Policy = STRICT, resolver: Resolver = DNS) -> str | None:
    try:
        await resolve_target(url, policy, resolver)
    except UnsafeURL as exc:
        return exc.message
    return None


LITERAL_BLOCKED = [
    # loopback
    "https://127.0.0.1/",
    "https://127.1.2.3/",
    "https://127.0.0.1:8443/x",
    "https://[::1]/",
    "https://[0:0:0:0:0:0:0:1]/",
    # private
    "https://10.0.0.1/",
    "https://10.255.255.255/",
    "https://172.16.5.5/",
    "https://172.31.255.255/",
    "https://192.168.0.1/",
    "https://192.168.255.255/",
    # link-local, cloud metadata
    "https://169.254.169.254/latest/meta-data",
    "https://169.254.0.1/",
    "https://[fe80::1]/",
    "https://[fe80::1%25eth0]/",
    "https://[febf::1]/",
    # CGNAT, benchmarking
    "https://100.64.0.1/",
    "https://100.127.255.255/",
    "https://198.18.0.1/",
    "https://198.19.255.255/",
    # unspecified
    "https://0.0.0.0/",
    "https://0.1.2.3/",
    "https://0/",
    "https://[::]/",
    # unique-local
    "https://[fc00::1]/",
    "https://[fd12:3456::1]/",
    # multicast, reserved, broadcast
    "https://224.0.0.1/",
    "https://239.255.255.250/",
    "https://240.0.0.1/",
    "https://255.255.255.255/",
    "https://[ff02::1]/",
    # IPv4-mapped IPv6, NAT64, 6to4
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:7f00:1]/",
    "https://[::ffff:169.254.169.254]/",
    "https://[::ffff:10.0.0.1]/",
    "https://[64:ff9b::a9fe:a9fe]/",
    "https://[2002:7f00:1::1]/",
    # numeric IPv4 forms (decimal, hex, octal, short, mixed)
    "https://2130706433/",
    "https://0x7f000001/",
    "https://0X7F000001/",
    "https://017700000001/",
    "https://0x7f.1/",
    "https://127.1/",
    "https://127.0.1/",
    "https://0177.0.0.1/",
    "https://0x7f.0x0.0x0.0x1/",
    "https://3232235521/",
    "https://0xa9fea9fe/",
    "https://2852039166/",
    "https://4294967295/",
    "https://127.0.0.1./",
    # percent-encoded and full-width forms of a literal
    "https://%31%32%37.0.0.1/",
    "https://１２７。０。０。１/",
]


@pytest.mark.parametrize("url", LITERAL_BLOCKED)
async def test_blocked_literal_addresses(url: str) -> None:
    assert await reason(url, resolver=NO_DNS) == BLOCKED
    assert await send_reason(url, resolver=NO_DNS) == AT_SEND


@pytest.mark.parametrize(
    "url",
    [
        "https://internal.example/",
        "https://mixed.example/",
        "https://v6-local.example/",
        "https://mapped.example/",
        "https://meta.example/",
        "https://garbage.example/",  # an answer that is no address fails closed
    ],
)
async def test_names_resolving_to_blocked_addresses(url: str) -> None:
    assert await reason(url) == BLOCKED
    assert await send_reason(url) == AT_SEND


async def test_allowed_public() -> None:
    for url in (
        "https://public.example/hook",
        "https://PUBLIC.example.:443/hook",
        "https://93.184.216.34/",
        "https://1572395042/",  # 93.184.216.34 in decimal
        "https://[2606:2800:220:1:248:1893:25c8:1946]/",
        "https://[::ffff:93.184.216.34]/",
        "https://[64:ff9b::5db8:d822]/",
        "https://v6.example/",
        "https://mapped-public.example/",
        "https://bücher.example/",
        "https://xn--bcher-kva.example/",
    ):
        assert await reason(url) is None, url


async def test_literals_never_reach_the_resolver() -> None:
    for url in ("https://93.184.216.34/", "https://[2606:2800:220:1:248:1893:25c8:1946]/", "https://0x5d.1/"):
        await check_url(url, STRICT, NO_DNS)


async def test_idna_name_is_resolved_encoded() -> None:
    CALLS.clear()
    assert await reason("https://BÜCHER.example/") is None
    assert CALLS == ["xn--bcher-kva.example"]
    t = await resolve_target("https://bücher.example/x", STRICT, DNS)
    assert t.host == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("url", "text"),
    [
        # rule 1: scheme
        ("http://public.example/", "URL must use https://"),
        ("HTTP://public.example/", "URL must use https://"),
        ("ftp://public.example/", "URL must use https://"),
        ("file:///etc/passwd", "URL must use https://"),
        ("gopher://public.example/", "URL must use https://"),
        ("javascript:alert(1)", "URL must use https://"),
        ("ws://public.example/", "URL must use https://"),
        ("public.example/hook", "URL must use https://"),
        ("", "URL must use https://"),
        ("ftp://[::1/", "URL must use https://"),  # scheme wins over a malformed host
        ("http://user:pw@127.0.0.1/", "URL must use https://"),  # rule 1 before rule 2
        # rule 2: userinfo
        ("https://user:pw@public.example/", "Credentials in callback URLs are not allowed"),
        ("https://user@public.example/", "Credentials in callback URLs are not allowed"),
        ("https://public.example@127.0.0.1/", "Credentials in callback URLs are not allowed"),
        ("https://@public.example/", "Credentials in callback URLs are not allowed"),
        ("https://:@public.example/", "Credentials in callback URLs are not allowed"),
        ("https://public.example\\@127.0.0.1/", "Credentials in callback URLs are not allowed"),
        ("https://user@localhost/", "Credentials in callback URLs are not allowed"),  # rule 2 before 4
        # rule 3: hostname
        ("https:///path", "URL must have a hostname"),
        ("https://", "URL must have a hostname"),
        ("https:public.example", "URL must have a hostname"),
        ("https://:443/", "URL must have a hostname"),
        ("https://./", "URL must have a hostname"),
        ("https://[::1/", "URL must have a hostname"),
        ("https://[::1]x/", "URL must have a hostname"),
        ("https://[v1.fe]/", "URL must have a hostname"),
        ("https://[127.0.0.1]/", "URL must have a hostname"),
        ("https://public.example:0/", "URL must have a hostname"),
        ("https://public.example:65536/", "URL must have a hostname"),
        ("https://public.example:+443/", "URL must have a hostname"),
        ("https://public.example:x/", "URL must have a hostname"),
        ("https://evil%40127.0.0.1/", "URL must have a hostname"),  # decoded '@' is no host char
        ("https://pub%2Flic.example/", "URL must have a hostname"),
        ("https://pub%20lic.example/", "URL must have a hostname"),
        ("https://pub%00lic.example/", "URL must have a hostname"),
        ("https://a／b.example/", "URL must have a hostname"),  # full-width solidus → '/'
        ("https://ex.com＠127.0.0.1/", "URL must have a hostname"),
        # rule 4: blocked names (case, trailing dot, encodings)
        ("https://localhost/", "Blocked hostname: localhost"),
        ("https://localhost:8443/", "Blocked hostname: localhost"),
        ("https://LOCALHOST./", "Blocked hostname: localhost"),
        ("https://LocalHost../", "Blocked hostname: localhost"),
        ("https://%6c%6fcalhost/", "Blocked hostname: localhost"),
        ("https://ｌｏｃａｌｈｏｓｔ/", "Blocked hostname: localhost"),
        ("https://metadata.google.internal/", "Blocked hostname: metadata.google.internal"),
        ("https://METADATA.GOOGLE.INTERNAL./", "Blocked hostname: metadata.google.internal"),
        ("https://Metadata.Internal/", "Blocked hostname: metadata.internal"),
        # rule 5: resolution
        ("https://nxdomain.example/", "Cannot resolve hostname: nxdomain.example"),
        ("https://NXDOMAIN.example./x", "Cannot resolve hostname: nxdomain.example"),
        ("https://empty.example/", "Cannot resolve hostname: empty.example"),
        ("https://bücher..example/", "Cannot resolve hostname: bücher..example"),  # IDNA fails
    ],
)
async def test_rule_texts(url: str, text: str) -> None:
    assert await reason(url) == text


async def test_check_url_syntax_needs_no_dns() -> None:
    assert check_url_syntax("https://public.example/", STRICT) is None
    assert check_url_syntax("https://nxdomain.example/", STRICT) is None  # rule 5 is not checked
    assert check_url_syntax("https://127.0.0.1/", STRICT) is None
    assert check_url_syntax("http://public.example/", STRICT) == "URL must use https://"
    assert check_url_syntax("gopher://x/", LOCAL) == "URL must use http:// or https://"
    assert check_url_syntax("https://u@x/", STRICT) == "Credentials in callback URLs are not allowed"
    assert check_url_syntax("https:///x", STRICT) == "URL must have a hostname"
    assert check_url_syntax("https://localhost/", STRICT) == "Blocked hostname: localhost"
    assert check_url_syntax("https://localhost/", LOCAL) is None


async def test_allow_private_matrix() -> None:
    for ok in (
        "http://127.0.0.1:8080/hook",
        "https://127.0.0.1/",
        "http://localhost:8080/hook",
        "http://LOCALHOST./",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://198.18.0.1/",
        "http://[::1]:9/",
        "http://[fd00::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",
        "http://internal.example/",
        "http://mixed.example/",
        "http://public.example/",
    ):
        assert await reason(ok, LOCAL) is None, ok
        assert await reason(ok, STRICT) is not None, ok
    for scheme in ("ftp://127.0.0.1/", "file:///etc/passwd", "javascript:alert(1)"):
        assert await reason(scheme, LOCAL) == "URL must use http:// or https://"
    for still in (
        "http://169.254.169.254/",
        "http://[::ffff:169.254.169.254]/",
        "http://0xa9fea9fe/",
        "http://meta.example/",
        "http://0.0.0.0/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://255.255.255.255/",
        "http://[ff02::1]/",
        "http://[::]/",
    ):
        assert await reason(still, LOCAL) == BLOCKED, still
        assert await send_reason(still, LOCAL) == AT_SEND, still
    for name in ("metadata.google.internal", "metadata.internal"):
        assert await reason(f"http://{name}/", LOCAL) == f"Blocked hostname: {name}"
        assert await send_reason(f"http://{name}/", LOCAL) == AT_SEND
    for creds in ("http://example.com@127.0.0.1/", "http://user:pw@localhost/", "http://@127.0.0.1/"):
        assert await reason(creds, LOCAL) == "Credentials in callback URLs are not allowed"


async def test_allow_http() -> None:
    assert await reason("http://public.example/", HTTP) is None
    assert await reason("https://public.example/", HTTP) is None
    assert await reason("http://127.0.0.1/", HTTP) == BLOCKED
    assert await reason("http://localhost/", HTTP) == "Blocked hostname: localhost"
    assert await reason("ftp://public.example/", HTTP) == "URL must use http:// or https://"
    assert (
        await reason("http://user:pw@public.example/", HTTP) == "Credentials in callback URLs are not allowed"
    )
    assert (
        await reason("http://example.com@127.0.0.1/", HTTP) == "Credentials in callback URLs are not allowed"
    )


def test_is_blocked_ip() -> None:
    ip = ipaddress.ip_address
    for text in ("127.0.0.1", "10.0.0.1", "::1", "fd00::1", "100.64.0.1", "::ffff:192.168.0.1"):
        assert is_blocked_ip(ip(text), STRICT) and not is_blocked_ip(ip(text), LOCAL), text
    for text in ("169.254.169.254", "0.0.0.0", "fe80::1", "::", "224.0.0.1", "255.255.255.255", "ff02::1"):
        assert is_blocked_ip(ip(text), STRICT) and is_blocked_ip(ip(text), LOCAL), text
    for text in (
        "93.184.216.34",
        "1.1.1.1",
        "2606:4700::1111",
        "::ffff:8.8.8.8",
        "172.32.0.1",
        "100.128.0.1",
    ):
        assert not is_blocked_ip(ip(text), STRICT), text


def test_literal_ip_forms() -> None:
    assert str(literal_ip("2130706433")) == "127.0.0.1"
    assert str(literal_ip("0x7f000001")) == "127.0.0.1"
    assert str(literal_ip("0x7f.1")) == "127.0.0.1"
    assert str(literal_ip("017700000001")) == "127.0.0.1"
    assert str(literal_ip("127.1")) == "127.0.0.1"
    assert str(literal_ip("10.1")) == "10.0.0.1"
    # compared as addresses: Python 3.13 prints IPv4-mapped ones as ::ffff:127.0.0.1
    assert literal_ip("[::ffff:7f00:1]") == ipaddress.IPv6Address("::ffff:7f00:1")
    assert str(literal_ip("[fe80::1%eth0]")) == "fe80::1"
    assert literal_ip("example.com") is None
    assert literal_ip("1.2.3.4.5") is None
    assert literal_ip("256.1.1.1") is None
    assert literal_ip("[v1.fe]") is None


@pytest.mark.parametrize(
    "text",
    [
        "0", "00", "0x", "0x0", "08", "09.1.1.1", "0x7f.1", "127.1", "1.2.3", "1.2.65535", "1.2.65536",
        "1.65536", "1.16777215", "1.16777216", "4294967295", "4294967296", "0xffffffff", "0x100000000",
        "0X7F.1", "1..2", ".1", "0x7f.0x0.0x0.0x1", "0177.0.0.1", "1.2.3.4.5", "+1.2.3.4", "1_2.1",
        "0x0000000000007f.1", "0400.1.1.1", "0377.0377.0377.0377", "00000000000000000000177.1", "1e2",
        "0xg", "١٢٧.0.0.1", "abc", "",
    ],
)  # fmt: skip
def test_literal_ipv4_matches_inet_aton(text: str) -> None:
    try:
        expected: str | None = socket.inet_ntoa(socket.inet_aton(text))
    except (OSError, UnicodeError):
        expected = None
    got = literal_ip(text)
    assert (str(got) if got is not None else None) == expected


async def test_resolution_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async def slow(host: str, port: int) -> list[str]:
        await asyncio.sleep(10)
        return ["93.184.216.34"]

    monkeypatch.setattr(ssrf, "RESOLVE_TIMEOUT", 0.05)
    assert await reason("https://slow.example/", resolver=slow) == "Cannot resolve hostname: slow.example"
    assert await send_reason("https://slow.example/", resolver=slow) == AT_SEND


async def test_real_resolver_on_localhost() -> None:
    await check_url("http://localhost:1/x", LOCAL)
    t = await resolve_target("http://localhost:1/x", LOCAL)
    assert t.host == "localhost" and ipaddress.ip_address(t.ip).is_loopback
    with pytest.raises(UnsafeURL, match=r"^Blocked hostname: localhost$"):
        await check_url("https://localhost:1/x", STRICT)
    with pytest.raises(UnsafeURL, match=f"^{AT_SEND}$"):
        await resolve_target("https://localhost:1/x", STRICT)


async def test_real_resolver_failure() -> None:
    url = "https://does-not-exist.invalid/"  # RFC 6761: never resolves
    with pytest.raises(UnsafeURL, match=r"^Cannot resolve hostname: does-not-exist\.invalid$"):
        await check_url(url, STRICT)


async def test_delivery_time_returns_a_checked_address() -> None:
    t = await resolve_target("https://public.example:8443/run?x=1#frag", STRICT, DNS)
    assert (t.scheme, t.host, t.port, t.ip, t.path_qs) == (
        "https",
        "public.example",
        8443,
        "93.184.216.34",
        "/run?x=1",
    )
    t = await resolve_target("HTTPS://Public.Example.?q", STRICT, DNS)
    assert (t.host, t.port, t.ip, t.path_qs) == ("public.example", 443, "93.184.216.34", "/?q")
    t = await resolve_target("http://127.0.0.1:9", LOCAL, DNS)
    assert (t.scheme, t.ip, t.port, t.path_qs) == ("http", "127.0.0.1", 9, "/")
    t = await resolve_target("http://0x7f.1/", LOCAL, NO_DNS)
    assert (t.host, t.ip, t.port) == ("127.0.0.1", "127.0.0.1", 80)
    t = await resolve_target("https://[2606:2800:220:1:248:1893:25c8:1946]/", STRICT, NO_DNS)
    assert t.host == t.ip == "2606:2800:220:1:248:1893:25c8:1946"
    t = await resolve_target("https://mapped-public.example/", STRICT, DNS)
    assert t.ip == "93.184.216.34"  # IPv4-mapped answers are connected to as IPv4
    t = await resolve_target("https://v6.example/", STRICT, DNS)
    assert t.ip == "2606:2800:220:1:248:1893:25c8:1946"


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("https://rebind.example/", AT_SEND),  # a name that now resolves privately (DNS rebinding)
        ("https://mixed.example/", AT_SEND),
        ("https://nxdomain.example/", AT_SEND),
        ("https://localhost/", AT_SEND),
        ("https://metadata.google.internal/", AT_SEND),
        ("http://public.example/", AT_SEND),
        ("https://u:p@public.example/", AT_SEND),
        ("https:///x", "URL must have a hostname"),
        ("https://", "URL must have a hostname"),
    ],
)
async def test_delivery_time_failures(url: str, text: str) -> None:
    assert await send_reason(url) == text


async def test_resolve_host() -> None:
    assert await resolve_host("public.example", 443, STRICT, DNS) == "93.184.216.34"
    assert await resolve_host("public.example", 0, STRICT, DNS) == "93.184.216.34"
    assert await resolve_host("::1", 8080, LOCAL, NO_DNS) == "::1"
    assert await resolve_host("localhost", 80, LOCAL, DNS) == "127.0.0.1"
    for host, policy in (("internal.example", STRICT), ("::1", STRICT), ("169.254.169.254", LOCAL)):
        with pytest.raises(UnsafeURL, match=f"^{AT_SEND}$"):
            await resolve_host(host, 80, policy, DNS)


# ---- ranges beyond the contract's list (issue 12, A9): blocked at save and at delivery,
# whatever the policy, both as literals and as resolver answers --------------------------------
EXTRA_BLOCKED = [
    "::127.0.0.1",  # IPv4-compatible IPv6
    "::8.8.8.8",  # IPv4-compatible, public inside: the form itself is blocked
    "64:ff9b:1::808:808",  # local-use NAT64 (RFC 8215)
    "64:ff9b:1:ffff::1",
    "::ffff:0:7f00:1",  # IPv4-translated (SIIT, ::ffff:0:0:0/96)
    "::ffff:0:808:808",
    "fec0::1",  # site-local (deprecated)
    "feff:ffff::1",
    "192.0.0.1",  # IETF protocol assignments
    "192.0.0.170",  # NAT64 discovery
    "192.0.0.255",
]


@pytest.mark.parametrize("addr", EXTRA_BLOCKED)
async def test_extra_ranges_blocked_at_save_and_delivery(addr: str) -> None:
    literal = f"https://[{addr}]/" if ":" in addr else f"https://{addr}/"

    async def answers(host: str, port: int) -> list[str]:
        return [addr]

    for policy in (STRICT, LOCAL):
        assert is_blocked_ip(ipaddress.ip_address(addr), policy)
        assert await reason(literal, policy, NO_DNS) == BLOCKED
        assert await send_reason(literal, policy, NO_DNS) == AT_SEND
        assert await reason("https://public.example/", policy, answers) == BLOCKED
        assert await send_reason("https://public.example/", policy, answers) == AT_SEND
        with pytest.raises(UnsafeURL):
            await resolve_host("public.example", 443, policy, answers)


def test_extra_ranges_neighbours_stay_allowed() -> None:
    for text in (
        "192.0.1.1",
        "191.255.255.255",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "fe00::1",
        "2001:db9::1",
    ):
        assert not is_blocked_ip(ipaddress.ip_address(text), STRICT), text
    assert not is_blocked_ip(ipaddress.ip_address("::1"), LOCAL)  # loopback is not "IPv4-compatible"
