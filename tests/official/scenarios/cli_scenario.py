"""The official ``cueapi`` CLI (0.2.0) against a running cuefast, unchanged.

Run inside the CLI venv: ``python cli_scenario.py <base_url>`` with ``XDG_CONFIG_HOME`` set
to a private directory. The commands run in this one process through click's ``CliRunner``
(the console script only calls the same ``main``), which keeps ~50 commands fast; the test
module also runs the real ``cueapi`` binary for the env-var configuration, ``usage`` and
``quickstart``. Accounts come from plain HTTP registration and sit in the CLI's credentials
file as profiles (``--profile``), with ``api_base`` = ``<base_url>/v1``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner
from common import Receiver, Scenario, main, wait_for
from cueapi.cli import main as cueapi_main
from cueapi.credentials import CREDS_PATH

BASE = sys.argv[1]
API_BASE = f"{BASE}/v1"
S: dict[str, Any] = {}
sc = Scenario()
runner = CliRunner()


class Account:
    def __init__(self, profile: str) -> None:
        self.profile = profile
        self.email = f"{profile}-{uuid.uuid4().hex[:8]}@example.com"
        res = httpx.post(f"{BASE}/v1/auth/register", json={"email": self.email}, timeout=10)
        assert res.status_code == 201, res.text
        self.key: str = res.json()["api_key"]
        creds = json.loads(CREDS_PATH.read_text()) if CREDS_PATH.exists() else {}
        creds[profile] = {"api_key": self.key, "email": self.email, "api_base": API_BASE}
        CREDS_PATH.parent.mkdir(parents=True, exist_ok=True)
        CREDS_PATH.write_text(json.dumps(creds))
        self.http = httpx.Client(base_url=BASE, headers={"Authorization": f"Bearer {self.key}"}, timeout=10)

    def __call__(self, *args: str, code: int = 0, **env: str) -> str:
        res = runner.invoke(cueapi_main, ["--profile", self.profile, *args], env=env)
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            raise AssertionError(f"cueapi {' '.join(args)} crashed:\n{res.output}") from res.exception
        assert res.exit_code == code, f"cueapi {' '.join(args)} → exit {res.exit_code}:\n{res.output}"
        return res.output

    def get(self, path: str, **params: Any) -> Any:
        res = self.http.get(path, params=params)
        assert res.status_code == 200, res.text
        return res.json()

    def fire(self, cue_id: str, **body: Any) -> str:
        res = self.http.post(f"/v1/cues/{cue_id}/fire", json=body)
        assert res.status_code == 200, res.text
        return str(res.json()["id"])

    def worker_cue(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        body = {"name": name, "transport": "worker", "schedule": {"type": "recurring", "cron": "0 0 1 1 *"}}
        res = self.http.post("/v1/cues", json={**body, "payload": payload})
        assert res.status_code == 201, res.text
        out: dict[str, Any] = res.json()
        return out


def field(out: str, label: str) -> str:
    for line in out.splitlines():
        if line.startswith(label):
            return line[len(label) :].strip()
    raise AssertionError(f"no {label!r} in:\n{out}")


HOOK = "http://127.0.0.1:9/hook"  # never delivered to: these cues are not due


@sc.step
def whoami_and_empty_list() -> None:
    a = S["a"] = Account("cli")
    S["cue_limit"] = a.get("/v1/auth/me")["active_cue_limit"]
    out = a("whoami")
    assert field(out, "Email:") == a.email and field(out, "Plan:") == "Free"
    assert field(out, "Active cues:") == f"0 / {S['cue_limit']}"
    assert field(out, "Executions:") == "0 / 1000000000 this month"
    assert field(out, "Profile:") == "cli" and field(out, "API base:") == API_BASE
    assert "No cues yet" in a("list")


@sc.step
def create_recurring_once_and_worker() -> None:
    a = S["a"]
    out = a(
        "create",
        "--name",
        "cli-cron",
        "--cron",
        "0 9 * * 1",
        "--timezone",
        "America/New_York",
        "--url",
        HOOK,
        "--payload",
        '{"task": "report", "n": 1}',
        "--description",
        "from the cli",
    )
    S["cron"] = field(out, "Created:")
    assert field(out, "Status:") == "active" and field(out, "Next run:").endswith("Z")
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7200))
    S["once"] = field(a("create", "--name", "cli-once", "--at", at, "--url", HOOK), "Created:")
    assert a.get(f"/v1/cues/{S['once']}")["next_run"] == at
    out = a(
        "create",
        "--name",
        "cli-worker",
        "--cron",
        "0 0 1 1 *",  # never fires while the scenario runs (it counts the pending executions)
        "--worker",
        "--payload",
        '{"task": "etl"}',
        "--on-failure",
        '{"email": false, "pause": true}',
    )
    S["worker"] = field(out, "Created:")
    w = a.get(f"/v1/cues/{S['worker']}")
    assert w["transport"] == "worker" and w["callback"] == {"url": None, "method": "POST", "headers": {}}
    assert w["on_failure"] == {"email": False, "webhook": None, "pause": True}


@sc.step
def create_errors() -> None:
    a = S["a"]
    # The CLI looks for the message under "detail" (FastAPI's shape), so it prints its fallback.
    assert "Failed (HTTP 409)" in a(
        "create", "--name", "cli-cron", "--cron", "0 9 * * *", "--url", HOOK, code=1
    )
    assert "Failed (HTTP 400)" in a("create", "--name", "b", "--cron", "61 25 * * *", "--url", HOOK, code=1)
    assert "Failed (HTTP 422)" in a(
        "create", "--name", "b", "--cron", "0 9 * * *", "--timezone", "Nope/Nope", "--url", HOOK, code=1
    )


@sc.step
def list_and_get() -> None:
    a = S["a"]
    out = a("list")
    assert "3 cues (3 active)" in out and "cli-cron" in out and "cli-worker" in out
    assert a("list", "--limit", "1", "--offset", "1").count("cue_") == 1
    out = a("get", S["cron"])
    assert field(out, "Name:") == "cli-cron" and "0 9 * * 1 (America/New_York)" in out
    assert field(out, "Callback:") == f"POST {HOOK}" and field(out, "Description:") == "from the cli"
    assert field(out, "Run count:") == "0"
    assert "One-time: " in a("get", S["once"])
    assert "Cue not found" in a("get", "cue_doesnotexist", code=1)


@sc.step
def update_keeps_what_it_does_not_send() -> None:
    a, cid = S["a"], S["cron"]
    assert f"Updated: {cid} (cli-cron)" in a(
        "update", cid, "--cron", "30 10 * * *", "--description", "changed"
    )
    c = a.get(f"/v1/cues/{cid}")
    assert c["schedule"] == {"type": "recurring", "timezone": "America/New_York", "cron": "30 10 * * *"}
    assert c["description"] == "changed" and c["payload"] == {"task": "report", "n": 1}
    a("update", cid, "--url", "http://127.0.0.1:9/other", "--payload", '{"task": "report", "n": 2}')
    c = a.get(f"/v1/cues/{cid}")
    assert c["callback"]["url"] == "http://127.0.0.1:9/other" and c["payload"]["n"] == 2
    assert "Updated: " in a("update", cid, "--name", "cli-cron-2", "--on-failure", '{"pause": true}')
    c = a.get(f"/v1/cues/{cid}")
    assert c["name"] == "cli-cron-2" and c["on_failure"]["pause"] is True
    assert "Cue not found" in a("update", "cue_doesnotexist", "--description", "x", code=1)


@sc.step
def pause_and_resume() -> None:
    a, cid = S["a"], S["cron"]
    assert f"Paused: {cid} (cli-cron-2)" in a("pause", cid)
    assert a.get(f"/v1/cues/{cid}")["next_run"] is None
    assert "1 paused" in a("list") and cid in a("list", "--status", "paused")
    out = a("resume", cid)
    assert f"Resumed: {cid}" in out and field(out, "Next run:").endswith("Z")
    assert "Cue not found" in a("pause", "cue_doesnotexist", code=1)


@sc.step
def fire_with_override_and_replace() -> None:
    a, wid = S["a"], S["worker"]
    out = a("fire", wid, "--payload-override", '{"extra": 1}')
    S["e1"] = field(out, "Execution:")
    assert field(out, "Scheduled:").endswith("+00:00")
    assert a.get(f"/v1/executions/{S['e1']}")["payload"] == {"task": "etl", "extra": 1}
    out = a("fire", wid, "--payload-override", '{"only": 1}', "--merge-strategy", "replace")
    S["e2"] = field(out, "Execution:")
    assert a.get(f"/v1/executions/{S['e2']}")["payload"] == {"only": 1}
    assert f"Fired: {wid}" in a("fire", wid)
    assert "Cue not found" in a("fire", "cue_doesnotexist", code=1)
    out = a("get", wid)
    assert "Recent executions:" in out and out.count("pending") == 3


@sc.step
def executions_list_get_and_outcome() -> None:
    a, wid, e1, e2 = S["a"], S["worker"], S["e1"], S["e2"]
    out = a("executions", "list", "--cue-id", wid)
    assert e1 in out and e2 in out
    assert e1 in a("executions", "list", "--status", "pending", "--limit", "5")
    assert "No executions found" in a("executions", "list", "--status", "success")
    out = a("executions", "get", e1)
    assert field(out, "ID:") == e1 and field(out, "Cue:") == wid and field(out, "Attempts:") == "0"
    assert field(out, "Status:") == "pending"
    assert "Execution not found" in a("executions", "get", str(uuid.uuid4()), code=1)
    assert "Execution not found" in a("executions", "get", "not-a-uuid", code=1)
    assert "Outcome recorded" in a("executions", "report-outcome", e2, "--failure", "--summary", "skipped")
    e = a.get(f"/v1/executions/{e2}")
    assert e["status"] == "failed" and e["outcome"]["summary"] == "skipped"
    assert "already recorded" in a("executions", "report-outcome", e2, "--success", code=1)
    assert "Execution not found" in a("executions", "report-outcome", str(uuid.uuid4()), "--success", code=1)


@sc.step
def delivered_webhook_shows_in_get() -> None:
    a, r = S["a"], Receiver()
    try:
        cid = field(a("create", "--name", "cli-hook", "--cron", "0 0 1 1 *", "--url", r.url()), "Created:")
        eid = field(a("fire", cid, "--payload-override", '{"hello": "world"}'), "Execution:")
        req = wait_for(lambda: r.for_execution(eid), "the delivery")[0]
        assert json.loads(req["body"])["payload"] == {"hello": "world"}
        wait_for(lambda: a.get(f"/v1/executions/{eid}")["status"] == "success", "success")
        out = a("get", cid)
        assert "success  (200, 1 attempt)" in out and field(out, "Run count:") == "1", out
        out = a("executions", "get", eid)
        assert field(out, "Status:") == "success" and field(out, "HTTP status:") == "200"
        assert "Deleted." in a("delete", cid, "--yes")
    finally:
        r.close()


@sc.step
def delete() -> None:
    a = S["a"]
    assert a("delete", S["once"], "--yes").strip() == "Deleted."
    assert "Cue not found" in a("delete", S["once"], "--yes", code=1)
    assert field(a("whoami"), "Active cues:") == f"2 / {S['cue_limit']}"


@sc.step
def worker_commands() -> None:
    w = Account("cliw")
    cue = w.worker_cue("w", {"task": "t1"})
    first, second = w.fire(cue["id"]), w.fire(cue["id"], payload_override={"task": "t2"})
    wait_for(lambda: len(w.get("/v1/executions/claimable")["executions"]) == 2, "two claimable")
    out = w("executions", "list-claimable")
    assert first in out and second in out and "t1" in out and "t2" in out
    out = w("executions", "list-claimable", "--task", "t2")
    assert second in out and first not in out
    assert "No claimable executions (task=none)" in w("executions", "list-claimable", "--task", "none")

    out = w("executions", "claim", first, "--worker-id", "cli-w")
    assert f"Claimed: {first}" in out and field(out, "Lease:") == "900s"
    assert "Not claimable" in w("executions", "claim", first, "--worker-id", "cli-w", code=1)
    assert "Execution not found" in w("executions", "claim", str(uuid.uuid4()), "--worker-id", "x", code=1)
    out = w("executions", "heartbeat", first, "--worker-id", "cli-w")
    assert "Heartbeat acknowledged" in out and field(out, "Lease until:").endswith("+00:00")
    assert "does not match" in w("executions", "heartbeat", first, "--worker-id", "someone-else", code=1)
    out = w("executions", "get", first)
    assert field(out, "Claimed by:") == "cli-w" and field(out, "Started:").endswith("Z")
    assert field(out, "Status:") == "delivering" and field(out, "Attempts:") == "1"

    assert f"Claimed: {second}" in w("executions", "claim-next", "--worker-id", "cli-w", "--task", "t2")
    assert "No executions available" in w("executions", "claim-next", "--worker-id", "cli-w")
    assert "No claimable executions for task=t2" in w(
        "executions", "claim-next", "--worker-id", "x", "--task", "t2"
    )
    third = w.fire(cue["id"])
    wait_for(lambda: w.get("/v1/executions/claimable")["executions"], "a claimable execution")
    assert f"Claimed: {third}" in w("executions", "claim-next", "--worker-id", "cli-w")

    assert "Outcome recorded" in w("executions", "report-outcome", first, "--success", "--external-id", "x-1")
    e = w.get(f"/v1/executions/{first}")
    assert e["status"] == "success" and e["outcome"]["external_id"] == "x-1"
    assert "no longer in 'delivering'" in w("executions", "heartbeat", first, "--worker-id", "cli-w", code=1)
    assert "Execution not found" in w(
        "executions", "heartbeat", str(uuid.uuid4()), "--worker-id", "x", code=1
    )


@sc.step
def key_regenerate() -> None:
    k = Account("clikey")
    out = k("key", "regenerate", "--yes")
    new_key = field(out, "New API key:")
    assert new_key != k.key and new_key.startswith("cue_sk_") and "Local credentials updated." in out
    assert json.loads(Path(CREDS_PATH).read_text())["clikey"]["api_key"] == new_key
    assert field(k("whoami"), "Email:") == k.email  # the CLI now uses the new key from its file
    old = httpx.get(f"{BASE}/v1/auth/me", headers={"Authorization": f"Bearer {k.key}"})
    assert old.status_code == 401 and old.json()["error"]["code"] == "key_rotated"
    # CUEAPI_API_KEY wins over the file: the rotated key is refused.
    assert "Failed to get user info (HTTP 401)" in k("whoami", code=1, CUEAPI_API_KEY=k.key)
    assert "Failed to regenerate key (HTTP 401)" in k(
        "key", "regenerate", "--yes", code=1, CUEAPI_API_KEY=k.key
    )


if __name__ == "__main__":
    assert os.environ.get("XDG_CONFIG_HOME"), "run with a private XDG_CONFIG_HOME"
    main(sc)
