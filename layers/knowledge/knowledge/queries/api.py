"""The storyteller knowledge-base HTTP API: routes over the query domain, and how errors become statuses.

Routes (API Gateway REST, Lambda proxy; every method needs SigV4 and, when the stack says so, an API key):

    POST /search                                        SearchRequest  -> SearchResponse
    POST /context                                       ContextRequest -> ContextPack
    GET  /worlds/{world_id}/concepts/{name}/history                    -> ConceptHistory
    GET  /concepts/{concept_id}/relationships?world_id=&depth=&type=   -> ConceptGraph
    GET  /worlds/{world_id}/events?since=&limit=&cursor=               -> Timeline
    GET  /worlds                                                       -> WorldList
    GET  /worlds/{world_id}/concepts?prefix=&limit=                    -> ConceptList
    DELETE /worlds/{world_id}/players/{player_id}                      -> PlayerErasure (audited)
    PUT  /worlds/{world_id}                             WorldSettings  -> World (201 when created)

Every query is world-scoped, so the relationships route takes the world as a required `world_id` query
parameter: the concept's own world, or a descendant that sees it (an ancestor's concept it does not shadow).

Statuses, one error envelope for all (`ApiError`: code, message, details):

* 400 `malformed_body`: the body is not JSON (or not UTF-8, or bad base64), or is JSON beyond what a
  request can need: nested deeper than 32 levels, an integer of more than 20 digits, a number out of
  float range; `NaN` and `Infinity` are not JSON;
* 404 `unknown_world`, `concept_not_found`, `not_found` (no such route);
* 405 `method_not_allowed`: the path exists, the method does not; `Allow` lists those it has;
* 409 `parent_cycle`: a world's parent would be the world itself or one of its descendants;
* 413 `body_too_large`: more than MAX_BODY_BYTES, refused before decoding;
* 415 `unsupported_media_type`: a body without `Content-Type: application/json` (charset, if any, UTF-8);
* 422 `validation_error`: well-formed JSON or parameters that break the request models' rules, each
  problem in `details` with its location (`body.k`, `query.depth`, `path.world_id`); an unknown body
  field or query parameter is one (a typo is reported, not ignored);
* 502 `embedding_failed`: the embedding model rejected the text;
* 503 `database_unavailable` / `embedding_throttled`, with Retry-After: retrying later is expected to work;
* 503 `embedding_model_mismatch`: the store's live vectors are of a model this deployment does not embed
  with (a deployment fault, docs/reembedding.md); nothing is searched;
* 500 `internal_error`: a bug; logged with its stack, never returned.

403 is API Gateway's own answer (`{message}`), before the function: no valid signature, or off-stage.

The handler keeps one `Services` per process, so the database pool (one connection per instance, since a
Lambda instance serves one request at a time) is reused across invocations.
"""

import base64
import binascii
import json
import re
import urllib.parse
from collections.abc import Callable
from contextlib import AbstractContextManager
from http import HTTPStatus
from typing import Annotated, Any, Protocol

import pydantic
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, Parameter, ParameterInType
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse, OpenAPIResponseHeader
from pydantic import AwareDatetime, BaseModel, Field

import knowledge.adapters.postgres.catalog as catalog_queries
import knowledge.adapters.postgres.concepts as concept_queries
import knowledge.adapters.postgres.timeline as timeline_queries
import knowledge.queries.context_pack as context_queries
import knowledge.queries.search as search_queries
import knowledge.queries.worlds as world_settings
import knowledge.story_events.erasure as erasure
from knowledge.errors import (
    ConceptNotFoundError,
    DatabaseUnavailableError,
    EmbeddingError,
    EmbeddingModelMismatchError,
    EmbeddingThrottledError,
    RerankError,
    RerankUnavailableError,
    UnknownWorldError,
    WorldParentError,
)
from knowledge.ports import Embedder, Reranker
from knowledge.queries import timing
from knowledge.queries.models import (
    ConceptGraph,
    ConceptHistory,
    ConceptHistoryRequest,
    ConceptId,
    ConceptList,
    ConceptListLimit,
    ConceptListRequest,
    ContextPack,
    ContextRequest,
    CursorToken,
    Depth,
    Direction,
    RelationshipsRequest,
    RelationType,
    SearchRequest,
    SearchResponse,
    Timeline,
    TimelineLimit,
    TimelineRequest,
    WorldId,
    WorldList,
)
from knowledge.queries.request_body import MalformedJsonError, parse_json

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
_MAX_ECHOED_CHARS = 200  # of a path or field name quoted back in an error
_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
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


