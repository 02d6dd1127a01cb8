"""The official CueAPI clients from PyPI, unchanged, against a real ``cuefast serve``.

* ``cueapi-sdk`` 0.1.3: a scripted scenario run inside its venv (scenarios/sdk_scenario.py).
* ``cueapi-worker`` 0.3.0: the real daemon process with a YAML config, running shell handlers.
* ``cueapi`` 0.2.0 CLI: its commands as real processes, with a credentials file or CUEAPI_* env.

Every mismatch found this way is fixed in cuefast, never worked around here.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.official.conftest import CUE_LIMIT, LEASE, RATE_LIMIT, client_env, register
from tests.official.server import CuefastServer
from tests.official.venvs import Venv

pytestmark = [
    pytest.mark.official,
    pytest.mark.slow,
    pytest.mark.timeout(300),
]  # the first run builds the venvs

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
StartWorker = Callable[[Path], "subprocess.Popen[str]"]


def wait_for(cond: Callable[[], Any], what: str, timeout: float = 30.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = cond()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def run_scenario(venv: Venv, script: str, server: CuefastServer, home: Path, timeout: float = 120) -> None:
    res = subprocess.run(
        [str(venv.python), str(SCENARIOS / script), server.base_url],
        env=client_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    result_lines = [line for line in res.stdout.splitlines() if line.startswith("RESULT ")]
    assert result_lines, f"{script} crashed (exit {res.returncode}):\n{res.stdout}\n{res.stderr}"
    result = json.loads(result_lines[-1][len("RESULT ") :])
    assert res.returncode == 0 and not result["failed"], (
        f"{script}: failed steps {result['failed']}\n{res.stdout}\n{res.stderr}\n"
        f"--- server log (tail) ---\n{server.log()[-4000:]}"
    )
    assert result["passed"], res.stdout


class Http:
    """Direct HTTP to the server, to check what the clients did."""

    def __init__(self, server: CuefastServer, key: str) -> None:
        self.client = httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        )

    def get(self, path: str, **params: Any) -> Any:
        res = self.client.get(path, params=params)
        assert res.status_code == 200, res.text
        return res.json()

    def post(self, path: str, body: dict[str, Any] | None = None, status: int = 200) -> Any:
        res = self.client.post(path, json=body or {})
        assert res.status_code == status, res.text
        return res.json()

    def create_cue(self, **body: Any) -> dict[str, Any]:
        out: dict[str, Any] = self.post("/v1/cues", body, status=201)
        return out

    def fire(self, cue_id: str, **body: Any) -> str:
        return str(self.post(f"/v1/cues/{cue_id}/fire", body)["id"])

    def execution(self, eid: str) -> dict[str, Any]:
        out: dict[str, Any] = self.get(f"/v1/executions/{eid}")
        return out

    def wait_status(self, eid: str, statuses: set[str], timeout: float = 30.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            e = self.execution(eid)
            return e if e["status"] in statuses else None

        out: dict[str, Any] = wait_for(check, f"execution {eid} to reach {statuses}", timeout)
        return out


# --- the SDK -----------------------------------------------------------------------------


@pytest.mark.usefixtures("quickstart")  # starts the ~15 s CLI quickstart now, to run alongside
def test_sdk_scenario(sdk_venv: Venv, server: CuefastServer, tmp_path: Path) -> None:
    assert CUE_LIMIT <= 50
    run_scenario(sdk_venv, "sdk_scenario.py", server, tmp_path)


def test_sdk_rate_limit_error(sdk_venv: Venv, server: CuefastServer, tmp_path: Path) -> None:
    run_scenario(sdk_venv, "sdk_rate_limit_scenario.py", server, tmp_path)


# --- the worker daemon ---------------------------------------------------------------------


def _worker_config(
    path: Path,
    venv: Venv,
    server: CuefastServer,
    key: str,
    worker_id: str,
    heartbeat_interval: int = 5,
    api_base: str | None = None,
) -> None:
    handler = f"{venv.python} {SCENARIOS / 'handler.py'}"
    path.write_text(
        yaml.safe_dump(
            {
                "api_key": key,
                "api_base": api_base or server.base_url,
                "worker_id": worker_id,
                "poll_interval": 1,
                "heartbeat_interval": heartbeat_interval,
                "max_concurrent": 2,
                "handler_timeout": 60,
                "handlers": {
                    "echo": {
                        "cmd": handler + " ok {{ payload.word }}",
                        "timeout": 30,
                        "env": {"GREETING": "hi {{ payload.greeting }}"},
                    },
                    "boom": handler + " fail",
                    "slow": handler + " sleep {{ payload.seconds }}",
                },
            },
            sort_keys=False,  # the daemon reports its handlers in config order
        )
    )


@pytest.fixture
def worker_proc(sdk_venv: Venv, tmp_path: Path) -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(config: Path) -> subprocess.Popen[str]:
        log = open(config.with_suffix(".log"), "w")  # noqa: SIM115 - the process owns it
        proc = subprocess.Popen(
            [str(sdk_venv.bin("cueapi-worker")), "start", "-c", str(config)],
            env=client_env(tmp_path),
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        log.close()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_worker_daemon_runs_handlers(
    sdk_venv: Venv,
    server: CuefastServer,
    tmp_path: Path,
    worker_proc: StartWorker,
) -> None:
    _, key = register(server, "worker")
    http = Http(server, key)
    worker_id = f"official-{uuid.uuid4().hex[:6]}"
    config = tmp_path / "worker.yaml"
    _worker_config(config, sdk_venv, server, key, worker_id)
    worker = lambda payload, name: http.create_cue(  # noqa: E731
        name=name, transport="worker", schedule={"type": "recurring", "cron": "0 0 1 1 *"}, payload=payload
    )
    echo = worker({"task": "echo", "word": "plain"}, "echo-cue")
    boom = worker({"task": "boom"}, "boom-cue")
    other = worker({"task": "nobody-handles-this"}, "other-cue")
    assert echo["callback"] == {"url": None, "method": "POST", "headers": {}}

    proc = worker_proc(config)
    log = config.with_suffix(".log")
    echo_ids = [
        http.fire(echo["id"]),
        http.fire(echo["id"], payload_override={"word": "merged", "greeting": "there"}),
        http.fire(echo["id"], payload_override={"task": "echo", "evidence": True}, merge_strategy="replace"),
    ]
    boom_id = http.fire(boom["id"])
    other_id = http.fire(other["id"])
    # Evidence from the handler's outcome file satisfies a verification mode.
    proof = http.create_cue(
        name="proof-cue",
        transport="worker",
        schedule={"type": "recurring", "cron": "0 0 1 1 *"},
        payload={"task": "echo", "evidence": True},
        verification={"mode": "require_external_id"},
    )
    proof_ids = [http.fire(proof["id"]), http.fire(proof["id"], payload_override={"evidence": False})]
    # A scheduled (per-second cron) worker cue too, paused once it has fired.
    tick = worker({"task": "echo", "word": "tick"}, "tick-cue")
    http.client.patch(f"/v1/cues/{tick['id']}", json={"schedule": {"cron": "* * * * * *"}})

    def tick_done() -> list[dict[str, Any]]:
        execs = http.get("/v1/executions", cue_id=tick["id"])["executions"]
        return [e for e in execs if e["status"] == "success"]

    try:
        done = [http.wait_status(eid, {"success", "failed"}) for eid in echo_ids]
        boomed = http.wait_status(boom_id, {"success", "failed"})
        ticked = wait_for(tick_done, "a scheduled worker execution to succeed")[0]
    finally:
        http.client.patch(f"/v1/cues/{tick['id']}", json={"status": "paused"})
        if proc.poll() is not None:
            pytest.fail(f"cueapi-worker exited with {proc.returncode}:\n{log.read_text()}")

    effective = [
        {"task": "echo", "word": "plain"},
        {"task": "echo", "word": "merged", "greeting": "there"},
        {"task": "echo", "evidence": True},
    ]
    for eid, e, payload in zip(echo_ids, done, effective, strict=True):
        assert e["status"] == "success", (e, log.read_text())
        assert e["claimed_by_worker"] == worker_id and e["attempts"] == 1 and e["delivered_at"]
        assert e["outcome"]["success"] is True and e["outcome_state"] == "reported_success"
        seen = json.loads(e["outcome"]["result"])
        assert seen["execution_id"] == eid and seen["cue_id"] == echo["id"]
        assert seen["cue_name"] == "echo-cue" and seen["worker_id"] == worker_id
        assert seen["payload"] == payload == e["payload"]
        assert seen["has_api_key"] is True and seen["base_url"] == server.base_url
        assert seen["words"] == ([payload["word"]] if "word" in payload else [])
        assert seen["greeting"] == ("hi there" if "greeting" in payload else "hi ")  # missing → ""
    assert done[2]["outcome"]["external_id"] == f"ext-{echo_ids[2]}"  # evidence from the outcome file
    assert done[2]["outcome"]["summary"] == "made by the handler"
    proven, unproven = (http.wait_status(eid, {"success", "failed"}) for eid in proof_ids)
    assert proven["outcome_state"] == "verified_success", proven
    assert proven["outcome"]["external_id"] == f"ext-{proof_ids[0]}"
    assert unproven["outcome_state"] == "verification_failed" and unproven["status"] == "success", unproven
    assert boomed["status"] == "failed" and boomed["outcome"]["success"] is False
    assert "handler failed on purpose" in boomed["outcome"]["error"]
    assert boomed["error_message"] == boomed["outcome"]["error"]
    assert ticked["triggered_by"] == "scheduled" and json.loads(ticked["outcome"]["result"])["words"] == [
        "tick"
    ]
    # The daemon never takes a task it has no handler for.
    assert http.execution(other_id)["status"] == "pending"
    claimable = http.get("/v1/executions/claimable")["executions"]
    assert other_id in [i["execution_id"] for i in claimable]

    workers = http.get("/v1/workers")["workers"]
    mine = [w for w in workers if w["worker_id"] == worker_id]
    assert (
        mine and mine[0]["handlers"] == ["echo", "boom", "slow"] and mine[0]["heartbeat_status"] == "active"
    ), workers
    cue = http.get(f"/v1/cues/{echo['id']}")
    assert cue["run_count"] == 3 and cue["last_run"] is not None

    status = subprocess.run(
        [str(sdk_venv.bin("cueapi-worker")), "status", "-c", str(config)],
        env=client_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"Worker '{worker_id}' is connected and authenticated." in status.stdout

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text()
    text = log.read_text()
    assert "Traceback" not in text and "ERROR" not in text, text


def test_two_worker_daemons_share_the_work(
    sdk_venv: Venv, server: CuefastServer, tmp_path: Path, worker_proc: StartWorker
) -> None:
    """Two daemons see the same claimable list and race for it: each execution runs once."""
    _, key = register(server, "pair")
    http = Http(server, key)
    cue = http.create_cue(
        name="shared",
        transport="worker",
        schedule={"type": "recurring", "cron": "0 0 1 1 *"},
        payload={"task": "echo"},
    )
    ids = [http.fire(cue["id"], payload_override={"word": f"w{i}"}) for i in range(8)]
    wait_for(lambda: len(http.get("/v1/executions/claimable")["executions"]) == 8, "8 claimable")
    configs = []
    for name in ("left", "right"):
        config = tmp_path / f"{name}.yaml"
        _worker_config(config, sdk_venv, server, key, name)
        text = yaml.safe_load(config.read_text())
        config.write_text(yaml.safe_dump({**text, "max_concurrent": 4}, sort_keys=False))
        configs.append(config)
    procs = [worker_proc(config) for config in configs]
    done = [http.wait_status(eid, {"success", "failed"}) for eid in ids]
    for i, (eid, e) in enumerate(zip(ids, done, strict=True)):
        assert e["status"] == "success" and e["attempts"] == 1, e
        assert e["claimed_by_worker"] in ("left", "right")
        seen = json.loads(e["outcome"]["result"])
        assert seen["execution_id"] == eid and seen["words"] == [f"w{i}"]
        assert seen["worker_id"] == e["claimed_by_worker"]  # the claim holder ran it
    for proc, config in zip(procs, configs, strict=True):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        text = config.with_suffix(".log").read_text()
        assert "Traceback" not in text and "ERROR" not in text, text  # lost races are 409s, not errors


def test_worker_daemon_long_handler_keeps_its_claim(
    sdk_venv: Venv,
    short_lease_server: CuefastServer,
    tmp_path: Path,
    worker_proc: StartWorker,
) -> None:
    """The daemon never sends execution heartbeats: its worker heartbeats must keep the claim (§9.5);
    a dead worker's expired claim is re-offered, and the daemon takes it."""
    server = short_lease_server
    _, key = register(server, "slow")
    http = Http(server, key)
    config = tmp_path / "worker.yaml"
    _worker_config(config, sdk_venv, server, key, "slow-worker", heartbeat_interval=1)
    cue = http.create_cue(
        name="slow",
        transport="worker",
        schedule={"type": "recurring", "cron": "0 0 1 1 *"},
        payload={"task": "slow", "seconds": 3 * LEASE},
    )
    # A claim by a worker that never heartbeats expires and is re-offered to the daemon (§9.5).
    echo = http.create_cue(
        name="echo",
        transport="worker",
        schedule={"type": "recurring", "cron": "0 0 1 1 *"},
        payload={"task": "echo", "word": "again"},
    )
    lost = http.fire(echo["id"])
    wait_for(lambda: http.get("/v1/executions/claimable")["executions"], "a claimable execution")
    http.post(f"/v1/executions/{lost}/claim", {"worker_id": "ghost"})
    proc = worker_proc(config)
    eid = http.fire(cue["id"])
    claimed = http.wait_status(eid, {"delivering"})
    assert claimed["claimed_by_worker"] == "slow-worker"
    first_lease = datetime.fromisoformat(claimed["lease_expires_at"])
    renewals: list[datetime] = []

    def finished() -> dict[str, Any] | None:
        e = http.execution(eid)
        assert e["status"] in ("delivering", "success"), e  # never re-offered while the handler runs
        if e["status"] == "delivering" and datetime.fromisoformat(e["lease_expires_at"]) > first_lease:
            renewals.append(datetime.fromisoformat(e["lease_expires_at"]))
        return e if e["status"] == "success" else None

    done = wait_for(finished, "the slow handler's success", timeout=30)
    assert renewals, "the lease was never seen renewed by worker heartbeats"
    assert done["attempts"] == 1, done  # one claim: the first one outlived its lease
    assert json.loads(done["outcome"]["result"])["execution_id"] == eid
    again = http.wait_status(lost, {"success", "failed"})
    assert again["status"] == "success" and again["attempts"] == 2, again  # ghost's claim, then the daemon's
    assert again["claimed_by_worker"] in (None, "slow-worker") and again["error_message"] is None, again
    assert json.loads(again["outcome"]["result"])["words"] == ["again"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_worker_regenerate_key_and_rotated_key(
    sdk_venv: Venv,
    server: CuefastServer,
    tmp_path: Path,
    worker_proc: StartWorker,
) -> None:
    _, key = register(server, "rotate")
    config = tmp_path / "worker.yaml"
    # With a trailing slash, as users write it: regenerate-key then posts to "…//v1/auth/key/regenerate".
    _worker_config(config, sdk_venv, server, key, "rotating-worker", api_base=server.base_url + "/")
    old_config = tmp_path / "old.yaml"
    old_config.write_text(config.read_text())
    bin_ = str(sdk_venv.bin("cueapi-worker"))
    env = client_env(tmp_path)

    regen = subprocess.run(
        [bin_, "regenerate-key", "-c", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert regen.returncode == 0, regen.stdout + regen.stderr
    new_key = yaml.safe_load(config.read_text())["api_key"]
    assert new_key != key and new_key.startswith("cue_sk_")
    status = subprocess.run(
        [bin_, "status", "-c", str(config)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert status.returncode == 0, status.stdout + status.stderr
    old = httpx.get(f"{server.base_url}/v1/auth/me", headers={"Authorization": f"Bearer {key}"})
    assert old.status_code == 401 and old.json()["error"]["code"] == "key_rotated"

    # The daemon with the rotated key stops at once and says why (it reads error.code).
    proc = worker_proc(old_config)
    assert proc.wait(30) == 1
    text = old_config.with_suffix(".log").read_text()
    assert "API key invalid" in text and "API key was rotated" in text, text


# --- the CLI -------------------------------------------------------------------------------


class Cli:
    """The ``cueapi`` command with a private config dir holding a credentials file."""

    def __init__(self, venv: Venv, server: CuefastServer, home: Path, email: str, key: str) -> None:
        self.bin = str(venv.bin("cueapi"))
        self.home = home
        self.api_base = f"{server.base_url}/v1"
        creds = home / ".config" / "cueapi" / "credentials.json"
        creds.parent.mkdir(parents=True, exist_ok=True)
        creds.write_text(json.dumps({"default": {"api_key": key, "email": email, "api_base": self.api_base}}))
        self.creds = creds

    def popen(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [self.bin, *args],
            env=client_env(self.home, **env),
            cwd=self.home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __call__(self, *args: str, code: int = 0, **env: str) -> str:
        res = subprocess.run(
            [self.bin, *args],
            env=client_env(self.home, **env),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        out = res.stdout + res.stderr
        assert res.returncode == code, f"cueapi {' '.join(args)} → exit {res.returncode}:\n{out}"
        assert "Traceback" not in out, out
        return out


def _field(out: str, label: str) -> str:
    for line in out.splitlines():
        if line.startswith(label):
            return line[len(label) :].strip()
    raise AssertionError(f"no {label!r} in:\n{out}")


@pytest.fixture(scope="module")
def quickstart(
    cli_venv: Venv, server: CuefastServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """``cueapi quickstart`` waits ~15 s for its cue, so it starts early and runs alongside the others."""
    email, key = register(server, "quickstart")
    cli = Cli(cli_venv, server, tmp_path_factory.mktemp("quickstart"), email, key)
    proc = cli.popen("quickstart")
    yield proc, Http(server, key)
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_cli_scenario(cli_venv: Venv, server: CuefastServer, tmp_path: Path) -> None:
    """Every main command but usage and quickstart, in one process (scenarios/cli_scenario.py)."""
    run_scenario(cli_venv, "cli_scenario.py", server, tmp_path)


def test_cli_binary_with_env_configuration(cli_venv: Venv, server: CuefastServer, tmp_path: Path) -> None:
    """The real ``cueapi`` console script, configured by CUEAPI_API_KEY / CUEAPI_API_BASE only."""
    email, key = register(server, "clienv")
    cli = Cli(cli_venv, server, tmp_path, email, key)
    cli.creds.unlink()
    env = {"CUEAPI_API_KEY": key, "CUEAPI_API_BASE": cli.api_base}
    out = cli("create", "--name", "env-cue", "--cron", "0 9 * * *", "--worker", **env)
    cue_id = _field(out, "Created:")
    out = cli("whoami", **env)
    assert _field(out, "Email:") == email and _field(out, "Active cues:") == f"1 / {CUE_LIMIT}"
    assert _field(out, "API base:") == cli.api_base
    assert cue_id in cli("list", **env)
    assert "Not logged in" in cli("whoami")  # neither file nor env: the CLI says so, exit 0


def test_cli_usage(cli_venv: Venv, server: CuefastServer, tmp_path: Path) -> None:
    email, key = register(server, "cliu")
    cli = Cli(cli_venv, server, tmp_path, email, key)
    Http(server, key).create_cue(
        name="u", transport="worker", schedule={"type": "recurring", "cron": "0 0 1 1 *"}, payload={}
    )
    out = cli("usage")
    assert _field(out, "Plan:") == "Free" and _field(out, "Active cues:") == f"1 / {CUE_LIMIT}"
    assert _field(out, "Executions:") == "0 / 1,000,000,000 (0.0%)"
    assert _field(out, "Rate limit:") == f"{RATE_LIMIT} req/min"  # rate_limit.limit, not the default 60


def test_cli_quickstart(quickstart: Any) -> None:
    proc, http = quickstart
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, out + err
    assert "Callback delivered!" in out and "Your first cue! CueAPI is working." in out, out + err
    assert "Deleted." in out and "CueAPI is working!" in out, out
    assert http.get("/v1/cues")["total"] == 0  # it cleaned up after itself
