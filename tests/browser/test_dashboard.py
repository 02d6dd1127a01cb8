"""Every dashboard page and action in a headless Chromium against a real ``cuefast serve``.

One server process (real Redis and PostgreSQL, the test's key prefix and schema) and one
browser for the module. A webhook receiver on the test's loop answers the deliveries. Each
page is saved as a screenshot at desktop (1280 px) and phone (390 px) width.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import taken
from tests.conftest import _delete_prefix, backend_settings, wait_for
from tests.procs import Processes, free_port, process_env, until_healthy
from tests.test_webhooks import receiving

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@dataclass
class Site:
    base: str
    key: str
    other_key: str
    ids: dict[str, str]


async def _api(client: httpx.AsyncClient, method: str, path: str, key: str, **kw: Any) -> Any:
    res = await client.request(method, path, headers={"Authorization": f"Bearer {key}"}, **kw)
    assert res.status_code < 300, (method, path, res.status_code, res.text)
    return res.json() if res.content else None


async def _seed(client: httpx.AsyncClient, hook: str) -> Site:
    """Two accounts; the first with a delivered webhook cue, a failing one, one that failed
    verification (an alert) and a worker cue with a live worker holding a claim."""
    keys = []
    for _ in range(2):
        res = await client.post("/v1/auth/register", json={"email": f"d-{uuid.uuid4().hex[:8]}@example.com"})
        keys.append(res.json()["api_key"])
    key, other = keys

    async def cue(k: str, name: str, **extra: Any) -> str:
        body = {
            "name": name,
            "schedule": {"type": "recurring", "cron": "0 9 * * 1-5", "timezone": "Europe/Paris"},
            "callback": {"url": hook},
            "payload": {"task": name},
            **extra,
        }
        return str((await _api(client, "POST", "/v1/cues", k, json=body))["id"])

    async def delivered(k: str, cue_id: str) -> str:
        eid = str((await _api(client, "POST", f"/v1/cues/{cue_id}/fire", k, json={}))["id"])

        async def done() -> bool:
            got = await _api(client, "GET", f"/v1/executions/{eid}", k)
            return bool(got["status"] == "success")

        await wait_for(done, 30, f"delivery of {eid}")
        return eid

    ids = {"brief": await cue(key, "morning-brief"), "flaky": await cue(key, "flaky-report")}
    ids["checked"] = await cue(key, "invoice-run", verification={"mode": "require_external_id"})
    ids["controls"] = await cue(  # issue 17's scheduling controls: jitter, overlap, caps
        key,
        "crawler",
        schedule={"type": "recurring", "cron": "0 9 * * *", "jitter_seconds": 120},
        overlap="skip",
        delivery={"max_concurrency": 2, "max_per_second": 5, "outcome_deadline_seconds": None},
    )
    ids["etl"] = await cue(
        key,
        "nightly-etl",
        transport="worker",
        callback=None,
        schedule={"type": "recurring", "cron": "*/15 * * * *"},
    )
    ids["brief_exec"] = await delivered(key, ids["brief"])
    await _api(
        client,
        "POST",
        f"/v1/executions/{ids['brief_exec']}/outcome",
        key,
        json={
            "success": True,
            "result": "sent",
            "external_id": "msg-42",
            "summary": "brief sent to 3 people",
        },
    )
    flaky = await delivered(key, ids["flaky"])
    await _api(
        client, "POST", f"/v1/executions/{flaky}/outcome", key, json={"success": False, "error": "disk full"}
    )
    checked = await delivered(key, ids["checked"])
    await _api(client, "POST", f"/v1/executions/{checked}/outcome", key, json={"success": True})
    await _api(client, "POST", f"/v1/cues/{ids['etl']}/fire", key, json={"payload_override": {"n": 1}})
    await _api(
        client, "POST", "/v1/worker/heartbeat", key, json={"worker_id": "box-1", "handlers": ["nightly-etl"]}
    )
    claim = await _api(client, "POST", "/v1/executions/claim", key, json={"worker_id": "box-1"})
    ids["claimed"] = claim["execution_id"]
    ids["theirs"] = await cue(other, "their-secret-cue")
    ids["theirs_exec"] = await delivered(other, ids["theirs"])
    return Site(str(client.base_url).rstrip("/"), key, other, ids)


@pytest.fixture(scope="module")
async def site(
    redis_url: str, database_url: str, pg_schema: str, tmp_path_factory: Any
) -> AsyncIterator[Site]:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    settings = backend_settings(redis_url, database_url, pg_schema, prefix)
    port = free_port()
    env = process_env(settings, CUEFAST_ALLOW_HTTP_CALLBACKS="true", CUEFAST_PORT=str(port))
    logs = Path(tmp_path_factory.mktemp("dashboard")) / "logs"
    async with receiving() as receiver, Processes(logs, lifetime=300) as procs:
        procs.start("serve", "serve", "--port", str(port), env=env)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await until_healthy(client)
            yield await _seed(client, receiver.url)
        assert procs.problems() == [], procs.logs()
    _delete_prefix(redis_url, prefix)


@pytest.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


async def signed_in(browser: Any, site: Site, viewport: dict[str, int]) -> Any:
    """A page signed in through the form, as a person does: paste the key, press Enter."""
    context = await browser.new_context(viewport=viewport, base_url=site.base)
    context.set_default_timeout(10_000)
    page = await context.new_page()
    await page.goto("/dashboard/cues")
    assert page.url.endswith("/dashboard/login?next=/dashboard/cues")
    await page.get_by_label("API key").fill(site.key)
    await page.get_by_label("API key").press("Enter")
    await page.wait_for_url("**/dashboard/cues")
    return page


async def shot(page: Any, shots: Path, name: str) -> None:
    width = page.viewport_size["width"]
    path = shots / f"{name}-{'phone' if width < 600 else 'desktop'}.png"
    await page.screenshot(path=str(path), full_page=True)
    taken(path)


async def assert_accessible(page: Any) -> None:
    """Landmarks, one h1, and a label for every visible form control."""
    assert await page.locator("main").count() == 1
    assert await page.locator("h1").count() == 1
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter(e => e.type !== 'hidden' && e.labels.length === 0 && !e.closest('fieldset'))
            .map(e => e.name)"""
    )
    assert unlabelled == []