class GatewayError(BaseModel):
    """What API Gateway itself answers, before the function runs."""

    message: str = Field(examples=["Missing Authentication Token"])


class Transactional(Protocol):
    def transaction(self) -> AbstractContextManager[Any]: ...

    def read[T](self, fn: Callable[[Any], T]) -> T: ...


class QueryServices(Protocol):
    """What the routes need; `knowledge.services.Services` provides both, lazily."""

    @property
    def database(self) -> Transactional: ...

    @property
    def embedder(self) -> Embedder: ...

    @property
    def reranker(self) -> Reranker: ...


def _error(status: HTTPStatus, code: str, message: str, **extra: Any) -> Response[str]:
    body = ApiError(code=code, message=message, details=extra.pop("details", []))
    return Response(
        status_code=status.value,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump_json(),
        headers=extra.pop("headers", None),
    )


def _printable(text: str) -> str:
    """`text` safe to put in a response: at most _MAX_ECHOED_CHARS, lone surrogates and NULs escaped."""
    short = text[:_MAX_ECHOED_CHARS].replace("\x00", "\\x00")
    return short.encode("utf-8", "backslashreplace").decode("utf-8")


def _details(errors: list[Any], prefix: tuple[str, ...] = ()) -> list[ApiErrorDetail]:
    # A location can hold a client's own field name (an unknown key), which may be anything JSON holds.
    return [
        ApiErrorDetail(
            loc=[*prefix, *(p if isinstance(p, int) else _printable(str(p)) for p in e.get("loc", ()))],
            msg=_printable(str(e.get("msg", e.get("type", "")))),
            type=str(e["type"]),
        )
        for e in errors[:_MAX_DETAILS]
    ]


# What each error status means here; every route can answer each of them (a body is screened on any method).
_ERROR_STATUSES: dict[HTTPStatus, str] = {
    HTTPStatus.BAD_REQUEST: "malformed_body: not UTF-8 JSON, bad base64, or JSON beyond a request's bounds",
    HTTPStatus.NOT_FOUND: "unknown_world, concept_not_found, or not_found (no such route)",
    HTTPStatus.METHOD_NOT_ALLOWED: "method_not_allowed: the path has other methods, listed in Allow",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: f"body_too_large: the body is over {MAX_BODY_BYTES} bytes"
    " (over 10 MB, API Gateway refuses it itself)",
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type: a body that is not application/json (UTF-8)",
    HTTPStatus.UNPROCESSABLE_ENTITY: "validation_error: a field breaks the request's rules; details say where",
    HTTPStatus.INTERNAL_SERVER_ERROR: "internal_error: a bug, logged with its stack",
    HTTPStatus.SERVICE_UNAVAILABLE: "database_unavailable or embedding_throttled: retry after Retry-After seconds",
}
_EMBEDDING_FAILED = {HTTPStatus.BAD_GATEWAY: "embedding_failed: the embedding model rejected the text"}
_ERROR_HEADERS: dict[HTTPStatus, dict[str, OpenAPIResponseHeader]] = {
    HTTPStatus.METHOD_NOT_ALLOWED: {
        "Allow": {"description": "The methods this path has", "schema": {"type": "string"}}
    },
    HTTPStatus.SERVICE_UNAVAILABLE: {
        "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
    },
}


def _responses(
    success: type[BaseModel], extra: dict[HTTPStatus, str] | None = None
) -> dict[int, OpenAPIResponse]:
    """OpenAPI `responses`: 200 with the route's model, then every error status with the error envelope."""
    responses: dict[int, OpenAPIResponse] = {
        HTTPStatus.OK.value: {"description": "OK", "content": {"application/json": {"model": success}}}
    }
    responses[HTTPStatus.FORBIDDEN.value] = {
        "description": "Forbidden: API Gateway's own answer, before the function: no valid SigV4 signature"
        " (or API key, when required), or a path outside the stage",
        "content": {"application/json": {"model": GatewayError}},
    }
    for status, meaning in sorted({**_ERROR_STATUSES, **(extra or {})}.items()):
        response: OpenAPIResponse = {
            "description": f"{status.phrase}: {meaning}",
            "content": {"application/json": {"model": ApiError}},
        }
        if status in _ERROR_HEADERS:
            response["headers"] = _ERROR_HEADERS[status]
        responses[status.value] = response
    return responses


