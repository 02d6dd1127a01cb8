"""cuefast's verification.checks: a successful outcome waits (``verification_pending``) until the
dispatcher's notice sender checked its evidence — the external id's pattern, the result against
a JSON Schema, the result URL fetched through the SSRF-checked client — then is verified or
fails verification with the reason and a ``verification_failed`` alert; transient URL errors
are retried."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx

from cuefast.api import create_app
from cuefast.config import Settings
from cuefast.engine.checks import local_problem
from cuefast.engine.notices import IN_FLIGHT, MAX_ATTEMPTS, STEP_MAX, NoticeSender
from cuefast.models import VerificationChecks
from tests.api.test_dashboard import sign_in
from tests.test_alerts import alerts, outcome, sender_for
from tests.test_dispatcher import dispatch_env, env  # noqa: F401  (fixture)
from tests.test_fire import fire

CHECKS = {
    "external_id_pattern": "ch_[0-9]+",
    "result_schema": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
    "result_url_reachable": True,
}


async def worker_cue(api: Any, key: str, checks: dict[str, Any], mode: str = "none") -> dict[str, Any]:
    body = {
        "name": f"w{len(str(checks))}{mode}",
        "transport": "worker",
        "schedule": {"type": "recurring", "cron": "0 0 1 1 *"},
        "verification": {"mode": mode, "checks": checks},
    }
    res = await api.request("POST", "/v1/cues", key, json=body)
    assert res.status_code == 201, res.text
    out: dict[str, Any] = res.json()
    return out


async def state(api: Any, key: str, eid: str) -> str:
    return str((await api.request("GET", f"/v1/executions/{eid}", key)).json()["outcome_state"])


async def checked(sender: NoticeSender) -> None:
    while await sender.step():
        pass


async def test_passing_evidence_is_verified_and_failing_evidence_alerts(env: Any) -> None:
    api, _, _, _, receiver = env
    key = await api.register()
    cue = await worker_cue(api, key, CHECKS)
    assert cue["verification"]["checks"] == CHECKS
    sender = sender_for(env)
    good = {"success": True, "external_id": "ch_42", "result": '{"n": 3}', "result_url": receiver.url}
    ok = await fire(api, key, cue["id"])
    assert (await outcome(api, key, ok["id"], good))["outcome_state"] == "verification_pending"
    await checked(sender)
    assert await state(api, key, ok["id"]) == "verified_success"
    assert receiver.requests[-1]["method"] == "GET"
    for bad, why in (
        ({**good, "external_id": "x_42"}, "external_id does not match external_id_pattern"),
        ({**good, "result": '{"n": "three"}'}, "result does not satisfy result_schema"),
        ({k: v for k, v in good.items() if k != "result_url"}, "result_url is missing"),
    ):
        ex = await fire(api, key, cue["id"])
        await outcome(api, key, ex["id"], bad)
        await checked(sender)
        assert await state(api, key, ex["id"]) == "verification_failed", why
        got = (await api.request("GET", f"/v1/executions/{ex['id']}", key)).json()
        assert why in got["outcome"]["summary"]
    listed = await alerts(api, key, "?alert_type=verification_failed")
    assert len(listed) == 3
    failure = await fire(api, key, cue["id"])  # a failure is not checked
    assert (await outcome(api, key, failure["id"], {"success": False}))["outcome_state"] == "reported_failure"


async def test_an_unreachable_result_url_is_retried_then_fails(env: Any) -> None:
    api, clock, _, _, receiver = env
    key = await api.register()
    cue = await worker_cue(api, key, {"result_url_reachable": True})
    sender = sender_for(env)
    ex = await fire(api, key, cue["id"])
    receiver.mode = "500"
    await outcome(api, key, ex["id"], {"success": True, "result_url": receiver.url})
    await checked(sender)
    assert await state(api, key, ex["id"]) == "verification_pending"  # retried later
    receiver.mode = "ok"
    clock.advance(10)
    await checked(sender)
    assert await state(api, key, ex["id"]) == "verified_success"
    ex = await fire(api, key, cue["id"])
    receiver.mode = "500"
    await outcome(api, key, ex["id"], {"success": True, "result_url": receiver.url})
    for wait in (0, 10, 60, 300):
        clock.advance(wait)
        await checked(sender)
    assert MAX_ATTEMPTS == 4 and await state(api, key, ex["id"]) == "verification_failed"
    ex = await fire(api, key, cue["id"])
    receiver.mode = "404"  # a definite answer: no retry
    await outcome(api, key, ex["id"], {"success": True, "result_url": receiver.url})
    await checked(sender)
    assert await state(api, key, ex["id"]) == "verification_failed"


async def test_checks_run_a_bounded_number_at_once(settings: Settings) -> None:
    """However many checks are queued, a sender fetches at most IN_FLIGHT result URLs at once
    (they share the outbound connections with deliveries) and reads at most STEP_MAX a step."""
    async with dispatch_env(settings.replace(partitions=1)) as env:  # one stream: all in one read
        await bounded(env)


async def bounded(env: Any) -> None:
    api, _, _, _, receiver = env
    key = await api.register()
    cue = await worker_cue(api, key, {"result_url_reachable": True})
    ids = []
    for _ in range(IN_FLIGHT + 36):
        ex = await fire(api, key, cue["id"])
        await outcome(api, key, ex["id"], {"success": True, "result_url": receiver.url})
        ids.append(ex["id"])
    receiver.mode = "slow"
    sender = sender_for(env)
    assert await sender.step() == IN_FLIGHT + 36 <= STEP_MAX
    assert receiver.most_in_flight == IN_FLIGHT  # (every one at once before)
    assert {await state(api, key, eid) for eid in ids} == {"verified_success"}


async def test_checks_follow_the_evidence_mode_and_a_manual_verdict(env: Any) -> None:
    """A mode that fails stays failed (no check runs); a manual verify of a pending one comes
    first and the checks leave it alone."""
    api, _, _, _, _ = env
    key = await api.register()
    cue = await worker_cue(api, key, {"external_id_pattern": "ok"}, mode="require_result_url")
    ex = await fire(api, key, cue["id"])
    got = await outcome(api, key, ex["id"], {"success": True, "external_id": "ok"})
    assert got["outcome_state"] == "verification_failed"  # the mode's verdict: no checks
    ex = await fire(api, key, cue["id"])
    body = {"success": True, "external_id": "ok", "result_url": "https://93.184.216.34/r"}
    assert (await outcome(api, key, ex["id"], body))["outcome_state"] == "verification_pending"
    res = await api.request("POST", f"/v1/executions/{ex['id']}/verify", key, json={"valid": True})
    assert res.status_code == 200
    await checked(sender_for(env))
    assert await state(api, key, ex["id"]) == "verified_success"  # the hand's verdict stands


async def test_bad_checks_are_validation_errors(env: Any) -> None:
    api, _, _, _, _ = env
    key = await api.register()
    for checks, field in (
        ({"result_schema": {"type": "nope"}}, "body.verification.checks.result_schema"),
        ({"result_schema": []}, "body.verification.checks.result_schema"),
        ({"external_id_pattern": "(unclosed"}, "body.verification.checks.external_id_pattern"),
        (
            {"external_id_pattern": "a)|(b"},
            "body.verification.checks.external_id_pattern",
        ),  # no escape from anchoring
        ({"external_id_pattern": "x" * 300}, "body.verification.checks.external_id_pattern"),
        ({"result_url_reachable": "maybe"}, "body.verification.checks.result_url_reachable"),
        ({"other": 1}, "body.verification.checks.other"),
        ([], "body.verification.checks"),
    ):
        body = {
            "name": "bad",
            "transport": "worker",
            "schedule": {"type": "recurring", "cron": "0 0 1 1 *"},
            "verification": {"checks": checks},
        }
        res = await api.request("POST", "/v1/cues", key, json=body)
        assert res.status_code == 422, (checks, res.text)
        assert res.json()["error"]["details"][0]["field"] == field


CATASTROPHIC = (
    "from cuefast.engine.checks import local_problem\n"
    "from cuefast.models import VerificationChecks\n"
    "checks = VerificationChecks(external_id_pattern='(a+)+')\n"
    "print(local_problem({'external_id': 'a' * 499 + '!'}, checks))\n"
)


def test_a_backtracking_pattern_cannot_stall_the_dispatcher() -> None:
    """Before: the pattern ran on Python's ``re``, which backtracks exponentially — ``(a+)+``
    against 24 a's and a "!" took 1.2 s, against 499 for ever — on the dispatcher's event loop,
    so one account's id stopped every delivery of the process. (In a subprocess, so the test
    fails by its timeout instead of hanging.)"""
    cmd = [sys.executable, "-c", CATASTROPHIC]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "external_id does not match external_id_pattern"


def test_a_pattern_matches_the_whole_id() -> None:
    for pattern, ext, ok in (
        ("ch_[0-9]+", "ch_123", True),
        ("ch_[0-9]+", "ch_123\n", False),  # no match before a trailing newline
        ("ch_[0-9]+", "xch_123", False),
        ("ch_[0-9]+", "ch_123x", False),
        ("a|ab", "ab", True),  # an alternation is anchored as a whole
        (r"(\w+)-\1", "ab-ab", True),  # backreferences work (bounded backtracking)
        (r"(\w+)-\1", "ab-ba", False),
        (r"(?=ch_)\w+", "ch_1", True),  # lookahead too
        (r"(\w+)+\1", "a" * 400 + "!", False),  # past the backtracking bound: no match, at once
    ):
        problem = local_problem({"external_id": ext}, VerificationChecks(external_id_pattern=pattern))
        assert (problem == "") is ok, (pattern, ext, problem)


async def test_the_dashboard_shows_a_cues_checks_and_an_executions_verdict(env: Any) -> None:
    """Issue 17: the checks appear on the dashboard. Before: the cue page showed neither the
    verification mode nor the checks (the verdict was visible only on the execution)."""
    api, _, _, _, _ = env
    key = await api.register()
    checks = {"external_id_pattern": "ch_<[0-9]+>", "result_schema": {"type": "object"}}
    cue = await worker_cue(api, key, checks, mode="require_external_id")
    plain = await worker_cue(api, key, {})
    ex = await fire(api, key, cue["id"])
    await outcome(api, key, ex["id"], {"success": True, "external_id": "x_1"})
    await checked(sender_for(env))
    transport = httpx.ASGITransport(app=create_app(api.rt, manage_runtime=False))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://cuefast.test") as web:
        assert (await sign_in(web, key)).status_code == 303
        page = (await web.get(f"/dashboard/cues/{cue['id']}")).text
        assert "<dt>Evidence</dt>" in page
        assert "require_external_id" in page
        assert "external id matches <code>ch_&lt;[0-9]+&gt;</code>" in page  # escaped
        assert "result satisfies a JSON Schema" in page and "result URL" not in page
        assert "<dt>Evidence</dt>" not in (await web.get(f"/dashboard/cues/{plain['id']}")).text
        shown = (await web.get(f"/dashboard/executions/{ex['id']}")).text
        assert "verification_failed" in shown and "external_id does not match external_id_pattern" in shown
