"""The storyteller knowledge-base HTTP API: routes over the query domain, and how errors become statuses.

Routes (API Gateway REST, Lambda proxy; every method needs SigV4 and, when the stack says so, an API key):

    POST /search                                        SearchRequest  -> SearchResponse
    POST /context                                       ContextRequest -> ContextPack
    GET  /worlds/{world_id}/concepts/{name}/history                    -> ConceptHistory
    GET  /concepts/{concept_id}/relationships?world_id=&depth=&type=   -> ConceptGraph
    GET  /worlds/{world_id}/events?since=&limit=&cursor=               -> Timeline

Concept ids are only unique within a world, and every query is world-scoped, so the relationships route
takes the world as a required `world_id` query parameter.

Statuses, one error envelope for all (`ApiError`: code, message, details):

* 400 `malformed_body`: the body is not JSON (or not UTF-8, or bad base64);
* 404 `unknown_world`, `concept_not_found`, `not_found` (no such route);
* 413 `body_too_large`: more than MAX_BODY_BYTES, refused before parsing;
* 415 `unsupported_media_type`: a body that is not application/json;
* 422 `validation_error`: well-formed JSON or parameters that break the request models' rules, each
  problem in `details` with its location (`body.k`, `query.depth`, `path.world_id`);
* 502 `embedding_failed`: the embedding model rejected the text;
* 503 `database_unavailable` / `embedding_throttled`, with Retry-After: retrying later is expected to work;
* 500 `internal_error`: a bug; logged with its stack, never returned.

The handler keeps one `Services` per process, so the database pool (one connection per instance, since a
Lambda instance serves one request at a time) is reused across invocations.
"""

import base64
import binascii
import json
import urllib.parse
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal, Protocol

import pydantic
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, Field

import knowledge.adapters.postgres.concepts as concept_queries
import knowledge.adapters.postgres.timeline as timeline_queries
import knowledge.queries.context_pack as context_queries
import knowledge.queries.search as search_queries
from knowledge.errors import (
    ConceptNotFoundError,
    DatabaseUnavailableError,
    EmbeddingError,
    EmbeddingThrottledError,
    UnknownWorldError,
)
from knowledge.ports import Embedder
from knowledge.queries.models import (
    MAX_DEPTH,
    ConceptGraph,
    ConceptHistory,
    ConceptHistoryRequest,
    ContextPack,
    ContextRequest,
    RelationshipsRequest,
    SearchRequest,
    SearchResponse,
    Timeline,
    TimelineRequest,
)

__all__ = [
    "API_TITLE",
    "API_VERSION",
    "MAX_BODY_BYTES",
    "RETRY_AFTER_SECONDS",
    "ApiError",
    "QueryServices",
    "build_app",
    "handle",
    "openapi_json",
]

API_TITLE = "Storyteller knowledge base"
API_VERSION = "1.0.0"
# A request at every model bound in plain ASCII is about 64 KB; four times that leaves room for escaped
# Unicode. API Gateway itself accepts 10 MB, which would only cost parsing time here.
MAX_BODY_BYTES = 256 * 1024
RETRY_AFTER_SECONDS = 5
# Validation details echo the rule and location, never the rejected input (which may be huge or hostile).
_MAX_DETAILS = 20

logger = Logger(child=True)


class ApiErrorDetail(BaseModel):
    loc: list[str | int] = Field(description="Where: 'body', 'query' or 'path', then the field")
    msg: str
    type: str


class ApiError(BaseModel):
    code: str = Field(examples=["unknown_world"])
    message: str
    details: list[ApiErrorDetail] = Field(default_factory=list)


class Transactional(Protocol):
    def transaction(self) -> AbstractContextManager[Any]: ...

    def read[T](self, fn: Callable[[Any], T]) -> T: ...


class QueryServices(Protocol):
    """What the routes need; `knowledge.services.Services` provides both, lazily."""

    @property
    def database(self) -> Transactional: ...

    @property
    def embedder(self) -> Embedder: ...


def _error(status: HTTPStatus, code: str, message: str, **extra: Any) -> Response[str]:
    body = ApiError(code=code, message=message, details=extra.pop("details", []))
    return Response(
        status_code=status.value,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump_json(),
        headers=extra.pop("headers", None),
    )


def _details(errors: list[Any], prefix: tuple[str, ...] = ()) -> list[ApiErrorDetail]:
    return [
        ApiErrorDetail(
            loc=[*prefix, *e.get("loc", ())], msg=str(e.get("msg", e.get("type", ""))), type=e["type"]
        )
        for e in errors[:_MAX_DETAILS]
    ]


def _errors(*statuses: HTTPStatus) -> dict[int, OpenAPIResponse]:
    """OpenAPI `responses` for the error statuses a route can answer."""
    return {
        s.value: {"description": s.phrase, "content": {"application/json": {"model": ApiError}}}
        for s in statuses
    }


