"""Property-based fuzzing of every route (issue 12, part C): hostile bodies, ids, headers and
query strings against the real app on the real Redis.

Routes come from the app's own route table, so a new route is fuzzed without touching this
file. For every request:

* never a 5xx;
* every error is the contract's envelope (``{"error": {"code", "message", "status"}}``, status
  equal to the HTTP status) and every response carries ``X-Request-Id``;
* a rejected request (4xx) writes nothing: a digest of every key under the test's prefix
  (rate-limit windows, metrics and echo counters aside) is the same before and after;
* the server is healthy after each route's run (``/health`` and an authenticated read).

Profiles: the normal suite runs ``CUEFAST_FUZZ_EXAMPLES`` (default 6) examples per route with
a fixed seed; a long run sets it higher (``CUEFAST_FUZZ_EXAMPLES=400``, random seed). The
terminal summary reports the number of requests tried.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cuefast.api.app import create_litestar
from cuefast.config import Settings, load_settings
from cuefast.runtime import Runtime
from tests.conftest import Api, make_api
from tests.fuzz.conftest import CODES, COUNTS

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("CUEFAST_FUZZ_EXAMPLES", "6"))
LONG = EXAMPLES > 50
_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


def _route_table() -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves (HEAD/OPTIONS aside)."""
    rt = Runtime(load_settings({}, redis_url="redis://127.0.0.1:1/0", database_url="x"))
    app = create_litestar(rt, manage_runtime=False)
    out = {
        (method, route.path)
        for route in app.routes
        for method in getattr(route, "methods", ())
        if method not in ("HEAD", "OPTIONS")
    }
    return sorted(out, key=lambda mp: (mp[1], mp[0]))


ROUTES = _route_table()

# ---- value strategies ------------------------------------------------------------------------
SPECIAL = [
    "",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "\u202eevil",
    "\ufeff",
    "\r\nX-Injected: 1",
    "\U0001f600",
    "%00",
    "../../etc/passwd",
    "cue_" + "a" * 12,
    "CUE_AAAAAAAAAAAA",
    str(uuid.uuid4()),
    "9999-12-31T23:00:00-10:00",
    "2200-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "2030-01-01T00:00:00",
    "* * * * *",
    "0 0 30 2 *",
    "https://[::127.0.0.1]/",
    "http://127.0.0.1:9/h",
    "https://169.254.169.254/latest",
    "true",
    "1e400",
    "-1",
    str(2**63),
    "𝟙𝟚",
    "١٢٣",
]
CHARS = st.one_of(
    st.characters(),
    st.characters(categories=["Cs"]),  # lone surrogates
    st.characters(max_codepoint=0x1F),
    st.sampled_from("\x00\r\n\t\u202e\u200f\ufeff\uffff/:{}%?#&=+"),
)
URL_TEXT = st.one_of(
    st.text(CHARS, max_size=40), st.sampled_from(SPECIAL), st.integers(0, 2000).map("x".__mul__)
)
"""Text for paths and query strings (a URL stays under the HTTP client's 64 KiB)."""
TEXT = st.one_of(
    URL_TEXT,
    st.integers(1_000_000, 1_100_000).map("y".__mul__) if LONG else st.just("z" * 20_000),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(TEXT, inner, max_size=6)),
    max_leaves=25,
)
FIELDS = [
    "name",
    "description",
    "transport",
    "status",
    "schedule",
    "type",
    "cron",
    "at",
    "timezone",
    "callback",
    "url",
    "method",
    "headers",
    "payload",
    "retry",
    "max_attempts",
    "backoff_minutes",
    "on_failure",
    "email",
    "webhook",
    "pause",
    "verification",
    "mode",
    "delivery",
    "timeout_seconds",
    "outcome_deadline_seconds",
    "alerts",
    "consecutive_failures",
    "missed_window_multiplier",
    "catch_up",
    "overlap",
    "payload_override",
    "merge_strategy",
    "send_at",
    "idempotency_key",
    "success",
    "result",
    "error",
    "metadata",
    "external_id",
    "result_url",
    "result_ref",
    "result_type",
    "summary",
    "artifacts",
    "valid",
    "reason",
    "worker_id",
    "handlers",
    "task",
    "agent",
    "tasks",
    "max",
    "lease_seconds",
    "execution_id",
    "execution_ids",
    "outcomes",
    "ids",
    "alert_webhook_url",
    "token",
    "device_code",
    "labels",
    "team",
]  # fmt: skip  (no "wait_seconds": a valid long-poll would only make the run slow)


