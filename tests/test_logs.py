"""Logs (issue 16 item 6): JSON and text lines with UTC times, the request id on every line of a request."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from cuefast import logs
from cuefast.api.edge import request_id
from cuefast.config import Settings
from tests.conftest import Api, assert_error
from tests.procs import process_env

ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every log line of the process, as JSON, in a buffer (the root handlers put back after)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    logs.setup("DEBUG", "json", out)
    try:
        yield out
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_json_line_fields_and_utc_time() -> None:
    out = io.StringIO()
    record = logging.LogRecord("cuefast.x", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    record.created = 1_796_396_462.1239  # 2026-12-04T15:01:02.123Z
    record.cue_id = "cue_abc"
    token = logs.REQUEST_ID.set(b"req-1")
    try:
        handler = logging.StreamHandler(out)
        handler.setFormatter(logs.JsonFormatter())
        handler.emit(record)
        handler.setFormatter(logs.TextFormatter())
        handler.emit(record)
    finally:
        logs.REQUEST_ID.reset(token)
    first, second = out.getvalue().splitlines()
    assert json.loads(first) == {
        "ts": "2026-12-04T15:01:02.123Z",
        "level": "WARNING",
        "logger": "cuefast.x",
        "message": "hello world",
        "request_id": "req-1",
        "cue_id": "cue_abc",
    }
    assert second == "2026-12-04T15:01:02.123Z WARNING cuefast.x: hello world request_id=req-1 cue_id=cue_abc"


def test_a_traceback_stays_inside_its_json_line(captured: io.StringIO) -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logging.getLogger("cuefast.t").exception("failed")
    (line,) = captured.getvalue().splitlines()  # one physical line
    entry = json.loads(line)
    assert entry["message"] == "failed" and "ValueError: bad" in str(entry["exc"])
    assert ISO_Z.fullmatch(str(entry["ts"]))


def test_auto_format_is_json_unless_a_terminal() -> None:
    assert logs.resolve_format("auto", io.StringIO()) == "json"
    assert logs.resolve_format("auto", Tty()) == "text"
    assert logs.resolve_format("", io.StringIO()) == "json"
    assert logs.resolve_format("TEXT", io.StringIO()) == "text"
    with pytest.raises(ValueError, match="log format"):
        logs.resolve_format("xml", io.StringIO())
    with pytest.raises(ValueError, match="log level"):
        logs.setup("LOUD", "json", io.StringIO())


def test_settings_choose_the_format() -> None:
    from cuefast.config import load_settings
    from cuefast.errors import ConfigError

    assert load_settings({}).effective_log_format == "auto"
    assert load_settings({"CUEFAST_LOG_JSON": "true"}).effective_log_format == "json"
    assert (
        load_settings({"CUEFAST_LOG_FORMAT": "text", "CUEFAST_LOG_JSON": "true"}).effective_log_format
        == "text"
    )
    with pytest.raises(ConfigError, match="CUEFAST_LOG_FORMAT"):
        load_settings({"CUEFAST_LOG_FORMAT": "yaml"})


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (b"abc-123", True),
        (b"0f8fad5b-d9cb-469f-a165-70867728950e", True),
        (b"Root=1-67891233-abcdef012345678912345678", True),
        (b"a" * 128, True),
        (b"a" * 129, False),
        (b"", False),
        (b"has space", False),
        (b'quote"d', False),
        (b"semi;colon", False),
        (b"tab\tbed", False),
        ("caf\u00e9".encode("latin-1"), False),
        (None, False),
    ],
)
def test_which_client_request_ids_are_kept(given: bytes | None, kept: bool) -> None:
    rid = request_id(given)
    if kept:
        assert rid == given
    else:
        uuid.UUID(rid.decode())


async def test_request_id_echoed_and_on_every_line_of_the_request(
    api: Api, captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Litestar routes and hot routes, 404s, 413s and 500s: the id answered is the id sent (or
    the one made up), and every log line written while serving carries it; no line outside."""
    key = await api.register()
    created = await api.request(
        "POST",
        "/v1/cues",
        key,
        json={"name": "n", "transport": "worker", "schedule": {"type": "recurring", "cron": "0 0 1 1 *"}},
    )
    assert created.status_code == 201, created.text
    cue_id = created.json()["id"]

    async def boom(*a: object, **k: object) -> None:
        logging.getLogger("cuefast.services.cues").info("about to fail")
        raise RuntimeError("internals")

    monkeypatch.setattr(api.rt.cues, "list", boom)  # a Litestar route
    monkeypatch.setattr(api.rt.cues, "get", boom)  # a hot route (api/fast.py)
    captured.truncate(0)
    captured.seek(0)
    litestar = await api.request("GET", "/v1/cues", key, headers={"X-Request-Id": "ls-500"})
    assert_error(litestar, 500, "internal_error")
    hot = await api.request("GET", f"/v1/cues/{cue_id}", key, headers={"X-Request-Id": "hot-500"})
    assert_error(hot, 500, "internal_error")
    made_up = await api.request("GET", "/v1/cues", key, headers={"X-Request-Id": "not valid!"})
    assert_error(made_up, 500, "internal_error")
    missing = await api.request("GET", "/v1/nope", key, headers={"X-Request-Id": "nf-404"})
    too_big = await api.client.post(
        "/v1/cues", content=b"x", headers={"X-Request-Id": "big-413", "Content-Length": "2000000"}
    )
    assert litestar.headers["x-request-id"] == "ls-500"
    assert hot.headers["x-request-id"] == "hot-500"
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "nf-404"
    assert too_big.status_code == 413 and too_big.headers["x-request-id"] == "big-413"
    generated = made_up.headers["x-request-id"]
    uuid.UUID(generated)

    entries = lines(captured)
    by_id: dict[object, list[str]] = {}
    for entry in entries:
        by_id.setdefault(entry.get("request_id"), []).append(str(entry["message"]))
    assert None not in by_id, by_id[None]  # nothing of a request is logged without its id
    for rid in ("ls-500", "hot-500", generated):
        assert "about to fail" in by_id[rid]
        assert any(m.startswith("unhandled error on GET /v1/cues") for m in by_id[rid]), by_id[rid]
    assert logs.REQUEST_ID.get() is None  # reset after each request


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CUEFAST_")}
    return subprocess.run(
        [sys.executable, "-m", "cuefast", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **env},
    )


@pytest.mark.slow
def test_every_command_logs_through_the_one_setup(settings: Settings) -> None:
    """A one-shot command writes JSON lines with UTC times to a pipe (auto), text when asked;
    a bad format stops the server commands and the worker with exit 2."""
    env = process_env(settings)
    out = _cli("migrate", **env)
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stderr.splitlines()[0])
    assert first["logger"] == "cuefast" and first["message"].startswith("backends:")
    assert ISO_Z.fullmatch(first["ts"])
    out = _cli("migrate", **env, CUEFAST_LOG_FORMAT="text")
    assert out.returncode == 0 and re.match(r"\d{4}-\d\d-\d\dT[\d:.]+Z INFO cuefast: backends:", out.stderr)
    bad = _cli("migrate", **env, CUEFAST_LOG_FORMAT="yaml")
    assert bad.returncode == 2 and "CUEFAST_LOG_FORMAT must be auto, json or text" in bad.stderr
    worker = _cli("worker", "--log-level", "LOUD")
    assert worker.returncode == 2 and "unknown log level" in worker.stderr
    worker = _cli("worker", **{"CUEFAST_LOG_FORMAT": "xml"})
    assert worker.returncode == 2 and "unknown log format" in worker.stderr
