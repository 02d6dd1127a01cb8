"""/openapi.json describes every operation (issue 13, item 4): request bodies, response schemas
that are the SDK's own Structs, the real status codes, the error envelope per status, the bearer
security scheme and examples. The live-server check of the same schema is tests/contract."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import msgspec

from cuefast.client import account_models, bodies, models
from tests.conftest import Api

NO_AUTH = {
    ("get", "/health"),
    ("get", "/status"),
    ("get", "/v1/info"),
    ("post", "/v1/auth/register"),
    ("post", "/v1/echo/{token}"),
    ("post", "/v1/auth/device-code"),
    ("post", "/v1/auth/device-code/poll"),
    ("post", "/v1/auth/device-code/submit-email"),
    ("post", "/v1/auth/session"),
    ("get", "/auth/device"),
    ("post", "/auth/device"),
    ("get", "/v1/auth/verify"),
}
CREATED = {
    ("post", "/v1/auth/register"),
    ("post", "/v1/cues"),
    ("post", "/v1/auth/device-code"),
    ("post", "/v1/executions/replay"),
}
RESPONSE_MODULES = {models.__name__, account_models.__name__}
PAGES = {"/auth/device", "/v1/auth/verify"}
"""HTML pages for people (login): text/html answers, documented as such"""
NO_CONTENT = {("delete", "/v1/cues/{cue_id}"), ("delete", "/v1/workers/{worker_id}")}
STRUCTS = {
    name: obj
    for module in (models, account_models, bodies)
    for name, obj in vars(module).items()
    if inspect.isclass(obj) and issubclass(obj, msgspec.Struct)
}


async def _schema(api: Api) -> dict[str, Any]:
    res = await api.client.get("/openapi.json")
    assert res.status_code == 200
    schema: dict[str, Any] = res.json()
    return schema


def _ops(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, item in schema["paths"].items() for m, op in item.items()]


def _ref(media: dict[str, Any]) -> str:
    ref = media["schema"]["$ref"]
    assert ref.startswith("#/components/schemas/"), ref
    return str(ref.rsplit("/", 1)[1])


async def test_every_operation_documents_its_real_success_status(api: Api) -> None:
    """Before: 17 POST routes advertised 201 and answered 200."""
    schema = await _schema(api)
    ops = _ops(schema)
    assert len(ops) >= 41
    for method, path, op in ops:
        success = [s for s in op["responses"] if s.startswith("2")]
        expected = "201" if (method, path) in CREATED else "204" if (method, path) in NO_CONTENT else "200"
        assert success == [expected], (method, path, success)


async def test_bodies_and_responses_are_the_sdk_structs(api: Api) -> None:
    """Every request body and every JSON response names a Struct of ``cuefast.client`` (the
    ones the SDK decodes); every error status is the envelope; before, there were no request
    bodies, no component schemas and every response was a string."""
    schema = await _schema(api)
    components = schema["components"]["schemas"]
    assert set(components) <= set(STRUCTS), set(components) - set(STRUCTS)
    with_body = 0
    for method, path, op in _ops(schema):
        if "requestBody" in op:
            with_body += 1
            name = (
                _ref(op["requestBody"]["content"]["application/json"]) if path != "/v1/echo/{token}" else ""
            )
            assert not name or STRUCTS[name].__module__ == bodies.__name__, (method, path, name)
        elif method in ("post", "patch", "put") and path not in PAGES:
            assert path.endswith(
                ("/regenerate", "/replay", "/verification-pending", "/heartbeat", "/refresh")
            ), path
        for status, response in op["responses"].items():
            if status == "204":
                assert "content" not in response
                continue
            if path in PAGES and "text/html" in response["content"]:
                assert status in ("200", "400", "429"), (method, path, status)
                continue
            media = response["content"]["application/json"]
            name = _ref(media)
            if status.startswith("2") or path == "/status":
                assert STRUCTS[name].__module__ in RESPONSE_MODULES, (method, path, status, name)
            else:
                assert name == "ErrorResponse", (method, path, status)
                assert media["examples"], (method, path, status)
                for example in media["examples"].values():
                    envelope = msgspec.convert(example["value"], models.ErrorResponse)
                    assert envelope.error.status == int(status), (method, path, example)
        assert "500" in op["responses"], (method, path)
    assert with_body == 25  # main's 22 + POST /v1/cues/pause and /resume + PUT task cap


async def test_bearer_security_scheme_and_authenticated_operations(api: Api) -> None:
    """Swagger's "Authorize" needs a security scheme and a security requirement per operation."""
    schema = await _schema(api)
    assert schema["components"]["securitySchemes"]["BearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["BearerAuth"]["description"],
    }
    for method, path, op in _ops(schema):
        if (method, path) in NO_AUTH:
            own_401 = path == "/v1/auth/session"  # invalid_token: the one-time token, not auth
            assert "security" not in op and ("401" not in op["responses"] or own_401), (method, path)
        else:
            assert op["security"] == [{"BearerAuth": []}], (method, path)
            assert "401" in op["responses"] and "429" in op["responses"], (method, path)


