"""The official clients log in against a real ``cuefast serve`` (CONTRACT.md §16), unchanged:

* ``cueapi login`` (CLI 0.2.0): the device code it prints is opened like a person would — the
  ``/auth/device`` page, its form, the magic link from the e-mail — and the CLI ends logged in
  (credentials file, ``whoami``), for a new account and for an existing one (key revealed).
* ``cueapi-worker`` 0.3.0: its key is rotated under it; the daemon's automatic key recovery
  (device code + e-mail) gets the account's current key once the link is opened, writes it to
  its config and goes on running handlers.

The mail goes through a real SMTP server started by the test (tests/mail_sink.py).
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest
import yaml

from tests.conftest import Backend, delete_prefix
from tests.mail_sink import Sink, smtp_sink
from tests.official.conftest import client_env, register
from tests.official.server import CuefastServer
from tests.official.test_official_clients import Http, _worker_config, wait_for
from tests.official.venvs import Venv

pytestmark = [pytest.mark.official, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    with smtp_sink() as (found, port):
        found.port = port  # type: ignore[attr-defined]
        yield found


@pytest.fixture(scope="module")
def login_server(
    sink: Sink, redis_url: str, database_url: str, pg_schema: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CuefastServer]:
    """A server that mails magic links to the sink, with sessions and key reveal configured."""
    prefix = f"ol{uuid.uuid4().hex[:10]}"
    srv = CuefastServer(
        {
            "CUEFAST_REDIS_URL": redis_url,
            "CUEFAST_DATABASE_URL": database_url,
            "CUEFAST_DATABASE_SCHEMA": pg_schema,
            "CUEFAST_KEY_PREFIX": prefix,
            "CUEFAST_PARTITIONS": "4",
            "CUEFAST_ALLOW_PRIVATE_CALLBACKS": "true",
            "CUEFAST_SMTP_URL": f"smtp://127.0.0.1:{sink.port}?from=login@cuefast.test",  # type: ignore[attr-defined]
            "CUEFAST_SESSION_SECRET": "official-login-session-secret-0123456789",
            "CUEFAST_KEY_REVEAL_SECRET": "official-login-reveal-secret-0123456789",
        },
        tmp_path_factory.mktemp("login-server") / "server.log",
    )
    srv.env["CUEFAST_BASE_URL"] = srv.base_url  # links point at this server
    srv.start()
    try:
        yield srv
    finally:
        code = srv.stop()
        delete_prefix(Backend(redis_url, False), prefix)
        log = srv.log()
    assert code == 0, log[-5000:]
    assert "Traceback" not in log, log[-10000:]


def _read_until(stream: IO[str], pattern: str, proc: subprocess.Popen[str]) -> re.Match[str]:
    seen = ""
    while True:
        line = stream.readline()
        if not line:
            raise AssertionError(f"exited ({proc.poll()}) before printing {pattern!r}:\n{seen}")
        seen += line
        found = re.search(pattern, line)
        if found:
            return found


def _as_a_person(server: CuefastServer, sink: Sink, verification_url: str, email: str) -> str:
    """Open the device page, send the form, open the magic link from the e-mail."""
    assert verification_url.startswith(f"{server.base_url}/auth/device?code=")
    with httpx.Client(timeout=15) as browser:
        page = browser.get(verification_url)
        assert page.status_code == 200 and 'name="device_code"' in page.text, page.text
        code = re.search(r'name="device_code" value="([^"]+)"', page.text)
        assert code is not None
        sent = browser.post(
            f"{server.base_url}/auth/device", data={"device_code": code.group(1), "email": email}
        )
        assert sent.status_code == 200 and "Check your e-mail" in sent.text, sent.text
        link = sink.link(email)
        done = browser.get(link)
        assert done.status_code == 200 and "Signed in" in done.text, done.text
    return link


def _cli_login(cli_venv: Venv, server: CuefastServer, sink: Sink, home: Path, email: str) -> tuple[str, str]:
    """``cueapi login`` to the end: its output and the magic link."""
    env = client_env(home, CUEAPI_API_BASE=f"{server.base_url}/v1", BROWSER="true")
    proc = subprocess.Popen(
        [str(cli_venv.bin("cueapi")), "login"],
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = _read_until(proc.stdout, r"visit: (\S+)", proc).group(1)
        link = _as_a_person(server, sink, url, email)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, out
    assert f"Authenticated as {email}" in out, out
    return out, link


def _whoami(cli_venv: Venv, home: Path) -> str:
    res = subprocess.run(
        [str(cli_venv.bin("cueapi")), "whoami"],
        env=client_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return res.stdout + res.stderr


def _saved_key(home: Path) -> str:
    creds = yaml.safe_load((home / ".config" / "cueapi" / "credentials.json").read_text())
    return str(creds["default"]["api_key"])


def test_cli_login_creates_an_account(
    cli_venv: Venv, login_server: CuefastServer, sink: Sink, tmp_path: Path
) -> None:
    email = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    out, link = _cli_login(cli_venv, login_server, sink, tmp_path, email)
    key = _saved_key(tmp_path)
    assert re.fullmatch(r"cue_sk_[0-9a-f]{32}", key) and key in out
    log = login_server.log()  # the mail went out by SMTP: no link, token or key in the log
    assert link.split("token=")[1][:64] not in log and key not in log and "session-secret" not in log
    who = _whoami(cli_venv, tmp_path)
    assert email in who and "Free" in who, who


def test_cli_login_of_an_existing_account_gets_its_key(
    cli_venv: Venv, login_server: CuefastServer, sink: Sink, tmp_path: Path
) -> None:
    email, key = register(login_server, "cli-old")
    _cli_login(cli_venv, login_server, sink, tmp_path, email)
    assert _saved_key(tmp_path) == key  # revealed (CUEFAST_KEY_REVEAL_SECRET), never rotated
    assert email in _whoami(cli_venv, tmp_path)


def test_worker_recovers_its_key_by_magic_link(
    sdk_venv: Venv, login_server: CuefastServer, sink: Sink, tmp_path: Path
) -> None:
    email, key = register(login_server, "recover")
    config = tmp_path / "worker.yaml"
    _worker_config(config, sdk_venv, login_server, key, f"recover-{uuid.uuid4().hex[:6]}")
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "email": email}, sort_keys=False))
    log_path = config.with_suffix(".log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(sdk_venv.bin("cueapi-worker")), "start", "-c", str(config)],
            env=client_env(tmp_path),
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        wait_for(
            lambda: "Worker daemon starting" in log_path.read_text() or proc.poll() is not None,
            "the worker",
            60,
        )
        res = httpx.post(
            f"{login_server.base_url}/v1/auth/key/regenerate",
            headers={"Authorization": f"Bearer {key}", "X-Confirm-Destructive": "true"},
            timeout=10,
        )
        new_key = res.json()["api_key"]
        link = sink.link(email, timeout=90)  # the daemon saw 401 key_rotated and asked for a link
        assert httpx.get(link, timeout=15).status_code == 200
        wait_for(lambda: yaml.safe_load(config.read_text())["api_key"] == new_key, "the recovered key", 60)
        http = Http(login_server, new_key)
        cue = http.create_cue(
            name="after-recovery",
            transport="worker",
            schedule={"type": "recurring", "cron": "0 0 1 1 *"},
            payload={"task": "echo", "word": "back"},
        )
        done = http.wait_status(http.fire(cue["id"]), {"success", "failed"})
        assert done["status"] == "success", (done, log_path.read_text())
        assert proc.poll() is None, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
