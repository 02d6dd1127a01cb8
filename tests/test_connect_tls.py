"""``CUEFAST_REDIS_TLS_*`` reach the connections of one Redis as of a cluster (``connect.Tls``)."""

from __future__ import annotations

import ssl
from pathlib import Path

from cuefast.store import connect
from cuefast.store.connect import Tls
from cuefast.store.wire import Endpoint
from tests.cluster import make_certs


async def test_the_ca_and_client_certificate_reach_the_wire(tmp_path: Path) -> None:
    files = make_certs(tmp_path)
    client = connect("rediss://:pw@127.0.0.1:6390/0", tls=Tls(files.ca, files.cert, files.key))
    try:
        endpoint = Endpoint.of(client)
        assert isinstance(endpoint.ssl, ssl.SSLContext)
        assert endpoint.ssl.verify_mode == ssl.CERT_REQUIRED and endpoint.ssl.check_hostname
        trusted = [c["subject"] for c in endpoint.ssl.get_ca_certs()]  # with the system's
        assert ((("commonName", "cuefast test CA"),),) in trusted
        assert endpoint.password == "pw"
    finally:
        await client.aclose()
    plain = connect("redis://127.0.0.1:6390/0", tls=Tls(files.ca))  # no TLS: the files do not apply
    try:
        assert Endpoint.of(plain).ssl is None
    finally:
        await plain.aclose()
