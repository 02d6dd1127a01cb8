"""/dashboard without a browser: sign-in through the API's auth path, the session cookie, CSRF,
HTML errors, and another account's objects (404 pages, actions refused)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from cuefast.api import create_app
from cuefast.config import Settings
from cuefast.dashboard import live, words
from cuefast.dashboard.actions import safe_next
from cuefast.metrics import LATENESS
from tests.conftest import Api, make_api


@pytest.fixture
def settings(settings_on: Settings) -> Settings:
    """This module's roles run on one server and on the Redis Cluster (marker ``cluster``)."""
    return settings_on


CUE = {
    "name": "brief",
    "schedule": {"type": "recurring", "cron": "0 9 * * 1-5", "timezone": "Europe/Paris"},
    "callback": {"url": "https://127.0.0.1:9/run"},
    "payload": {"task": "brief"},
}


@pytest.fixture
async def web(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client (cookies kept, redirects not followed) on the same app."""
    transport = httpx.ASGITransport(app=create_app(api.rt, manage_runtime=False))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://cuefast.test") as client:
        yield client


def form_token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def sign_in(web: httpx.AsyncClient, key: str, **headers: str) -> httpx.Response:
    page = await web.get("/dashboard/login")
    assert page.status_code == 200
    return await web.post(
        "/dashboard/login",
        data={"api_key": key, "csrf": form_token(page.text), "next": "/dashboard/cues"},
        headers=headers,
    )


async def test_pages_need_a_session_and_sign_in_sets_a_safe_cookie(api: Api, web: httpx.AsyncClient) -> None:
    res = await web.get("/dashboard/cues")
    assert res.status_code == 303
    assert res.headers["location"] == "/dashboard/login?next=/dashboard/cues"
    key = await api.register()
    res = await sign_in(web, key)
    assert res.status_code == 303 and res.headers["location"] == "/dashboard/cues"
    cookie = next(c for c in res.headers.get_list("set-cookie") if c.startswith("cuefast_session="))
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "path=/dashboard"} <= flags
    assert "secure" not in flags  # plain HTTP here
    value = cookie.split(";")[0].split("=", 1)[1]
    assert key not in cookie and len(value) >= 40
    # Redis holds only the session id's hash, with a TTL
    match = f"{api.rt.settings.key_prefix}:*:dsess:*"  # SCAN: every primary of a cluster (KEYS: one node)
    stored = [key async for key in api.rt.store.redis.scan_iter(match=match)]
    assert len(stored) == 1 and value not in stored[0]
    assert 0 < await api.rt.store.redis.pttl(stored[0]) <= 12 * 3600 * 1000
    page = await web.get("/dashboard/cues")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "access-control-allow-origin" not in page.headers


async def test_cookie_is_secure_behind_tls(api: Api, web: httpx.AsyncClient) -> None:
    res = await sign_in(web, await api.register(), **{"X-Forwarded-Proto": "https"})
    cookie = next(c for c in res.headers.get_list("set-cookie") if c.startswith("cuefast_session="))
    assert "secure" in cookie.lower()


async def test_wrong_key_and_missing_csrf_are_refused(api: Api, web: httpx.AsyncClient) -> None:
    res = await sign_in(web, "cue_sk_" + "0" * 32)
    assert res.status_code == 401 and "Invalid API key" in res.text
    assert "cuefast_session" not in res.headers.get("set-cookie", "")
    res = await web.post("/dashboard/login", data={"api_key": await api.register(), "csrf": "forged"})
    assert res.status_code == 403 and "text/html" in res.headers["content-type"]


async def test_every_post_form_checks_csrf(api: Api, web: httpx.AsyncClient) -> None:
    key = await api.register()
    cue = (await api.request("POST", "/v1/cues", key, json=CUE)).json()
    await sign_in(web, key)
    token = form_token((await web.get(f"/dashboard/cues/{cue['id']}")).text)
    for action in ("fire", "pause", "resume"):
        res = await web.post(f"/dashboard/cues/{cue['id']}/{action}", data={"csrf": token[:-1] + "x"})
        assert res.status_code == 403, action
    assert (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()["status"] == "active"
    res = await web.post(f"/dashboard/cues/{cue['id']}/pause", data={"csrf": token})
    assert res.status_code == 303
    assert (await api.request("GET", f"/v1/cues/{cue['id']}", key)).json()["status"] == "paused"
    assert (await web.post("/dashboard/logout", data={})).status_code == 403


async def test_another_accounts_objects_are_404_and_untouchable(api: Api, web: httpx.AsyncClient) -> None:
    mine, theirs = await api.register(), await api.register()
    cue = (await api.request("POST", "/v1/cues", theirs, json=CUE)).json()
    fired = (await api.request("POST", f"/v1/cues/{cue['id']}/fire", theirs, json={})).json()
    await sign_in(web, mine)
    token = form_token((await web.get("/dashboard/cues")).text)
    for path in (f"/dashboard/cues/{cue['id']}", f"/dashboard/executions/{fired['id']}"):
        res = await web.get(path)
        assert res.status_code == 404 and "text/html" in res.headers["content-type"], path
        assert "Not found" in res.text
    for path in (
        f"/dashboard/cues/{cue['id']}/fire",
        f"/dashboard/cues/{cue['id']}/pause",
        f"/dashboard/executions/{fired['id']}/replay",
    ):
        assert (await web.post(path, data={"csrf": token})).status_code == 404, path
    listed = await web.get(f"/dashboard/executions?cue_id={cue['id']}")
    assert listed.status_code == 200 and fired["id"] not in listed.text
    assert cue["id"] not in (await web.get("/dashboard/cues")).text
    theirs_now = (await api.request("GET", f"/v1/cues/{cue['id']}", theirs)).json()
    assert theirs_now["status"] == "active" and theirs_now["execution_total"] == 1  # no fire, no replay


async def test_rotating_the_key_ends_the_session(api: Api, web: httpx.AsyncClient) -> None:
    key = await api.register()
    await sign_in(web, key)
    assert (await web.get("/dashboard/usage")).status_code == 200
    res = await api.request("POST", "/v1/auth/key/regenerate", key, headers={"X-Confirm-Destructive": "true"})
    assert res.status_code == 200
    res = await web.get("/dashboard/usage")
    assert res.status_code == 303 and "why=expired" in res.headers["location"]


async def test_sign_out_deletes_the_session(api: Api, web: httpx.AsyncClient) -> None:
    await sign_in(web, await api.register())
    old = web.cookies.get("cuefast_session", path="/dashboard")
    token = form_token((await web.get("/dashboard/cues")).text)
    res = await web.post("/dashboard/logout", data={"csrf": token})
    assert res.status_code == 303 and res.headers["location"].startswith("/dashboard/login")
    web.cookies.set("cuefast_session", old or "", path="/dashboard")
    assert (await web.get("/dashboard/cues")).status_code == 303  # the old cookie is dead


async def test_errors_are_pages(api: Api, web: httpx.AsyncClient) -> None:
    await sign_in(web, await api.register())
    res = await web.get("/dashboard/executions?status=failed&status__in=missed")
    assert res.status_code == 400 and "text/html" in res.headers["content-type"]
    assert "either `status` or `status__in`" in res.text.replace("&#96;", "`")
    assert (
        (await api.request("GET", "/v1/cues/cue_zzzzzzzzzzzz"))
        .headers["content-type"]
        .startswith("application/json")
    )


def test_schedules_in_words_and_safe_redirects() -> None:
    assert words.cron_words("0 9 * * 1-5") == "at 09:00 on Monday to Friday"
    assert words.cron_words("*/15 * * * *") == "every 15 minutes"
    assert words.cron_words("30 * * * *") == "every hour at minute 30"
    assert words.cron_words("0 0 1 * *") == "at 00:00 on day 1 of every month"
    assert words.cron_words("0 9 * 1 *") == "cron 0 9 * 1 *"
    assert words.in_zone("2026-12-04T08:00:00Z", "Europe/Paris") == "2026-12-04 09:00:00 CET"
    assert safe_next("https://evil.example/") == "/dashboard/cues"
    assert safe_next("//evil.example/dashboard/") == "/dashboard/cues"
    assert safe_next("/dashboard/usage") == "/dashboard/usage"


async def test_live_view_hides_install_metrics_behind_a_metrics_token(settings: Settings) -> None:
    api, rt = await make_api(settings.replace(metrics_token="s3cret"))
    transport = httpx.ASGITransport(app=create_app(rt, manage_runtime=False))  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://cuefast.test") as web:
            await sign_in(web, await api.register())
            page = await web.get("/dashboard/live")
            assert page.status_code == 200 and "keeps its metrics private" in page.text
            assert "live.js" not in page.text
            assert (await web.get("/dashboard/live.json")).json() == {"private": True}
    finally:
        await api.client.aclose()
        await rt.close()


def test_lateness_quantiles_from_the_histogram_buckets() -> None:
    name = LATENESS.name
    counters = {
        f"{name}\twebhook\t0": 90,
        f"{name}\tworker\t0": 5,
        f"{name}\twebhook\t4": 5,
        f"{name}\twebhook\ts": 7,
    }
    buckets = live.lateness_buckets(counters)
    assert sum(buckets) == 100 and buckets[0] == 95 and buckets[4] == 5
    assert live.quantile(buckets, 0.5) == LATENESS.buckets[0]
    assert live.quantile(buckets, 0.99) == LATENESS.buckets[4]
    assert live.quantile([0] * len(buckets), 0.99) is None
    over = [0] * len(buckets)
    over[-1] = 1
    assert live.seconds_text(live.quantile(over, 0.5)) == "over 3600 s"


async def test_a_form_litestar_cannot_parse_is_a_page(api: Api, web: httpx.AsyncClient) -> None:
    await sign_in(web, await api.register())
    res = await web.post("/dashboard/logout", content=b"x", headers={"Content-Type": "multipart/form-data"})
    assert 400 <= res.status_code < 500 and "text/html" in res.headers["content-type"], res.text


async def test_magic_link_signs_in_once_after_a_button(
    api: Api, web: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Without CUEFAST_SMTP_URL the link is logged (services/login.py); opening it spends
    nothing (a mail scanner may open links), its button signs in once, and a used or made-up
    token is refused. The address's existing account is the one signed in."""
    key = await api.register("magic@example.com")
    page = await web.get("/dashboard/login")
    assert 'action="/dashboard/login/magic/send"' in page.text
    res = await web.post("/dashboard/login/magic/send", data={"email": "magic@example.com", "csrf": "forged"})
    assert res.status_code == 403
    caplog.set_level(logging.WARNING, logger="cuefast")
    res = await web.post(
        "/dashboard/login/magic/send", data={"email": "magic@example.com", "csrf": form_token(page.text)}
    )
    assert res.status_code == 200 and "on its way to magic@example.com" in res.text
    link = re.search(r"(http\S+/dashboard/login/magic\?token=[0-9a-f]{64})", caplog.text)
    assert link, caplog.text
    path = link.group(1).split("://", 1)[1].split("/", 1)[1]
    opened = await web.get("/" + path)
    assert opened.status_code == 200 and "cuefast_session" not in str(opened.headers.get_list("set-cookie"))
    token = re.search(r'name="token" value="([0-9a-f]{64})"', opened.text)
    assert token
    body = {"token": token.group(1), "csrf": form_token(opened.text)}
    res = await web.post("/dashboard/login/magic", data=body)
    assert res.status_code == 303 and res.headers["location"] == "/dashboard/cues"
    cues = await web.get("/dashboard/cues")
    assert cues.status_code == 200
    me = (await api.request("GET", "/v1/auth/me", key)).json()
    assert me["email"] in cues.text or "Sign out" in cues.text
    reopened = await web.get("/" + path)  # signing in spent the login form's token: a new one
    body["csrf"] = form_token(reopened.text)
    again = await web.post("/dashboard/login/magic", data=body)
    assert again.status_code == 400 and "not valid any more" in again.text
    made_up = await web.post("/dashboard/login/magic", data={**body, "token": "0" * 64})
    assert made_up.status_code == 400
    bad = await web.post("/dashboard/login/magic/send", data={"email": "nope", "csrf": body["csrf"]})
    assert bad.status_code == 400


async def test_labels_filter_bulk_pause_and_bulk_replay(api: Api, web: httpx.AsyncClient) -> None:
    """Issue 17 in the dashboard: cues filtered by label and paused / resumed together; the
    listed executions replayed in bulk, the job's page showing its progress; a forged form
    changes nothing."""
    key = await api.register()
    made = []
    for i, team in enumerate(("growth", "growth", "ops")):
        body = {**CUE, "name": f"c{i}", "labels": {"team": team}}
        res = await api.request("POST", "/v1/cues", key, json=body)
        assert res.status_code == 201, res.text
        made.append(res.json()["id"])
    await sign_in(web, key)
    page = await web.get("/dashboard/cues?label=team:growth")
    assert page.status_code == 200 and made[0] in page.text and made[2] not in page.text
    assert "team=growth" in page.text and 'action="/dashboard/cues/bulk"' in page.text
    token = form_token(page.text)
    assert (
        await web.post("/dashboard/cues/bulk", data={"csrf": "x", "label": "team:growth", "to": "paused"})
    ).status_code == 403
    res = await web.post("/dashboard/cues/bulk", data={"csrf": token, "label": "team:growth", "to": "paused"})
    assert res.status_code == 303 and "done=bulk_paused" in res.headers["location"]
    states = {c: (await api.request("GET", f"/v1/cues/{c}", key)).json()["status"] for c in made}
    assert states == {made[0]: "paused", made[1]: "paused", made[2]: "active"}
    bad = await web.get("/dashboard/cues?label=" + "x" * 300)
    assert bad.status_code == 422 and "text/html" in bad.headers["content-type"]
    for _ in range(2):
        assert (await api.request("POST", f"/v1/cues/{made[2]}/fire", key)).status_code == 200
    listed = await web.get(f"/dashboard/executions?cue_id={made[2]}")
    assert 'action="/dashboard/executions/replay"' in listed.text
    res = await web.post(
        "/dashboard/executions/replay",
        data={"csrf": token, "cue_id": made[2], "limit": "5", "rate_per_second": "10"},
    )
    assert res.status_code == 303 and res.headers["location"].startswith("/dashboard/replays/rpl_")
    by_worker = await web.post("/dashboard/executions/replay", data={"csrf": token, "worker_id": "w1"})
    assert by_worker.status_code == 422  # never a wider replay than the listing
    assert (
        'action="/dashboard/executions/replay"'
        not in (await web.get("/dashboard/executions?worker_id=w1")).text
    )
    job = await web.get(res.headers["location"])
    assert job.status_code == 200 and "Selected" in job.text and ">2 (at most 5)<" in job.text
    stranger = httpx.AsyncClient(transport=web._transport, base_url="http://cuefast.test")  # type: ignore[attr-defined]
    async with stranger:
        await sign_in(stranger, await api.register())
        assert (await stranger.get(res.headers["location"])).status_code == 404


async def test_the_cue_page_shows_its_concurrency_cap_and_its_waiters(
    api: Api, web: httpx.AsyncClient
) -> None:
    key = await api.register()
    capped = {**CUE, "delivery": {"max_concurrency": 2}}
    cue = (await api.request("POST", "/v1/cues", key, json=capped)).json()
    plain = (await api.request("POST", "/v1/cues", key, json={**CUE, "name": "plain"})).json()
    await sign_in(web, key)
    page = (await web.get(f"/dashboard/cues/{cue['id']}")).text
    assert "at most 2 delivery attempts in flight at once: 0 in flight now" in page
    assert "waiting on the cap" not in page
    k = api.rt.keys
    await api.rt.store.redis.rpush(f"{k.part(k.cue_partition(cue['id']))}:capq:{cue['id']}", "e1", "e2")
    page = (await web.get(f"/dashboard/cues/{cue['id']}")).text
    assert "2 waiting on the cap (pending)" in page
    assert "Concurrency cap" not in (await web.get(f"/dashboard/cues/{plain['id']}")).text
    hosts = {**CUE, "name": "hosts", "delivery": {"max_concurrency_per_host": 3, "max_per_second": 7}}
    other = (await api.request("POST", "/v1/cues", key, json=hosts)).json()
    page = (await web.get(f"/dashboard/cues/{other['id']}")).text
    assert "at most 3 requests open at its callback host" in page
    assert "at most 7 attempts per second to its callback host" in page


async def test_workers_page_lists_task_claim_caps(api: Api, web: httpx.AsyncClient) -> None:
    key = await api.register()
    await sign_in(web, key)
    assert "Task claim caps" not in (await web.get("/dashboard/workers")).text
    res = await api.request("PUT", "/v1/worker/task-caps/etl", key, json={"max_concurrency": 3})
    assert res.status_code == 200, res.text
    html = (await web.get("/dashboard/workers")).text
    assert "Task claim caps" in html and "<code>etl</code>" in html
    assert '<td data-label="Cap">3</td>' in html and '<td data-label="Held">0</td>' in html