def _world_responses() -> dict[int, OpenAPIResponse]:
    """PUT /worlds/{world_id}: 200 changed, 201 created; 409 a cycle, 422 also an unknown parent."""
    responses = _responses(
        world_settings.World,
        {
            HTTPStatus.CONFLICT: "parent_cycle: the parent is the world itself or one of its descendants",
            HTTPStatus.UNPROCESSABLE_ENTITY: "validation_error (details say where), or invalid_parent: no such"
            f" parent world, or a lineage longer than {world_settings.MAX_LINEAGE} worlds",
        },
    )
    created: OpenAPIResponse = {
        "description": "Created: the world is new",
        "content": {"application/json": {"model": world_settings.World}},
    }
    return {
        HTTPStatus.OK.value: responses.pop(HTTPStatus.OK.value),
        HTTPStatus.CREATED.value: created,
    } | responses


def _raw_name_rules() -> dict[str, Any]:
    """The concept name's rules for the document: the route reads it percent-encoded, the model decoded."""
    rules = ConceptHistoryRequest.model_json_schema()["properties"]["name"]
    return {k: rules[k] for k in ("minLength", "maxLength") if k in rules}


WorldIdPath = Annotated[WorldId, Path(description="World slug, e.g. emberfall")]


def build_app(services: QueryServices) -> APIGatewayRestResolver:
    """The resolver with every route; `services` is only touched when a route runs."""
    # The same strict parser as `screen`, so the resolver can never meet a body Python's json mishandles.
    app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=parse_json)
    # Every route's embedding and database calls are timed for the Server-Timing header (see `handle`).
    services = timing.timed_services(services)

    def transaction() -> AbstractContextManager[Any]:
        return services.database.transaction()

    @app.post(
        "/search",
        summary="Ranked chunks of one world, with citations",
        responses=_responses(SearchResponse, _EMBEDDING_FAILED),
        tags=["search"],
    )
    def search(request: Annotated[SearchRequest, Body(embed=False)]) -> SearchResponse:
        # The hot path: a read-only autocommit connection, one round trip per query (Database.read).
        reranker = services.reranker if request.rerank else None  # built only when asked for
        return services.database.read(
            lambda conn: search_queries.search(conn, services.embedder, request, reranker=reranker)
        )

    @app.post(
        "/context",
        summary="A storyteller context pack for a situation, within a token budget",
        responses=_responses(ContextPack, _EMBEDDING_FAILED),
        tags=["search"],
    )
    def context(request: Annotated[ContextRequest, Body(embed=False)]) -> ContextPack:
        with transaction() as conn:
            return context_queries.build_context_pack(conn, services.embedder, request)

    @app.get(
        "/worlds/<world_id>/concepts/<name>/history",
        summary="A concept's versions over time, with the documents or events that set them",
        responses=_responses(ConceptHistory),
        tags=["concepts"],
    )
    def concept_history(
        world_id: WorldIdPath,
        name: Annotated[
            str,
            Path(
                description="Concept name, percent-encoded; matched case-insensitively",
                json_schema_extra=_raw_name_rules(),
            ),
        ],
    ) -> ConceptHistory:
        request = _validated(
            ConceptHistoryRequest, "path", world_id=world_id, name=urllib.parse.unquote(name)
        )
        with transaction() as conn:
            return concept_queries.concept_history(conn, request)

    @app.get(
        "/concepts/<concept_id>/relationships",
        summary="The relationship graph around a concept, breadth first and bounded",
        responses=_responses(ConceptGraph),
        tags=["concepts"],
    )
    def relationships(
        concept_id: Annotated[ConceptId, Path(description="concept_id from a history")],
        world_id: Annotated[
            WorldId, Query(description="World read: the concept's own, or a descendant that sees it")
        ],
        depth: Annotated[Depth, Query(description="Hops from the concept")] = 1,
        type: Annotated[RelationType | None, Query(description="Follow only edges of this type")] = None,
        direction: Annotated[Direction, Query(description="Follow edges out of, into, or both")] = "both",
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
        responses=_responses(Timeline),
        tags=["timeline"],
    )
    def events(
        world_id: WorldIdPath,
        since: Annotated[
            AwareDatetime | None, Query(description="Earliest occurred_at, ISO 8601 with a time zone")
        ] = None,
        limit: Annotated[TimelineLimit, Query(description="Most events in the page")] = 50,
        cursor: Annotated[
            CursorToken | None, Query(description="next_cursor of the previous page; not with since")
        ] = None,
    ) -> Timeline:
        request = _validated(
            TimelineRequest, "query", world_id=world_id, since=since, limit=limit, cursor=cursor
        )
        with transaction() as conn:
            return timeline_queries.events_timeline(conn, request)

    @app.get(
        "/worlds",
        summary="The worlds the knowledge base holds, with their counts of documents, concepts and events",
        responses=_responses(WorldList),
        tags=["catalog"],
    )
    def worlds() -> WorldList:
        with transaction() as conn:
            return catalog_queries.list_worlds(conn)

    @app.get(
        "/worlds/<world_id>/concepts",
        summary="A world's concepts by name, for pickers: each with its kind, version and edge count",
        responses=_responses(ConceptList),
        tags=["catalog"],
    )
    def concepts(
        world_id: WorldIdPath,
        prefix: Annotated[
            str | None, Query(description="Only names starting with this, any case", max_length=200)
        ] = None,
        limit: Annotated[ConceptListLimit, Query(description="Most concepts in the answer")] = 200,
    ) -> ConceptList:
        request = _validated(ConceptListRequest, "query", world_id=world_id, prefix=prefix, limit=limit)
        with transaction() as conn:
            return catalog_queries.list_concepts(conn, request)

    @app.delete(
        "/worlds/<world_id>/players/<player_id>",
        summary="Erase one player's personal data from a world (GDPR/CCPA; docs/privacy.md)",
        description="Deletes the world's story events whose player_id attribute is the player's and what"
        " they wrote (concept versions, concepts only they introduced); audited with the caller's identity.",
        responses=_responses(erasure.PlayerErasure),
        tags=["privacy"],
    )
    def erase_player(
        world_id: WorldIdPath,
        player_id: Annotated[
            str,
            Path(
                description="The player_id attribute of the player's events, percent-encoded",
                min_length=1,
                max_length=3 * 128,  # percent-encoded; the decoded id is checked by the request model
            ),
        ],
    ) -> erasure.PlayerErasure:
        request = _validated(
            erasure.PlayerErasureRequest,
            "path",
            world_id=world_id,
            player_id=urllib.parse.unquote(player_id),
        )
        identity = app.current_event.request_context.identity
        return erasure.erase_player(
            transaction,
            request,
            requested_by=identity.user_arn or identity.caller or "unknown",
            audit=lambda message, record: logger.info(message, extra={"audit": record}),
        )

    @app.put(
        "/worlds/<world_id>",
        summary="Create a world or change its name or parent (a world reads its ancestors; docs/worlds.md)",
        responses=_world_responses(),
        tags=["catalog"],
    )
    def put_world(
        world_id: WorldIdPath, settings: Annotated[world_settings.WorldSettings, Body(embed=False)]
    ) -> world_settings.World:
        world, created = world_settings.put_world(transaction, world_id, settings)
        if not created:
            return world
        # The resolver validates and serialises a Response's body as it does a returned model.
        return Response(  # type: ignore[return-value]
            status_code=HTTPStatus.CREATED.value, content_type=content_types.APPLICATION_JSON, body=world
        )

    rules = _RouteRules(app)
    app.use(middlewares=[rules.reject_unknown_query])
    _register_error_handlers(app, rules)
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