async def test_sign_in_form(browser: Any, site: Site, shots: Path) -> None:
    context = await browser.new_context(viewport=DESKTOP, base_url=site.base)
    context.set_default_timeout(10_000)
    page = await context.new_page()
    await page.goto("/dashboard/login")
    await assert_accessible(page)
    await shot(page, shots, "login")
    await page.get_by_label("API key").fill("cue_sk_" + "0" * 32)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("alert").filter(has_text="Invalid API key").wait_for()
    await shot(page, shots, "login-refused")
    await page.get_by_label("API key").fill(site.key)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/dashboard/cues")
    cookie = next(c for c in await context.cookies() if c["name"] == "cuefast_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/dashboard"
    assert not cookie["secure"]  # plain HTTP here; tests/api/test_dashboard.py covers TLS
    await context.close()


async def test_every_page_at_both_widths(browser: Any, site: Site, shots: Path) -> None:
    ids = site.ids
    pages = {
        "cues": "/dashboard/cues",
        "cue": f"/dashboard/cues/{ids['brief']}",
        "cue-controls": f"/dashboard/cues/{ids['controls']}",
        "executions": "/dashboard/executions",
        "execution": f"/dashboard/executions/{ids['brief_exec']}",
        "alerts": "/dashboard/alerts",
        "workers": "/dashboard/workers",
        "usage": "/dashboard/usage",
        "live": "/dashboard/live",
    }
    for viewport in (DESKTOP, PHONE):
        page = await signed_in(browser, site, viewport)
        for name, path in pages.items():
            res = await page.goto(path)
            assert res.status == 200, (name, res.status)
            await assert_accessible(page)
            if name == "live":  # the chart's line grows from /dashboard/live.json
                await page.wait_for_selector("body[data-live-samples]", timeout=10_000)
            await shot(page, shots, name)
        if viewport is PHONE:  # no sideways scrolling at phone width
            for path in pages.values():
                await page.goto(path)
                scroll = await page.evaluate("document.documentElement.scrollWidth")
                assert scroll <= PHONE["width"] + 1, (path, scroll)
        await page.context.close()


async def test_what_the_pages_show(browser: Any, site: Site) -> None:
    ids = site.ids
    page = await signed_in(browser, site, DESKTOP)
    brief = page.get_by_role("row").filter(has_text="morning-brief")
    await brief.get_by_text("at 09:00 on Monday to Friday (Europe/Paris)").wait_for()
    assert (
        "CET" in await brief.inner_text() or "CEST" in await brief.inner_text()
    )  # next run in the cue's zone
    await brief.get_by_text("delivered (HTTP 200)").wait_for()
    await brief.get_by_text("reported_success").wait_for()
    flaky = page.get_by_role("row").filter(has_text="flaky-report")
    await flaky.get_by_text("failing").wait_for()
    assert "their-secret-cue" not in await page.content()

    await page.goto(f"/dashboard/executions/{ids['brief_exec']}")
    delivery = page.get_by_role("region", name="Delivery")
    outcome = page.get_by_role("region", name="Outcome")
    await delivery.get_by_text("delivered (HTTP 200)").wait_for()
    await outcome.get_by_text("msg-42").wait_for()
    await outcome.get_by_text("brief sent to 3 people").wait_for()

    await page.goto("/dashboard/alerts")
    await page.get_by_role("list").get_by_text("verification_failed").first.wait_for()
    await page.get_by_label("Type").select_option("outcome_timeout")
    await page.get_by_role("button", name="Filter").click()
    await page.get_by_text("No alerts.").wait_for()

    await page.goto(f"/dashboard/cues/{ids['controls']}")
    await page.get_by_text("each fire up to 120 s after its slot").wait_for()
    await page.get_by_text("skip — a slot due while the previous one runs is recorded as skipped").wait_for()
    await page.get_by_text("at most 2 delivery attempts in flight at once").wait_for()
    await page.get_by_text("at most 5 attempts per second to its callback host").wait_for()

    await page.goto(f"/dashboard/cues/{ids['checked']}")
    await page.get_by_role("region", name="Alerts").get_by_text("verification_failed").wait_for()

    await page.goto("/dashboard/workers")
    row = page.get_by_role("row").filter(has_text="box-1")
    await row.get_by_text("alive").wait_for()
    await row.get_by_role("link", name="1").click()
    await page.wait_for_url("**worker_id=box-1**")
    assert ids["claimed"] in await page.content()
    await page.context.close()


async def test_executions_filters(browser: Any, site: Site) -> None:
    ids = site.ids
    page = await signed_in(browser, site, DESKTOP)
    await page.goto("/dashboard/executions")
    await page.get_by_label("Cue id").fill(ids["flaky"])
    await page.get_by_label("Status", exact=True).select_option("success")
    await page.get_by_label("Outcome state").select_option("reported_failure")
    await page.get_by_label("Triggered by").select_option("manual_fire")
    await page.get_by_role("button", name="Filter").click()
    await page.get_by_text("1 execution").wait_for()
    await page.goto("/dashboard/executions")
    await page.get_by_label("Statuses (comma-separated)").fill("success, delivering")
    await page.get_by_label("Worker id").fill("box-1")
    await page.get_by_label("Per page").fill("5")
    await page.get_by_role("button", name="Filter").click()
    await page.get_by_text("1 execution").wait_for()
    assert ids["claimed"] in await page.content()
    res = await page.goto("/dashboard/executions?status=failed&status__in=missed")
    assert res.status == 400
    await page.get_by_role("alert").filter(has_text="status__in").wait_for()
    await page.context.close()


async def test_actions(browser: Any, site: Site, shots: Path) -> None:
    page = await signed_in(browser, site, DESKTOP)
    cue = f"/dashboard/cues/{site.ids['brief']}"
    await page.goto(cue)
    await page.get_by_label("Payload override (JSON object, optional)").fill('{"n": 2}')
    await page.get_by_role("button", name="Fire now").click()
    await page.get_by_role("status").filter(has_text="Fired").wait_for()
    fired = page.url.split("execution=")[1]
    await shot(page, shots, "cue-fired")

    await page.get_by_label("Payload override (JSON object, optional)").fill("[not json")
    await page.get_by_role("button", name="Fire now").click()
    await page.get_by_role("alert").filter(has_text="Not valid JSON").wait_for()

    await page.goto(cue)
    await page.get_by_role("button", name="Pause").click()
    await page.get_by_role("status").filter(has_text="paused").wait_for()
    await page.get_by_role("heading", level=1).get_by_text("paused").wait_for()
    await page.get_by_role("button", name="Resume").click()
    await page.get_by_role("status").filter(has_text="active again").wait_for()

    async with httpx.AsyncClient(base_url=site.base) as client:

        async def finished() -> bool:
            got = await _api(client, "GET", f"/v1/executions/{fired}", site.key)
            assert got["payload"] == {"task": "morning-brief", "n": 2}
            return bool(got["status"] == "success")

        await wait_for(finished, 30, "the fired execution's delivery")
    await page.goto(f"/dashboard/executions/{fired}")
    await page.get_by_role("button", name="Replay this execution").click()
    await page.get_by_role("status").filter(has_text="Replayed").wait_for()
    assert fired not in page.url
    await page.get_by_text(f"(from {fired})").wait_for()
    await shot(page, shots, "execution-replayed")

    # bulk: every cue with a label paused, then resumed; the listed executions replayed
    async with httpx.AsyncClient(base_url=site.base) as client:
        await _api(
            client, "PATCH", f"/v1/cues/{site.ids['brief']}", site.key, json={"labels": {"team": "bots"}}
        )
    await page.goto("/dashboard/cues")
    await page.get_by_label("Label").fill("team:bots")
    await page.get_by_role("button", name="Show").click()
    await page.get_by_role("button", name="Pause all with team:bots").click()
    await page.get_by_role("status").filter(has_text="are paused").wait_for()
    await page.get_by_role("button", name="Resume all with team:bots").click()
    await page.get_by_role("status").filter(has_text="active again").wait_for()
    await shot(page, shots, "cues-by-label")
    await page.goto(f"/dashboard/executions?cue_id={site.ids['brief']}")
    await page.get_by_role("button", name="Replay matching").click()
    await page.wait_for_url("**/dashboard/replays/rpl_*")
    await page.get_by_role("heading", level=1).filter(has_text="Bulk replay").wait_for()
    await shot(page, shots, "bulk-replay")

    # keyboard only: the skip link, then the first nav link
    await page.goto("/dashboard/cues")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    await page.keyboard.press("Enter")
    assert page.url.endswith("#main")

    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/dashboard/login?why=signed_out")
    await page.goto("/dashboard/usage")
    assert "/dashboard/login" in page.url
    await page.context.close()


async def test_another_accounts_objects(browser: Any, site: Site, shots: Path) -> None:
    ids = site.ids
    page = await signed_in(browser, site, DESKTOP)
    for path in (f"/dashboard/cues/{ids['theirs']}", f"/dashboard/executions/{ids['theirs_exec']}"):
        res = await page.goto(path)
        assert res.status == 404
        await page.get_by_role("heading", name="Not found").wait_for()
    await shot(page, shots, "not-found")
    await page.goto("/dashboard/cues")
    token = await page.locator("input[name=csrf]").first.get_attribute("value")
    for action in ("fire", "pause"):
        res = await page.request.post(f"/dashboard/cues/{ids['theirs']}/{action}", form={"csrf": token})
        assert res.status == 404, action
    res = await page.request.post(f"/dashboard/executions/{ids['theirs_exec']}/replay", form={"csrf": token})
    assert res.status == 404
    res = await page.request.post(f"/dashboard/cues/{ids['brief']}/pause", form={"csrf": "forged"})
    assert res.status == 403
    async with httpx.AsyncClient(base_url=site.base) as client:
        theirs = await _api(client, "GET", f"/v1/cues/{ids['theirs']}", site.other_key)
        assert theirs["status"] == "active" and theirs["execution_total"] == 1
        mine = await _api(client, "GET", f"/v1/cues/{ids['brief']}", site.key)
        assert mine["status"] == "active"
    await page.context.close()