_COMMON = (HTTPStatus.UNPROCESSABLE_ENTITY, HTTPStatus.SERVICE_UNAVAILABLE)
_BODY = (HTTPStatus.BAD_REQUEST, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, HTTPStatus.UNSUPPORTED_MEDIA_TYPE)

WorldIdPath = Annotated[str, Path(description="World slug, e.g. emberfall")]


def build_app(services: QueryServices) -> APIGatewayRestResolver:
    """The resolver with every route; `services` is only touched when a route runs."""
    app = APIGatewayRestResolver(enable_validation=True)

    def transaction() -> AbstractContextManager[Any]:
        return services.database.transaction()

    @app.post(
        "/search",
        summary="Ranked chunks of one world, with citations",
        responses=_errors(HTTPStatus.NOT_FOUND, *_BODY, *_COMMON, HTTPStatus.BAD_GATEWAY),
        tags=["search"],
    )
    def search(request: Annotated[SearchRequest, Body(embed=False)]) -> SearchResponse:
        # The hot path: a read-only autocommit connection, one round trip per query (Database.read).
        return services.database.read(lambda conn: search_queries.search(conn, services.embedder, request))

    @app.post(
        "/context",
        summary="A storyteller context pack for a situation, within a token budget",
        responses=_errors(HTTPStatus.NOT_FOUND, *_BODY, *_COMMON, HTTPStatus.BAD_GATEWAY),
        tags=["search"],
    )
    def context(request: Annotated[ContextRequest, Body(embed=False)]) -> ContextPack:
        with transaction() as conn:
            return context_queries.build_context_pack(conn, services.embedder, request)

    @app.get(
        "/worlds/<world_id>/concepts/<name>/history",
        summary="A concept's versions over time, with the documents or events that set them",
        responses=_errors(HTTPStatus.NOT_FOUND, *_COMMON),
        tags=["concepts"],
    )
    def concept_history(
        world_id: WorldIdPath,
        name: Annotated[str, Path(description="Concept name, percent-encoded; matched case-insensitively")],
    ) -> ConceptHistory:
        request = _validated(
            ConceptHistoryRequest, "path", world_id=world_id, name=urllib.parse.unquote(name)
        )
        with transaction() as conn:
            return concept_queries.concept_history(conn, request)

    @app.get(
        "/concepts/<concept_id>/relationships",
        summary="The relationship graph around a concept, breadth first and bounded",
        responses=_errors(HTTPStatus.NOT_FOUND, *_COMMON),
        tags=["concepts"],
    )
    def relationships(
        concept_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="concept_id from a history")],
        world_id: Annotated[str, Query(description="World the concept belongs to (ids are per world)")],
        depth: Annotated[int, Query(ge=1, le=MAX_DEPTH, description="Hops from the concept")] = 1,
        type: Annotated[str | None, Query(description="Follow only edges of this type")] = None,
        direction: Annotated[Literal["out", "in", "both"], Query()] = "both",
    ) -> ConceptGraph:
        request = _validated(
            RelationshipsRequest,
            "query",
            world_id=world_id,
            concept_id=concept_id,
            depth=depth,
            type=type,
            direction=direction,
        )
        with transaction() as conn:
            return concept_queries.concept_graph(conn, request)

    @app.get(
        "/worlds/<world_id>/events",
        summary="The story timeline, oldest first, a page at a time",
        responses=_errors(HTTPStatus.NOT_FOUND, *_COMMON),
        tags=["timeline"],
    )
    def events(
        world_id: WorldIdPath,
        since: Annotated[
            datetime | None, Query(description="Earliest occurred_at, ISO 8601 with a time zone")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    ) -> Timeline:
        request = _validated(
            TimelineRequest, "query", world_id=world_id, since=since, limit=limit, cursor=cursor
        )
        with transaction() as conn:
            return timeline_queries.events_timeline(conn, request)

    _register_error_handlers(app)
    return app


def _validated[M: BaseModel](model: type[M], where: str, **values: Any) -> M:
    """Build a domain request from path/query values; its rules (patterns, bounds) give 422s."""
    try:
        return model.model_validate(values)
    except pydantic.ValidationError as exc:
        raise _ParameterError(where, exc) from None


class _ParameterError(Exception):
    def __init__(self, where: str, error: pydantic.ValidationError) -> None:
        super().__init__(str(error))
        self.where = where
        self.errors = error.errors(include_input=False, include_url=False)


def _register_error_handlers(app: APIGatewayRestResolver) -> None:
    @app.exception_handler(RequestValidationError)
    def invalid_request(exc: RequestValidationError) -> Response[str]:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error(HTTPStatus.BAD_REQUEST, "malformed_body", "the request body is not valid JSON")
        return _error(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "validation_error",
            "the request does not match the API's rules; see details",
            details=_details(errors),
        )

    @app.exception_handler(_ParameterError)
    def invalid_parameter(exc: _ParameterError) -> Response[str]:
        return _error(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "validation_error",
            "the request does not match the API's rules; see details",
            details=_details(exc.errors, (exc.where,)),
        )

    @app.exception_handler(UnknownWorldError)
    def unknown_world(exc: UnknownWorldError) -> Response[str]:
        return _error(
            HTTPStatus.NOT_FOUND, "unknown_world", f"no world {exc.world_id!r} in the knowledge base"
        )

    @app.exception_handler(ConceptNotFoundError)
    def unknown_concept(exc: ConceptNotFoundError) -> Response[str]:
        return _error(
            HTTPStatus.NOT_FOUND, "concept_not_found", f"no concept {exc.concept!r} in world {exc.world_id!r}"
        )

    @app.not_found
    def no_route(exc: Exception) -> Response[str]:
        event = app.current_event
        return _error(HTTPStatus.NOT_FOUND, "not_found", f"no route {event.http_method} {event.path[:200]}")

    @app.exception_handler([DatabaseUnavailableError, EmbeddingThrottledError])
    def unavailable(exc: Exception) -> Response[str]:
        logger.warning("dependency unavailable", extra={"error": type(exc).__name__, "reason": str(exc)})
        code = "database_unavailable" if isinstance(exc, DatabaseUnavailableError) else "embedding_throttled"
        return _error(
            HTTPStatus.SERVICE_UNAVAILABLE,
            code,
            "the knowledge base is briefly unavailable; retry after the Retry-After seconds",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(EmbeddingError)
    def embedding_failed(exc: EmbeddingError) -> Response[str]:
        logger.error("embedding failed", extra={"reason": str(exc)})
        return _error(HTTPStatus.BAD_GATEWAY, "embedding_failed", "the embedding model rejected the text")

    @app.exception_handler(Exception)
    def internal_error(exc: Exception) -> Response[str]:
        # Without this, Lambda reports an error and API Gateway answers a bare 502.
        logger.exception("unhandled error")
        return _error(
            HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "internal error; it has been logged"
        )


# ---------------------------------------------------------------- before routing


def _proxy_error(status: HTTPStatus, code: str, message: str) -> dict[str, Any]:
    return {
        "statusCode": status.value,
        "multiValueHeaders": {"Content-Type": [content_types.APPLICATION_JSON]},
        "body": ApiError(code=code, message=message).model_dump_json(),
        "isBase64Encoded": False,
    }


def _header(event: dict[str, Any], name: str) -> str:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value or "")
    return ""


def screen(event: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Refuse what must not reach the parser: oversized, undecodable or non-JSON bodies.

    Returns (a proxy response to send as is, or None; the event with its body decoded to text).
    """
    raw = event.get("body")
    if raw is None or raw == "":
        return None, event
    if not isinstance(raw, str):
        return _proxy_error(HTTPStatus.BAD_REQUEST, "malformed_body", "the request body is not text"), event
    if len(raw) > MAX_BODY_BYTES * 4 // 3 + 4:  # cheap bound before encoding anything
        return _too_large(), event
    try:
        data = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else None
        size = len(data) if data is not None else len(raw.encode("utf-8", "surrogatepass"))
        if size > MAX_BODY_BYTES:
            return _too_large(), event
        text = data.decode("utf-8") if data is not None else raw
    except (binascii.Error, UnicodeDecodeError):
        return _proxy_error(
            HTTPStatus.BAD_REQUEST, "malformed_body", "the request body is not UTF-8 JSON"
        ), event
    media_type = _header(event, "content-type").split(";")[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        return (
            _proxy_error(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ),
            event,
        )
    return None, {**event, "body": text, "isBase64Encoded": False}


def _too_large() -> dict[str, Any]:
    return _proxy_error(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        "body_too_large",
        f"the request body is larger than {MAX_BODY_BYTES} bytes",
    )


def handle(app: APIGatewayRestResolver, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Screen the raw request, then route it."""
    refusal, event = screen(event)
    if refusal is not None:
        return refusal
    return app.resolve(event, context)


# ---------------------------------------------------------------- OpenAPI


class _Unbound:
    """Services for building the schema only: no route runs."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("the OpenAPI app has no services")


def _header_scheme(name: str, description: str) -> APIKey:
    # Validated from the wire form: the model's field is aliased `in`, a Python keyword.
    return APIKey.model_validate({"name": name, "in": APIKeyIn.header.value, "description": description})


def openapi_json() -> str:
    """docs/openapi.json as the resolver describes it (regenerate: python -m cli.openapi)."""
    schema = build_app(_Unbound()).get_openapi_json_schema(
        title=API_TITLE,
        version=API_VERSION,
        description=(__doc__ or "").split("\n\n", 1)[1].strip(),
        security_schemes={
            "sigv4": _header_scheme("Authorization", "AWS Signature Version 4, service execute-api (IAM)"),
            "api_key": _header_scheme("x-api-key", "Also required when deployed with ApiKeyRequired=true"),
        },
        security=[{"sigv4": []}],
    )
    # Stable bytes for the committed file: sorted keys, one trailing newline.
    return json.dumps(json.loads(schema), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
