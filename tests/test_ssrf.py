"""SSRF rules (CONTRACT.md §14): every vector at save time and at delivery time."""

from __future__ import annotations

import pytest

from cuefast.errors import UnsafeURL
from cuefast.ssrf import Policy, check_url, literal_ip, resolve_target

STRICT = Policy()
LOCAL = Policy(allow_private=True)
BLOCKED = "Callback URL resolves to blocked address range"


def resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("NXDOMAIN")
        return table[host]

    return resolve


DNS = resolver(
    {
        "public.example": ["93.184.216.34"],
        "internal.example": ["10.1.2.3"],
        "mixed.example": ["93.184.216.34", "192.168.1.1"],
        "v6.example": ["2606:2800:220:1:248:1893:25c8:1946"],
        "v6-local.example": ["::1"],
        "rebind.example": ["127.0.0.1"],
        "localhost": ["127.0.0.1", "::1"],
        "xn--bcher-kva.example": ["93.184.216.34"],
    }
)


async def reason(url: str, policy: Policy = STRICT) -> str | None:
    try:
        await check_url(url, policy, DNS)
    except UnsafeURL as exc:
        return exc.message
    return None


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://127.1.2.3/",
        "https://[::1]/",
        "https://10.0.0.1/",
        "https://172.16.5.5/",
        "https://172.31.255.255/",
        "https://192.168.0.1/",
        "https://169.254.169.254/latest/meta-data",
        "https://169.254.0.1/",
        "https://100.64.0.1/",
        "https://100.127.255.255/",
        "https://198.18.0.1/",
        "https://198.19.255.255/",
        "https://0.0.0.0/",
        "https://0.1.2.3/",
        "https://[::]/",
        "https://[fc00::1]/",
        "https://[fd12:3456::1]/",
        "https://[fe80::1]/",
        "https://[fe80::1%25eth0]/",
        "https://224.0.0.1/",
        "https://239.255.255.250/",
        "https://240.0.0.1/",
        "https://255.255.255.255/",
        "https://[ff02::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[::ffff:7f00:1]/",
        "https://[::ffff:169.254.169.254]/",
        "https://2130706433/",
        "https://0x7f000001/",
        "https://017700000001/",
        "https://0x7f.1/",
        "https://127.1/",
        "https://0177.0.0.1/",
        "https://0x7f.0x0.0x0.0x1/",
        "https://3232235521/",
        "https://internal.example/",
        "https://mixed.example/",
        "https://v6-local.example/",
        "https://127.0.0.1:8443/x",
    ],
)
async def test_blocked_addresses(url: str) -> None:
    assert await reason(url) == BLOCKED


async def test_allowed_public() -> None:
    for url in (
        "https://public.example/hook",
        "https://93.184.216.34/",
        "https://v6.example/",
        "https://bücher.example/",
    ):
        assert await reason(url) is None, url


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("http://public.example/", "URL must use https://"),
        ("ftp://public.example/", "URL must use https://"),
        ("file:///etc/passwd", "URL must use https://"),
        ("gopher://public.example/", "URL must use https://"),
        ("javascript:alert(1)", "URL must use https://"),
        ("https://user:pw@public.example/", "Credentials in callback URLs are not allowed"),
        ("https://public.example@127.0.0.1/", "Credentials in callback URLs are not allowed"),
        ("https://@public.example/", "Credentials in callback URLs are not allowed"),
        ("https:///path", "URL must have a hostname"),
        ("https://", "URL must have a hostname"),
        ("https://localhost/", "Blocked hostname: localhost"),
        ("https://LOCALHOST./", "Blocked hostname: localhost"),
        ("https://metadata.google.internal/", "Blocked hostname: metadata.google.internal"),
        ("https://Metadata.Internal/", "Blocked hostname: metadata.internal"),
        ("https://nxdomain.example/", "Cannot resolve hostname: nxdomain.example"),
    ],
)
async def test_rule_texts(url: str, text: str) -> None:
    assert await reason(url) == text


async def test_allow_private_matrix() -> None:
    assert await reason("http://127.0.0.1:8080/hook", LOCAL) is None
    assert await reason("http://localhost:8080/hook", LOCAL) is None
    assert await reason("http://10.0.0.1/", LOCAL) is None
    assert await reason("http://[::1]:9/", LOCAL) is None
    assert await reason("http://internal.example/", LOCAL) is None
    assert await reason("ftp://127.0.0.1/", LOCAL) == "URL must use http:// or https://"
    for still in (
        "http://169.254.169.254/",
        "http://0.0.0.0/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://[::]/",
    ):
        assert await reason(still, LOCAL) == BLOCKED, still
    assert (
        await reason("http://metadata.google.internal/", LOCAL)
        == "Blocked hostname: metadata.google.internal"
    )
    # http to public hosts with allow_http only
    assert await reason("http://public.example/", Policy(allow_http=True)) is None
    assert await reason("http://127.0.0.1/", Policy(allow_http=True)) == BLOCKED


async def test_real_resolver_on_localhost() -> None:
    await check_url("http://localhost:1/x", LOCAL)
    with pytest.raises(UnsafeURL, match="Blocked hostname"):
        await check_url("https://localhost:1/x", STRICT)


async def test_delivery_time_returns_a_checked_address() -> None:
    t = await resolve_target("https://public.example:8443/run?x=1", STRICT, DNS)
    assert (t.scheme, t.host, t.port, t.ip, t.path_qs) == (
        "https",
        "public.example",
        8443,
        "93.184.216.34",
        "/run?x=1",
    )
    t = await resolve_target("http://127.0.0.1:9", LOCAL, DNS)
    assert (t.ip, t.port, t.path_qs) == ("127.0.0.1", 9, "/")
    # a name that now resolves to a private address (DNS rebinding) is blocked at delivery
    for url in ("https://rebind.example/", "https://mixed.example/"):
        with pytest.raises(UnsafeURL, match=r"^Callback URL resolved to blocked IP$"):
            await resolve_target(url, STRICT, DNS)
    with pytest.raises(UnsafeURL, match=r"^URL must have a hostname$"):
        await resolve_target("https:///x", STRICT, DNS)


def test_literal_ip_forms() -> None:
    assert str(literal_ip("2130706433")) == "127.0.0.1"
    assert str(literal_ip("0x7f.1")) == "127.0.0.1"
    assert str(literal_ip("017700000001")) == "127.0.0.1"
    assert str(literal_ip("10.1")) == "10.0.0.1"
    assert literal_ip("example.com") is None
    assert literal_ip("1.2.3.4.5") is None
    assert literal_ip("256.1.1.1") is None
