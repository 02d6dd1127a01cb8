"""The contract check: a response against what ``/openapi.json`` declares for its operation.

For every response the test suite's ``Api`` client sees (an httpx response hook installed by
``tests.conftest.make_api``): the operation is found by method and path template; its status
must be documented; a documented JSON body must decode into the Struct the schema names — a
Struct of ``cuefast.client`` (the SDK's own) — with unknown fields forbidden, at any depth; a
204 must be empty. Responses of routes outside the schema (``/metrics``, ``/docs``, unknown
paths) must still be the error envelope when they are errors.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import msgspec
from msgspec import inspect as mi

from cuefast.client import account_models, bodies, models

STRUCTS: dict[str, type[msgspec.Struct]] = {
    name: obj
    for module in (models, account_models, bodies)
    for name, obj in vars(module).items()
    if inspect.isclass(obj) and issubclass(obj, msgspec.Struct)
}
_PARAM = re.compile(r"\{[^/{}]+\}")


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    responses: dict[str, str | None]  # status → Struct name (None: no body)


HTML = "text/html"
"""the "Struct name" of a documented HTML page (the login pages for people)"""


def _struct_name(response: dict[str, Any]) -> str | None:
    content = response.get("content") or {}
    if HTML in content:
        return HTML
    media = content.get("application/json")
    if media is None:
        return None
    ref = str(media["schema"]["$ref"])
    return ref.rsplit("/", 1)[1]


def operations(schema: dict[str, Any]) -> list[Operation]:
    ops = []
    for template, item in schema["paths"].items():
        pattern = re.compile(
            "^" + _PARAM.sub("[^/]+", re.escape(template).replace(r"\{", "{").replace(r"\}", "}")) + "$"
        )
        for method, op in item.items():
            responses = {status: _struct_name(r) for status, r in op["responses"].items()}
            ops.append(Operation(method.upper(), template, pattern, responses))
    # static segments win over parameters (/v1/executions/claimable is not an execution id)
    ops.sort(key=lambda o: (o.template.count("{"), -len(o.template)))
    return ops


@cache
def _info(struct: type[msgspec.Struct]) -> mi.Type:
    return mi.type_info(struct)


def unknown_fields(value: Any, t: mi.Type, loc: str = "$") -> list[str]:
    """Keys of ``value`` that the Struct type ``t`` (at any depth) does not declare."""
    out: list[str] = []
    if isinstance(t, mi.StructType):
        if isinstance(value, dict):
            fields = {f.encode_name: f.type for f in t.fields}
            for key, item in value.items():
                if key not in fields:
                    out.append(f"{loc}.{key}")
                else:
                    out += unknown_fields(item, fields[key], f"{loc}.{key}")
    elif isinstance(t, mi.UnionType):
        for member in t.types:
            out += unknown_fields(value, member, loc)
    elif isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        if isinstance(value, list):
            for i, item in enumerate(value):
                out += unknown_fields(item, t.item_type, f"{loc}[{i}]")
    elif isinstance(t, mi.DictType) and isinstance(value, dict):
        for key, item in value.items():
            out += unknown_fields(item, t.value_type, f"{loc}.{key}")
    return sorted(set(out))


def check_body(name: str, body: bytes) -> list[str]:
    """Problems of ``body`` as the Struct ``name`` (type errors and unknown fields)."""
    struct = STRUCTS.get(name)
    if struct is None:
        return [f"schema names {name!r}, which is not a Struct of cuefast.client"]
    try:
        msgspec.json.decode(body, type=struct)
    except msgspec.ValidationError as exc:
        return [f"does not decode as {name}: {exc}"]
    extra = unknown_fields(msgspec.json.decode(body), _info(struct))
    return [f"{name} has no field {loc}" for loc in extra]


class Contract:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.ops = operations(schema)
        self.seen: set[tuple[str, str, int]] = set()

    def find(self, method: str, path: str) -> Operation | None:
        path = path.rstrip("/") or "/"
        for op in self.ops:
            if op.method == method and op.pattern.match(path):
                return op
        return None

    def check(self, method: str, path: str, status: int, content_type: str, body: bytes) -> list[str]:
        if path == "/dashboard" or path.startswith("/dashboard/"):  # pages for people (README "Dashboard")
            edge = status == 413 and not check_body("ErrorResponse", body)  # refused before any page
            ok = status < 500 and (status < 400 or content_type.startswith("text/html") or edge)
            return [] if ok else [f"dashboard answered {status} {content_type!r}, not an HTML page"]
        op = self.find(method, path)
        if op is None:  # outside the schema: an error must still be the envelope
            return check_body("ErrorResponse", body) if status >= 400 else []
        self.seen.add((op.method, op.template, status))
        if str(status) not in op.responses:
            return [f"status {status} is not documented (documented: {sorted(op.responses)})"]
        name = op.responses[str(status)]
        if name is None:
            return [] if body == b"" else [f"{status} must have an empty body"]
        if name == HTML:
            return (
                [] if content_type.startswith(HTML) else [f"content-type {content_type!r}, documented {HTML}"]
            )
        if not content_type.startswith("application/json"):
            return [f"content-type {content_type!r}, documented application/json"]
        return check_body(name, body)