def _structured(ids: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Objects with the API's own field names (so the validators' deeper stages are reached),
    values of any type, nested objects of the same kind, and real ids in id fields."""
    value = st.one_of(JSON, ids, st.lists(ids, max_size=4))
    inner = st.dictionaries(st.sampled_from(FIELDS), value, max_size=8)
    return st.dictionaries(
        st.sampled_from(FIELDS), st.one_of(value, inner, st.lists(inner, max_size=4)), max_size=10
    )


def _nested(depth: int) -> bytes:
    return (
        (b'{"payload": ' + b"[" * depth + b"]" * depth + b"}") if depth % 2 else b"[" * depth + b"]" * depth
    )


# A valid body per route (ids filled in from the world): mutating one to three of its fields
# reaches the stages behind the schema (name, limit, SSRF, payload, timezone, schedule, …).
LATER = "2031-01-01T00:00:00Z"
HOOK = "http://127.0.0.1:9/h"
TEMPLATES: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("POST", "/v1/cues"): [
        {"name": "t", "transport": "worker", "schedule": {"type": "once", "at": LATER, "timezone": "UTC"},
         "payload": {"task": "t"}},
        {"name": "t", "schedule": {"type": "recurring", "cron": "0 9 * * 1", "timezone": "Europe/Paris"},
         "callback": {"url": HOOK, "method": "PUT", "headers": {"X-A": "b"}}, "payload": {"n": 1},
         "retry": {"max_attempts": 2, "backoff_minutes": [1]},
         "on_failure": {"webhook": HOOK, "pause": True}, "verification": {"mode": "manual"},
         "delivery": {"timeout_seconds": 5, "outcome_deadline_seconds": 60},
         "alerts": {"consecutive_failures": 2, "missed_window_multiplier": 3}, "catch_up": "all",
         "overlap": "buffer_one", "labels": {"team": "growth", "example.com/tier": "", "env": "prod"}},
    ],
    ("PATCH", "/v1/cues/{cue_id:str}"): [
        {"name": "renamed", "description": "d", "status": "paused", "schedule": {"cron": "0 0 1 1 *"},
         "callback": {"url": HOOK}, "payload": {"a": 1}, "retry": {"max_attempts": 3}},
        {"schedule": {"type": "once", "at": LATER, "timezone": "America/New_York"}, "status": "active"},
        {"labels": {"team": "ops", "env": "prod"}, "status": "paused"},
    ],
    ("POST", "/v1/cues/{cue_id:str}/fire"): [
        {"payload_override": {"a": 1}, "merge_strategy": "replace", "send_at": LATER, "idempotency_key": "k"},
    ],
    ("POST", "/v1/cues/bulk-delete"): [{"ids": ["cue_aaaaaaaaaaaa", "$cue_id"]}],
    ("POST", "/v1/cues/pause"): [{"ids": ["cue_aaaaaaaaaaaa", "$cue_id"]}, {"labels": {"team": "growth"}}],
    ("POST", "/v1/cues/resume"): [{"ids": ["$cue_id"]}, {"labels": {"team": "growth", "env": "prod"}}],
    ("POST", "/v1/executions/{execution_id:str}/outcome"): [
        {"success": True, "result": "r", "error": None, "metadata": {"k": 1}, "external_id": "e",
         "result_url": "https://example.com/r", "artifacts": [1], "summary": "s"},
    ],
    ("PATCH", "/v1/executions/{execution_id:str}/evidence"): [{"external_id": "e", "metadata": {"m": 1}}],
    ("POST", "/v1/executions/{execution_id:str}/verify"): [{"valid": False, "reason": "r"}],
    ("POST", "/v1/executions/claim"): [{"worker_id": "w1", "task": "t", "agent": "a"}],
    ("POST", "/v1/executions/{execution_id:str}/claim"): [{"worker_id": "w1"}],
    ("POST", "/v1/worker/heartbeat"): [{"worker_id": "w1", "handlers": ["t"]}],
    ("POST", "/v1/worker/claim"): [
        {"worker_id": "w1", "tasks": ["t"], "agent": None, "max": 5, "lease_seconds": 60}
    ],
    ("POST", "/v1/worker/outcomes"): [
        {"worker_id": "w1", "outcomes": [{"execution_id": "$execution_id", "success": False, "error": "e"}]}
    ],
    ("POST", "/v1/worker/leases"): [{"worker_id": "w1", "execution_ids": ["$execution_id"]}],
    ("POST", "/v1/worker/release"): [{"worker_id": "w1", "execution_ids": ["$execution_id"]}],
    ("POST", "/v1/auth/register"): [{"email": "fuzz@example.com"}],
    ("PATCH", "/v1/auth/me"): [{"email": "fuzz2@example.com", "alert_webhook_url": HOOK}],
    ("POST", "/v1/auth/device-code"): [{"device_code": "fuzz-new-code"}],
    ("POST", "/v1/auth/device-code/poll"): [{"device_code": "$device_code"}],
    ("POST", "/v1/auth/device-code/submit-email"): [{"device_code": "$device_code", "email": "f@x.io"}],
    ("POST", "/v1/auth/session"): [{"token": "$session_token"}],
}  # fmt: skip
PAGES = {"/auth/device", "/v1/auth/verify"}
"""HTML pages for people: their 4xx answers are HTML pages, not the envelope"""


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path inside a template."""
    out: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