class _RouteRules:
    """What the resolver's own description says of each path: its methods and its query parameters.

    Read from the OpenAPI document the routes produce (built once, on first use), so it cannot drift
    from the routes.
    """

    def __init__(self, app: APIGatewayRestResolver) -> None:
        self._app = app
        self._routes: list[tuple[re.Pattern[str], str, frozenset[str]]] | None = None

    def _load(self) -> list[tuple[re.Pattern[str], str, frozenset[str]]]:
        if self._routes is None:
            routes = []
            for template, item in (self._app.get_openapi_schema().paths or {}).items():
                pattern = re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$")
                for name in _HTTP_METHODS:
                    operation = getattr(item, name, None)
                    if operation is None:
                        continue
                    query = frozenset(
                        p.name
                        for p in operation.parameters or []
                        if isinstance(p, Parameter) and p.in_ == ParameterInType.query
                    )
                    routes.append((pattern, name.upper(), query))
            self._routes = routes
        return self._routes

    def methods_of(self, path: str) -> list[str]:
        return sorted({method for pattern, method, _ in self._load() if pattern.match(path)})

    def query_names(self, method: str, path: str) -> frozenset[str] | None:
        for pattern, route_method, query in self._load():
            if route_method == method.upper() and pattern.match(path):
                return query
        return None

    def reject_unknown_query(
        self, app: APIGatewayRestResolver, next_middleware: NextMiddleware
    ) -> Response[Any]:
        """Unknown query parameters are errors, as unknown body fields are: `?limt=5` is not ignored."""
        event = app.current_event
        known = self.query_names(event.http_method, event.path.rstrip("/"))
        given = {*(event.query_string_parameters or {}), *(event.multi_value_query_string_parameters or {})}
        unknown = sorted(given - known) if known is not None else []
        if not unknown:
            return next_middleware(app)
        return _error(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "validation_error",
            "the request does not match the API's rules; see details",
            details=[
                ApiErrorDetail(
                    loc=["query", _printable(name)], msg="Unknown query parameter", type="extra_forbidden"
                )
                for name in unknown[:_MAX_DETAILS]
            ],
        )