async def test_query_parameters_and_examples_are_documented(api: Api) -> None:
    schema = await _schema(api)
    params = {p["name"]: p for p in schema["paths"]["/v1/cues"]["get"]["parameters"]}
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}
    assert params["offset"]["in"] == "query"
    get_cue = schema["paths"]["/v1/cues/{cue_id}"]["get"]
    names = {p["name"]: p["in"] for p in get_cue["parameters"]}
    assert names == {"cue_id": "path", "execution_limit": "query", "execution_offset": "query"}
    regen = schema["paths"]["/v1/auth/key/regenerate"]["post"]
    assert [(p["name"], p["in"]) for p in regen["parameters"]] == [("X-Confirm-Destructive", "header")]
    create = schema["paths"]["/v1/cues"]["post"]
    assert create["requestBody"]["required"] is True
    assert create["requestBody"]["content"]["application/json"]["examples"]
    assert create["responses"]["201"]["content"]["application/json"]["examples"]
    fire = schema["paths"]["/v1/cues/{cue_id}/fire"]["post"]
    assert fire["requestBody"]["required"] is False
    assert schema["paths"]["/v1/cues/{cue_id}"]["patch"]["operationId"] == "patch_cue"


def test_handlers_get_the_account_from_the_dependency() -> None:
    """The account comes from one Litestar dependency (``api/deps.py``), not from a call per
    handler (36 before)."""
    api_dir = Path(__file__).resolve().parents[2] / "cuefast" / "api"
    calls = {
        p.name: len(re.findall(r"\.authenticate\(", p.read_text()))
        for p in api_dir.glob("*.py")
        if re.search(r"\.authenticate\(", p.read_text())
    }
    assert calls == {"deps.py": 1}, calls


async def test_labels_and_bulk_pause_resume_are_documented(api: Api) -> None:
    schema = await _schema(api)
    params = {p["name"]: p for p in schema["paths"]["/v1/cues"]["get"]["parameters"]}
    assert params["label"]["in"] == "query" and "key:value" in params["label"]["description"]
    comps = schema["components"]["schemas"]
    for name in ("Cue", "CueCreate", "CueUpdate"):
        assert "labels" in comps[name]["properties"], name
    for verb in ("pause", "resume"):
        op = schema["paths"][f"/v1/cues/{verb}"]["post"]
        assert op["operationId"] == f"{verb}_cues"
        body = op["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/BulkStatusRequest"}
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": "#/components/schemas/BulkStatusResult"}
    assert set(comps["BulkStatusRequest"]["properties"]) == {"ids", "labels"}


def _bounds(t: msgspec.inspect.Type) -> dict[str, float]:
    """The numeric bounds msgspec enforces on a field's type (an optional one's too)."""
    if isinstance(t, msgspec.inspect.UnionType):
        return {k: v for member in t.types for k, v in _bounds(member).items()}
    if isinstance(t, (msgspec.inspect.IntType, msgspec.inspect.FloatType)):
        return {k: v for k in ("ge", "gt", "le", "lt") if (v := getattr(t, k)) is not None}
    return {}


async def test_every_numeric_bound_of_a_body_is_in_the_schema(api: Api) -> None:
    """Each ``Meta(ge=…, le=…)`` of a component Struct's field is its schema's minimum/maximum —
    a bound of 0 too (Litestar dropped those on optional fields: ``ScheduleChange.jitter_seconds``
    had ``maximum: 3600`` and no ``minimum``)."""
    components = (await _schema(api))["components"]["schemas"]
    names = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
    checked = 0
    for name, component in components.items():
        info = msgspec.inspect.type_info(STRUCTS[name])
        assert isinstance(info, msgspec.inspect.StructType)
        for f in info.fields:
            for bound, value in _bounds(f.type).items():
                prop = component["properties"][f.encode_name]
                assert prop.get(names[bound]) == value, (name, f.name, bound, prop)
                checked += 1
    assert checked >= 20
    jitter = components["ScheduleChange"]["properties"]["jitter_seconds"]
    assert (jitter["minimum"], jitter["maximum"]) == (0, 3600)


def _props(comps: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    """The properties of an object property (through ``$ref`` and a nullable ``oneOf``)."""
    for option in prop.get("oneOf", [prop]):
        if "$ref" in option:
            found: dict[str, Any] = comps[option["$ref"].rsplit("/", 1)[1]]["properties"]
            return found
    raise AssertionError(prop)


async def test_the_scheduling_controls_are_in_the_request_bodies(api: Api) -> None:
    """Issue 17: each new cue field is in the schema a client sends, not only in the Cue it
    reads back. Before: ``verification.checks`` was in ``Cue`` and missing from
    ``CueCreate``/``CueUpdate`` (``VerificationInput`` had ``mode`` alone)."""
    comps = (await _schema(api))["components"]["schemas"]
    for name in ("CueCreate", "CueUpdate"):
        body = comps[name]["properties"]
        policies = [x for x in body["overlap"]["enum"] if x is not None]  # CueUpdate: null too
        assert policies == ["allow", "skip", "buffer_one", "cancel_previous"], name
        assert "labels" in body
        assert "jitter_seconds" in _props(comps, body["schedule"])
        delivery = _props(comps, body["delivery"])
        assert {"max_concurrency", "max_concurrency_per_host", "max_per_second"} <= set(delivery)
        verification = _props(comps, body["verification"])
        checks = _props(comps, verification["checks"])
        assert set(checks) == {"result_url_reachable", "result_schema", "external_id_pattern"}, name
        assert (checks["external_id_pattern"]["minLength"], checks["external_id_pattern"]["maxLength"]) == (
            1,
            256,
        )
