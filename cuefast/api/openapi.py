"""What each route declares for ``/openapi.json``: body, query, errors, auth and examples.

The handlers keep parsing bodies and query strings with the services' own checkers (the
contract's lenient booleans, ``null``-means-absent, its exact 422 ``loc``/texts), so what a
route *declares* is documentation that the tests hold to the wire: tests/contract decodes
every response the suite sees into the declared Struct, schemathesis runs the schema
against a live server.

* Request body: ``data: RawJSON`` in the handler with ``dto=SchemaBody[SomeStruct]``. The DTO
  hands the raw bytes over untouched (the handler parses them after authentication) and
  gives Litestar the Struct for the schema.
* Query parameters: ``Query`` objects parse (``Query.read``) and document the same bounds;
  they reach the schema through the operation class ``doc()`` builds, never through
  Litestar's signature parsing (which would answer its own errors and take the last of
  repeated keys, where the handlers take the first).
* Errors: the contract's envelope per status, with examples made from the real error
  classes; the statuses every route of a kind can answer (401, 413, 422, 429, 500, 503) are
  added by ``doc()``.
* Bounds of 0: Litestar copies a field's ``ge``/``gt``/``le``/``lt`` to an optional field's
  schema only when truthy, so ``ScheduleChange.jitter_seconds`` (``ge=0``) lost its
  ``minimum: 0``; ``_keep_zero_bounds`` (applied at import) writes those too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Annotated, Any, Generic, TypeAlias, TypeVar

from litestar._openapi.schema_generation.schema import SchemaCreator
from litestar.dto import AbstractDTO, DTOConfig, DTOFieldDefinition
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    Components,
    Example,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.params import BodyKwarg
from litestar.typing import FieldDefinition

from cuefast.client.models import ErrorResponse
from cuefast.errors import (
    CuefastError,
    InternalError,
    InvalidJSON,
    InvalidSession,
    KeyRotated,
    RateLimited,
    RequestTooLarge,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)
from cuefast.services.validate import query_int

T = TypeVar("T")
RawJSON: TypeAlias = Annotated[bytes, BodyKwarg()]
"""The handler parameter type of a request body (``data: RawJSON = b""``, with ``doc(body=…)``)."""

BEARER = "BearerAuth"
SECURITY: list[dict[str, list[str]]] = [{BEARER: []}]
COMPONENTS = Components(
    security_schemes={
        BEARER: SecurityScheme(
            type="http",
            scheme="bearer",
            description="An API key (`cue_sk_…`, from `POST /v1/auth/register`): "
            "`Authorization: Bearer cue_sk_…`.",
        )
    }
)


_BOUNDS = (("ge", "minimum"), ("gt", "exclusive_minimum"), ("le", "maximum"), ("lt", "exclusive_maximum"))


def _keep_zero_bounds() -> None:
    """Wrap ``SchemaCreator._apply_kwarg_definition_metadata`` (its ``if value := …`` drops a
    bound of 0) so a numeric bound of 0 the schema lacks is written as well."""
    apply = SchemaCreator._apply_kwarg_definition_metadata

    def with_zero_bounds(self: SchemaCreator, field: FieldDefinition, schema: Schema) -> None:
        apply(self, field, schema)
        for kwarg, prop in _BOUNDS:
            value = getattr(field.kwarg_definition, kwarg, None)
            if type(value) in (int, float) and value == 0 and getattr(schema, prop, None) is None:
                setattr(schema, prop, value)

    SchemaCreator._apply_kwarg_definition_metadata = with_zero_bounds  # type: ignore[method-assign]


_keep_zero_bounds()


class SchemaBody(AbstractDTO[T], Generic[T]):
    """The request body as raw bytes (parsed by the handler, after auth); its schema is ``T``."""

    config = DTOConfig()

    @classmethod
    def generate_field_definitions(cls, model_type: type[Any]) -> Generator[DTOFieldDefinition, None, None]:
        yield from ()

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False

    @classmethod
    def create_for_field_definition(
        cls, field_definition: FieldDefinition, handler_id: str, backend_cls: Any = None
    ) -> None:
        return None  # no transfer model: the bytes are handed over as they are

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any
    ) -> Reference | Schema:
        schema: Reference | Schema = schema_creator.for_field_definition(
            FieldDefinition.from_annotation(cls.model_type)
        )
        return schema

    def decode_bytes(self, value: bytes) -> bytes:
        return value

    def decode_builtins(self, value: dict[str, Any]) -> Any:  # pragma: no cover - JSON only
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Query:
    """An integer query parameter: parses (first of repeated keys, the contract's 422 texts)
    and documents the same bounds."""

    name: str
    default: int
    ge: int
    le: int
    description: str = ""

    def read(self, params: Mapping[str, str]) -> int:
        return query_int(params, self.name, self.default, self.ge, self.le)

    def parameter(self) -> Parameter:
        return Parameter(
            name=self.name,
            param_in="query",
            required=False,
            description=self.description or None,
            schema=Schema(type=OpenAPIType.INTEGER, minimum=self.ge, maximum=self.le, default=self.default),
        )


@dataclasses.dataclass(frozen=True)
class TextQuery:
    """A text query parameter (documentation only: the handler reads it)."""

    name: str
    description: str = ""
    enum: Sequence[str] = ()
    fmt: str | None = None

    def parameter(self) -> Parameter:
        schema = Schema(type=OpenAPIType.STRING, format=self.fmt, enum=list(self.enum) or None)  # type: ignore[arg-type]
        return Parameter(
            name=self.name,
            param_in="query",
            required=False,
            description=self.description or None,
            schema=schema,
        )


LIMIT_100 = "1-100"
OFFSET = Query("offset", 0, 0, 10_000_000, "rows to skip")


def limit(default: int) -> Query:
    return Query("limit", default, 1, 100, f"page size ({LIMIT_100}, default {default})")


_STATUS_TEXT = {
    400: "Bad request",
    401: "Missing, invalid or rotated API key",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Request body too large",
    422: "Validation error (`details` lists every problem)",
    429: "Rate limited (`Retry-After` seconds)",
    500: "Internal error",
    503: "Data store unreachable or refusing writes (full, read-only, busy, …)",
}
_VALIDATION = ValidationFailed([("body.name", "Field required")])
_COMMON = {
    "auth": (Unauthorized("Invalid API key"), KeyRotated(), InvalidSession()),
    "body": (InvalidJSON(), RequestTooLarge(), _VALIDATION),
    "query": (ValidationFailed([("query.limit", "Input should be less than or equal to 100")]),),
    "counted": (RateLimited(12),),
    "store": (ServiceUnavailable(),),
    "always": (InternalError(),),
}


def error_responses(errors: Iterable[CuefastError]) -> dict[int, ResponseSpec]:
    """The envelope per status, one example per error code."""
    by_status: dict[int, dict[str, CuefastError]] = {}
    for err in errors:
        by_status.setdefault(err.status, {}).setdefault(err.code, err)
    out: dict[int, ResponseSpec] = {}
    for status, by_code in sorted(by_status.items()):
        codes = ", ".join(f"`{c}`" for c in by_code)
        out[status] = ResponseSpec(
            data_container=ErrorResponse,
            description=f"{_STATUS_TEXT.get(status, 'Error')}: {codes}",
            generate_examples=False,
            examples=[Example(summary=code, value=err.envelope()) for code, err in by_code.items()],
        )
    return out


def _examples(value: Any) -> dict[str, Example | Reference] | None:
    return None if value is None else {"example": Example(value=value)}


def _operation_class(
    *,
    allowed: frozenset[str],
    query: Sequence[Query | TextQuery],
    body_required: bool,
    body_example: Any,
    example: Any,
) -> type[Operation]:
    class Documented(Operation):  # not a new dataclass: generating one per route and app is slow
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if self.responses is not None:  # Litestar adds its own 400 shape where nothing answers it
                self.responses = {k: v for k, v in self.responses.items() if k in allowed}
                for status, response in self.responses.items():
                    if status.startswith("2") and isinstance(response, OpenAPIResponse) and response.content:
                        for media in response.content.values():
                            media.examples = _examples(example)
            if query:
                self.parameters = [*(self.parameters or []), *(q.parameter() for q in query)]
            if isinstance(self.request_body, RequestBody):
                self.request_body.required = body_required
                if body_example is not None:
                    for media in self.request_body.content.values():
                        media.examples = _examples(body_example)

    return Documented


def doc(
    *,
    status: int = 200,
    body: Any = None,
    body_required: bool = True,
    query: Sequence[Query | TextQuery] = (),
    errors: Iterable[CuefastError] = (),
    auth: bool = True,
    counted: bool = True,
    store: bool = True,
    body_example: Any = None,
    example: Any = None,
    responses: Mapping[int, ResponseSpec] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for a route decorator: the success ``status_code``, the body DTO, the
    error responses, the security requirement and the operation class that adds the query
    parameters and examples. ``counted=False`` for the rate-limit-exempt routes,
    ``store=False`` for the routes that never touch Redis; ``responses`` adds or replaces
    documented responses by status."""
    every: list[CuefastError] = [*errors, *_COMMON["always"]]
    if auth:
        every += _COMMON["auth"]
    if body is not None:
        every += _COMMON["body"]
    if any(isinstance(q, Query) for q in query):
        every += _COMMON["query"]
    if counted:
        every += _COMMON["counted"]
    if store or auth:  # authenticating may need Redis (the rate-limit layer fails open)
        every += _COMMON["store"]
    responses = {**error_responses(every), **(responses or {})}
    allowed = frozenset({str(status), *(str(s) for s in responses)})
    kwargs: dict[str, Any] = {
        "status_code": status,
        "response_description": HTTPStatus(status).phrase,
        "responses": responses,
        "operation_class": _operation_class(
            allowed=allowed,
            query=query,
            body_required=body_required,
            body_example=body_example,
            example=example,
        ),
    }
    if body is not None:
        kwargs["dto"] = SchemaBody[body]
    if auth:
        kwargs["security"] = SECURITY
    return kwargs