def _register_error_handlers(app: APIGatewayRestResolver, rules: _RouteRules) -> None:
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

    @app.exception_handler(RequestUnsupportedContentType)
    def unsupported_type(exc: RequestUnsupportedContentType) -> Response[str]:
        # `screen` refuses these first; kept so a bypass could never be a 500.
        return _error(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send the body as application/json"
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

    @app.exception_handler(WorldParentError)
    def invalid_parent(exc: WorldParentError) -> Response[str]:
        if exc.reason == "cycle":
            return _error(HTTPStatus.CONFLICT, "parent_cycle", exc.message)
        return _error(HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_parent", exc.message)

    @app.exception_handler(ConceptNotFoundError)
    def unknown_concept(exc: ConceptNotFoundError) -> Response[str]:
        return _error(
            HTTPStatus.NOT_FOUND, "concept_not_found", f"no concept {exc.concept!r} in world {exc.world_id!r}"
        )

    @app.not_found
    def no_route(exc: Exception) -> Response[str]:
        event = app.current_event
        method, path = _printable(event.http_method), _printable(event.path.rstrip("/") or "/")
        allowed = rules.methods_of(event.path.rstrip("/"))
        # A path the resolver could not read (a segment it does not match) is no route, whatever the method.
        if allowed and event.http_method.upper() not in allowed:
            return _error(
                HTTPStatus.METHOD_NOT_ALLOWED,
                "method_not_allowed",
                f"{path} answers {', '.join(allowed)}, not {method}",
                headers={"Allow": ", ".join(allowed)},
            )
        return _error(HTTPStatus.NOT_FOUND, "not_found", f"no route {method} {path}")

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

    @app.exception_handler(EmbeddingModelMismatchError)
    def model_mismatch(exc: EmbeddingModelMismatchError) -> Response[str]:
        # The caller cannot fix this: the stack's functions and its database disagree on the model.
        logger.error("embedding model mismatch", extra={"reason": str(exc)})
        return _error(HTTPStatus.SERVICE_UNAVAILABLE, "embedding_model_mismatch", str(exc))

    @app.exception_handler(RerankUnavailableError)
    def rerank_unavailable(exc: RerankUnavailableError) -> Response[str]:
        return _error(HTTPStatus.BAD_REQUEST, "rerank_unavailable", f"{exc}; search without rerank")

    @app.exception_handler(RerankError)
    def rerank_failed(exc: RerankError) -> Response[str]:
        logger.error("rerank failed", extra={"reason": str(exc), "transient": exc.transient})
        if exc.transient:
            return _error(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "rerank_throttled",
                "the rerank model is briefly unavailable; retry after the Retry-After seconds, or search without rerank",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        return _error(
            HTTPStatus.BAD_GATEWAY, "rerank_failed", "the rerank model failed; search without rerank"
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


def _media_type_error(content_type: str) -> str | None:
    """Why a body with this Content-Type is refused, or None when it is UTF-8 JSON."""
    media_type, *parameters = (part.strip().lower() for part in content_type.split(";"))
    if not media_type:
        return "a body needs Content-Type: application/json"
    if media_type != "application/json" and not media_type.endswith("+json"):
        return f"send the body as application/json, not {_printable(media_type)[:100]}"
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            return "send the body as application/json in UTF-8 (charset=utf-8)"
    return None


def screen(event: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Refuse what must not reach the resolver: oversized, non-JSON, undecodable or unbounded bodies.

    Returns (a proxy response to send as is, or None; the event with its body decoded to text). A body is
    screened whatever the method, so no route ever sees one it could fail on.
    """
    raw = event.get("body")
    if raw is None or raw == "":
        return None, event
    if not isinstance(raw, str):
        return _malformed("the request body is not text"), event
    if len(raw) > MAX_BODY_BYTES * 4 // 3 + 4:  # cheap bound before encoding anything
        return _too_large(), event
    refused_type = _media_type_error(_header(event, "content-type"))
    if refused_type is not None:
        return _proxy_error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", refused_type), event
    if event.get("isBase64Encoded"):
        try:
            data = base64.b64decode(raw, validate=True)
        except binascii.Error:
            return _malformed("the request body is marked base64 but is not valid base64"), event
    else:
        # Lone surrogates can only come from a \u escape in the event JSON: kept here, refused as not UTF-8.
        data = raw.encode("utf-8", "surrogatepass")
    if len(data) > MAX_BODY_BYTES:
        return _too_large(), event
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _malformed(f"the request body is not UTF-8 (byte {exc.start})"), event
    try:
        parse_json(text)
    except MalformedJsonError as exc:
        return _malformed(f"the request body is not JSON this API reads: {exc.msg}"), event
    return None, _as_plain_json(event, text)


def _as_plain_json(event: dict[str, Any], text: str) -> dict[str, Any]:
    """The event with its body as text and its media type as the resolver spells it (`application/json`,
    lowercase, no suffix type): the resolver refuses any other spelling of what was already accepted."""
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    multi = {k: v for k, v in (event.get("multiValueHeaders") or {}).items() if k.lower() != "content-type"}
    return {
        **event,
        "headers": {**headers, "Content-Type": content_types.APPLICATION_JSON},
        "multiValueHeaders": {**multi, "Content-Type": [content_types.APPLICATION_JSON]},
        "body": text,
        "isBase64Encoded": False,
    }


def _malformed(message: str) -> dict[str, Any]:
    return _proxy_error(HTTPStatus.BAD_REQUEST, "malformed_body", message)


def _too_large() -> dict[str, Any]:
    return _proxy_error(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        "body_too_large",
        f"the request body is larger than {MAX_BODY_BYTES} bytes",
    )


def handle(
    app: APIGatewayRestResolver,
    event: dict[str, Any],
    context: Any,
    timings: timing.RequestTimings | None = None,
) -> dict[str, Any]:
    """Screen the raw request, then route it; every answer says where its time went (`Server-Timing`:
    query embedding, SQL, the handler; `knowledge.queries.timing`), also left in `timings` when given."""
    with timing.measuring(timings) as measured:
        refusal, event = screen(event)
        response = refusal if refusal is not None else app.resolve(event, context)
    return _with_header(response, timing.SERVER_TIMING_HEADER, measured.server_timing())


def _with_header(response: dict[str, Any], name: str, value: str) -> dict[str, Any]:
    if "multiValueHeaders" in response or "headers" not in response:
        multi = dict(response.get("multiValueHeaders") or {})
        multi[name] = [value]
        return {**response, "multiValueHeaders": multi}
    return {**response, "headers": {**(response.get("headers") or {}), name: value}}


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
    document = _without_unused_components(_exact_bounds(json.loads(schema)))
    # Stable bytes for the committed file: sorted keys, one trailing newline.
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_BIGINT_MAX = 2**63 - 1


def _exact_bounds(node: Any) -> Any:
    """Integer bounds as the models state them: the resolver's parameter schema stores them as floats.

    A float holds every bound here exactly except bigint's maximum, which it rounds up to 2**63.
    """
    if isinstance(node, list):
        return [_exact_bounds(item) for item in node]
    if not isinstance(node, dict):
        return node
    fixed = {key: _exact_bounds(value) for key, value in node.items()}
    for key in _BOUNDS:
        value = fixed.get(key)
        if isinstance(value, float) and value.is_integer():
            fixed[key] = _BIGINT_MAX if value == float(_BIGINT_MAX) else int(value)
    return fixed


def _without_unused_components(document: dict[str, Any]) -> dict[str, Any]:
    """Drop the resolver's own error schemas, which no response uses (every error is an ApiError)."""
    schemas = document.get("components", {}).get("schemas", {})
    used: set[str] = set()
    pending = [{k: v for k, v in document.items() if k != "components"}]
    while pending:
        text = json.dumps(pending.pop())
        for name in re.findall(r'"#/components/schemas/([^"]+)"', text):
            if name not in used:
                used.add(name)
                pending.append(schemas.get(name, {}))
    document["components"]["schemas"] = {k: v for k, v in schemas.items() if k in used}
    return document