def _mutated(template: dict[str, Any], ids: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    """``template`` (``$name`` strings replaced by real ids) with one to three of its fields
    replaced by any JSON value or deleted."""
    filled = json.loads(
        re.sub(r'"\$(\w+)"', lambda m: json.dumps((ids.get(m.group(1)) or ["x"])[0]), json.dumps(template))
    )
    paths = _paths(filled)

    def apply(edits: list[tuple[tuple[Any, ...], Any]]) -> Any:
        body = json.loads(json.dumps(filled))
        for path, new in edits:
            node = body
            try:
                for k in path[:-1]:
                    node = node[k]
                if new is _DELETE:
                    del node[path[-1]]
                else:
                    node[path[-1]] = new
            except (KeyError, IndexError, TypeError):
                pass  # an earlier edit replaced a parent
        return body

    edit = st.tuples(st.sampled_from(paths), st.one_of(st.just(_DELETE), JSON, st.sampled_from(SPECIAL)))
    return st.lists(edit, min_size=1, max_size=3).map(apply)


_DELETE = object()


def _bodies(
    ids: st.SearchStrategy[str], templates: list[dict[str, Any]], by_name: dict[str, list[str]]
) -> st.SearchStrategy[bytes | None]:
    """Request bodies: none, raw bytes, deep nesting, any JSON, objects of the API's field names,
    and (where the route has one) a valid body with a few fields mutated."""
    kinds: list[st.SearchStrategy[bytes | None]] = [
        st.none(),
        st.binary(max_size=300),
        st.integers(1, 5000).map(_nested),
        JSON.map(lambda v: json.dumps(v).encode()),
        _structured(ids).map(lambda v: json.dumps(v).encode()),
        _structured(ids).map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    ]
    for t in templates:
        mutated = _mutated(t, by_name).map(lambda v: json.dumps(v).encode())
        kinds += [mutated, mutated]  # weighted: the deeper stages are where bugs hide
    return st.one_of(*kinds)


def _pct(text: str) -> str:
    """Percent-encode every byte of ``text`` (lone surrogates as their CESU-8 bytes)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


class World:
    """Two accounts with cues, executions, a worker and an echo; real ids for the generators."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.key = ""
        self.other_key = ""
        self.ids: dict[str, list[str]] = {}

    async def sign_in_dashboard(self) -> None:
        """The client's cookie jar holds a dashboard session of ``key``: /dashboard pages are
        fuzzed signed in (POST forms without the session's CSRF token are refused)."""
        page = await self.api.client.get("/dashboard/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token, page.text
        res = await self.api.client.post(
            "/dashboard/login", data={"api_key": self.key, "csrf": token.group(1)}
        )
        assert res.status_code == 303, res.text

    async def build(self) -> None:
        api = self.api
        self.key = await api.register()
        self.other_key = await api.register()
        cues: list[str] = []
        execs: list[str] = []
        for key in (self.key, self.other_key):
            for transport, extra in (
                ("worker", {}),
                ("webhook", {"callback": {"url": "http://127.0.0.1:9/h"}}),
            ):
                body = {
                    "name": f"fz-{transport}",
                    "transport": transport,
                    "schedule": {"type": "recurring", "cron": "0 0 1 1 *"},
                    "payload": {"task": "t"},
                    "labels": {"team": "growth", "env": transport},
                    **extra,
                }
                res = await api.request("POST", "/v1/cues", key, json=body)
                assert res.status_code == 201, res.text
                cues.append(res.json()["id"])
                res = await api.request("POST", f"/v1/cues/{cues[-1]}/fire", key, json={})
                execs.append(res.json()["id"])
            await api.request("POST", "/v1/worker/heartbeat", key, json={"worker_id": "w1"})
        await api.request("POST", f"/v1/executions/{execs[0]}/outcome", self.key, json={"success": True})
        await api.request("POST", "/v1/echo/fuzz-token-0123456789", json={"a": 1})
        await self.sign_in_dashboard()
        await api.request("POST", "/v1/auth/device-code", json={"device_code": "fuzz-code-0001"})
        self.ids = {
            "device_code": ["fuzz-code-0001", "fuzz-code-none"],
            "session_token": ["5" * 64],
            "cue_id": cues,
            "execution_id": execs,
            "worker_id": ["w1", "w2"],
            "token": ["fuzz-token-0123456789", "fuzz-token-unknown-00"],
        }

    def id_values(self) -> st.SearchStrategy[str]:
        return st.sampled_from([i for ids in self.ids.values() for i in ids])

    def path_value(self, name: str) -> st.SearchStrategy[str]:
        real = st.sampled_from(self.ids.get(name, ["x"]))
        return st.one_of(
            real, real.map(lambda s: s.upper()), real.map(lambda s: s + ":cfg"), URL_TEXT.filter(bool)
        )


IGNORED = re.compile(r":\{a\d\d\}:rl:|:\{metrics\}:|:\{echo\}:ip:")
_DIGEST = """
local keys = {}
local cursor = "0"
repeat
  local res = redis.call("SCAN", cursor, "MATCH", ARGV[1], "COUNT", 1000)
  cursor = res[1]
  for _, k in ipairs(res[2]) do keys[#keys + 1] = k end
until cursor == "0"
table.sort(keys)
local function flat(items, sorted)
  local parts = {}
  for i, v in ipairs(items) do parts[i] = #v .. ":" .. v end
  if sorted then table.sort(parts) end
  return table.concat(parts, "|")
end
local out = {}
for _, k in ipairs(keys) do
  local t = redis.call("TYPE", k)["ok"]
  local body
  if t == "string" then body = redis.call("GET", k)
  elseif t == "hash" then
    local kv, pairs_ = redis.call("HGETALL", k), {}
    for i = 1, #kv, 2 do pairs_[#pairs_ + 1] = #kv[i] .. ":" .. kv[i] .. "=" .. kv[i + 1] end
    table.sort(pairs_)
    body = table.concat(pairs_, "|")
  elseif t == "zset" then body = flat(redis.call("ZRANGE", k, 0, -1, "WITHSCORES"), false)
  elseif t == "set" then body = flat(redis.call("SMEMBERS", k), true)
  elseif t == "list" then body = flat(redis.call("LRANGE", k, 0, -1), false)
  elseif t == "stream" then body = cjson.encode(redis.call("XRANGE", k, "-", "+"))
  else body = t end
  out[#out + 1] = k .. "=" .. t .. ":" .. redis.sha1hex(body)
end
return out
"""


async def digest(api: Api) -> dict[str, str]:
    """Key → digest of the content (not of its encoding) of every key of the test's prefix that
    a rejected request may not change (rate-limit windows, metrics and echo counters aside)."""
    rows = await api.rt.store.redis.eval(_DIGEST, 0, f"{api.rt.keys.prefix}:*")
    out = {}
    for row in rows:
        key, _, value = str(row).rpartition("=")
        if not IGNORED.search(key):
            out[key] = value
    return out


def check_response(res: httpx.Response, where: str, page: bool = False) -> None:
    assert res.status_code < 500, (where, res.status_code, res.text[:500])
    assert "x-request-id" in res.headers, where
    if res.status_code not in (413, 429) and res.status_code >= 400 and res.url.path.startswith("/dashboard"):
        # an HTML error page (a 413 is the edge's envelope, refused before any page)
        assert res.headers.get("content-type", "").startswith("text/html"), where
        return
    if page and res.headers.get("content-type", "").startswith("text/html"):
        assert res.status_code in (200, 400, 429), where
        return
    if res.status_code >= 400:
        assert res.headers.get("content-type", "").startswith("application/json"), where
        body = res.json()
        assert isinstance(body, dict) and set(body) == {"error"}, (where, body)
        err = body["error"]
        assert isinstance(err, dict) and {"code", "message", "status"} <= set(err), (where, err)
        assert err["status"] == res.status_code, (where, err)
        assert isinstance(err["code"], str) and isinstance(err["message"], str), (where, err)


async def make_world(settings: Settings) -> World:
    # no per-IP limit: unauthenticated fuzz requests would otherwise all be 429s after 60
    # a session secret: without one the session routes answer 503 session_unavailable by design
    api, _ = await make_api(settings.replace(ip_rate_limit=1_000_000_000, session_secret="f" * 32))
    w = World(api)
    await w.build()
    return w


@pytest.mark.parametrize(("method", "template"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_fuzz_route(settings: Settings, method: str, template: str) -> None:
    """Sync on purpose: Hypothesis drives the examples, each one run to completion on this
    test's own event loop (the app, its Redis client and the HTTP client live on it)."""
    COUNTS["routes"] += 1
    loop = asyncio.new_event_loop()
    world = loop.run_until_complete(make_world(settings))
    api = world.api
    try:
        _fuzz(loop, world, method, template)
        # still healthy: liveness and an authenticated read
        res = loop.run_until_complete(api.client.get("/health"))
        assert res.status_code == 200, res.text
        res = loop.run_until_complete(api.request("GET", "/v1/cues", world.key))
        assert res.status_code == 200, res.text
    finally:
        loop.run_until_complete(api.client.aclose())
        loop.run_until_complete(api.rt.close())
        loop.close()


def _fuzz(loop: asyncio.AbstractEventLoop, world: World, method: str, template: str) -> None:
    api = world.api
    names = _PARAM.findall(template)
    auth = st.sampled_from(["own", "own", "own", "other", "none", "garbage", "jwt"])
    queries = st.dictionaries(
        st.sampled_from(
            ["limit", "offset", "status", "status__in", "cue_id", "worker_id", "outcome_state",
             "triggered_by", "task", "agent", "since", "alert_type", "execution_limit", "execution_offset",
             "token", "code", "device_code", "label"]
        ),
        st.one_of(URL_TEXT, st.integers().map(str), world.id_values(), st.sampled_from(["team:x", "env"])),
        max_size=4,
    )  # fmt: skip
    header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
    headers = st.fixed_dictionaries(
        {},
        optional={
            "X-Confirm-Destructive": st.sampled_from(["true", " true ", "TRUE", "false", ""]),
            "X-Worker-Id": st.one_of(header_text, st.just("w1")),
            "Content-Type": st.sampled_from(["application/json", "text/plain", "multipart/form-data", ""]),
            "X-CueAPI-Verify-Echo": st.sampled_from(["true", "false"]),
            "Origin": header_text,
        },
    )

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not LONG,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        params=st.tuples(*(world.path_value(n) for n in names)) if names else st.just(()),
        body=_bodies(world.id_values(), TEMPLATES.get((method, template), []), world.ids),
        query=queries,
        who=auth,
        extra=headers,
    )
    def run(
        params: tuple[str, ...], body: bytes | None, query: dict[str, str], who: str, extra: dict[str, str]
    ) -> None:
        loop.run_until_complete(one(params, body, query, who, extra))

    async def one(
        params: tuple[str, ...], body: bytes | None, query: dict[str, str], who: str, extra: dict[str, str]
    ) -> None:
        path = template
        for name, value in zip(names, params, strict=True):
            path = _PARAM.sub(_pct(value), path, count=1) if f"{{{name}" in path else path
        qs = "&".join(f"{_pct(k)}={_pct(v)}" for k, v in query.items())
        url = path + ("?" + qs if qs else "")
        hdrs = dict(extra)
        key = {
            "own": world.key,
            "other": world.other_key,
            "none": None,
            "garbage": "cue_sk_" + "0" * 32,
            "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.AAAA",
        }[who]
        if key is not None:
            hdrs["Authorization"] = f"Bearer {key}"
        before = await digest(api)
        res = await api.client.request(method, url, content=body, headers=hdrs)
        COUNTS["requests"] += 1
        where = f"{method} {url[:200]} body={(body or b'')[:200]!r}"
        html = res.headers.get("content-type", "").startswith("text/html")
        check_response(res, where, template in PAGES)
        code = ("html" if html else res.json()["error"]["code"]) if res.status_code >= 400 else ""
        CODES[f"{res.status_code} {code}".strip()] += 1
        if res.status_code >= 400:
            COUNTS["rejected"] += 1
            after = await digest(api)
            changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
            assert not changed, (where, res.status_code, res.text[:300], sorted(changed)[:10])
        elif "/key/regenerate" in template and who in ("own", "other"):  # keep using a live key
            new = res.json()["api_key"]
            if who == "own":
                world.key = new
            else:
                world.other_key = new

    run()
