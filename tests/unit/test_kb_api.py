"""The knowledge API's routes and error mapping, with the query domain replaced at its module boundary."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knowledge.errors import (
    ConceptNotFoundError,
    DatabaseUnavailableError,
    EmbeddingError,
    EmbeddingThrottledError,
    UnknownWorldError,
)
from knowledge.queries import api
from knowledge.queries.models import (
    ConceptGraph,
    ConceptHistory,
    ConceptNode,
    ContextPack,
    SearchResponse,
    Timeline,
)
from local_runtime.api_gateway import proxy_event

NOW = datetime(2025, 3, 1, tzinfo=UTC)


class FakeDatabase:
    def __init__(self) -> None:
        self.fail: Exception | None = None
        self.opened = 0

    @contextmanager
    def transaction(self) -> Any:
        if self.fail is not None:
            raise self.fail
        self.opened += 1
        yield object()

    def read[T](self, fn: Callable[[Any], T]) -> T:
        with self.transaction() as conn:
            return fn(conn)


class FakeServices:
    def __init__(self) -> None:
        self.database = FakeDatabase()
        self.embedder: Any = object()


@pytest.fixture
def services() -> FakeServices:
    return FakeServices()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Domain functions answer an empty world 'emberfall'; any other world is unknown."""
    seen: list[tuple[str, Any]] = []

    def check(name: str, request: Any) -> None:
        seen.append((name, request))
        if request.world_id != "emberfall":
            raise UnknownWorldError(request.world_id)

    def search(conn: Any, embedder: Any, request: Any) -> SearchResponse:
        check("search", request)
        return SearchResponse(world_id=request.world_id, hybrid=request.hybrid, hits=[])

    def context(conn: Any, embedder: Any, request: Any) -> ContextPack:
        check("context", request)
        return ContextPack(
            world_id=request.world_id,
            token_budget=request.token_budget,
            tokens_used=0,
            tokenizer="hash",
            chunks=[],
            concepts=[],
            events=[],
            dropped_duplicates=0,
        )

    def history(conn: Any, request: Any) -> ConceptHistory:
        check("history", request)
        if request.name != "Queen Ysolde":
            raise ConceptNotFoundError(request.world_id, request.name)
        return ConceptHistory(
            concept_id=7,
            world_id="emberfall",
            name="Queen Ysolde",
            kind="character",
            current_version=1,
            versions=[],
        )

    def graph(conn: Any, request: Any) -> ConceptGraph:
        check("graph", request)
        if request.concept_id != 7:
            raise ConceptNotFoundError(request.world_id, request.concept_id)
        root = ConceptNode(concept_id=7, name="Queen Ysolde", kind="character", depth=0)
        return ConceptGraph(root=root, nodes=[root], edges=[], truncated=False)

    def timeline(conn: Any, request: Any) -> Timeline:
        check("timeline", request)
        return Timeline(world_id=request.world_id, events=[], next_cursor=None)

    monkeypatch.setattr(api.search_queries, "search", search)
    monkeypatch.setattr(api.context_queries, "build_context_pack", context)
    monkeypatch.setattr(api.concept_queries, "concept_history", history)
    monkeypatch.setattr(api.concept_queries, "concept_graph", graph)
    monkeypatch.setattr(api.timeline_queries, "events_timeline", timeline)
    return seen


def call(
    services: Any, method: str, path: str, body: Any = None, **kw: Any
) -> tuple[int, dict[str, Any], Any]:
    text = body if body is None or isinstance(body, str | bytes) else json.dumps(body)
    headers = kw.pop("headers", {"Content-Type": "application/json"})
    response = api.handle(
        api.build_app(services), proxy_event(method, path, body=text, headers=headers, **kw), None
    )
    headers_out = {
        k: v[0] if isinstance(v, list) else v for k, v in (response.get("multiValueHeaders") or {}).items()
    }
    headers_out |= response.get("headers") or {}
    return response["statusCode"], headers_out, json.loads(response["body"])


SEARCH = {"query": "who rules the court", "world_id": "emberfall"}


def test_every_route_answers_200_with_its_model(services: FakeServices, calls: list[Any]) -> None:
    assert call(services, "POST", "/search", {**SEARCH, "k": 3, "hybrid": True})[2] == {
        "world_id": "emberfall",
        "hybrid": True,
        "hits": [],
    }
    status, _, pack = call(services, "POST", "/context", {"world_id": "emberfall", "situation": "a feast"})
    assert status == 200 and pack["token_budget"] == 1500
    status, _, history = call(services, "GET", "/worlds/emberfall/concepts/Queen%20Ysolde/history")
    assert status == 200 and history["name"] == "Queen Ysolde"
    status, _, graph = call(
        services,
        "GET",
        "/concepts/7/relationships",
        query={"world_id": "emberfall", "depth": "2", "type": "ally_of"},
    )
    assert status == 200 and graph["root"]["concept_id"] == 7
    status, _, timeline = call(
        services, "GET", "/worlds/emberfall/events", query={"since": "2025-03-01T00:00:00Z", "limit": "5"}
    )
    assert status == 200 and timeline == {"world_id": "emberfall", "events": [], "next_cursor": None}
    requests = dict(calls)
    assert requests["graph"].depth == 2 and requests["graph"].type == "ally_of"
    assert requests["timeline"].since == NOW and requests["timeline"].limit == 5
    assert requests["history"].name == "Queen Ysolde"  # percent-decoded


@pytest.mark.parametrize(
    ("method", "path", "body", "query", "code"),
    [
        ("POST", "/search", {**SEARCH, "world_id": "tidewatch"}, None, "unknown_world"),
        ("POST", "/context", {"world_id": "tidewatch", "situation": "x"}, None, "unknown_world"),
        ("GET", "/worlds/tidewatch/concepts/X/history", None, None, "unknown_world"),
        ("GET", "/worlds/emberfall/concepts/Nobody/history", None, None, "concept_not_found"),
        ("GET", "/concepts/8/relationships", None, {"world_id": "emberfall"}, "concept_not_found"),
        ("GET", "/worlds/tidewatch/events", None, None, "unknown_world"),
        ("GET", "/nowhere", None, None, "not_found"),
        ("GET", "/search", None, None, "not_found"),
    ],
)
def test_unknown_worlds_concepts_and_routes_are_404(
    services: FakeServices, calls: list[Any], method: str, path: str, body: Any, query: Any, code: str
) -> None:
    status, _, error = call(services, method, path, body, query=query)
    assert (status, error["code"]) == (404, code)
    assert error["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "query", "where"),
    [
        ("POST", "/search", {**SEARCH, "k": 0}, None, ["body", "k"]),
        ("POST", "/search", {**SEARCH, "k": "ten"}, None, ["body", "k"]),
        ("POST", "/search", {**SEARCH, "filter": {}}, None, ["body", "filter"]),
        ("POST", "/search", {**SEARCH, "world_id": "'; DROP TABLE worlds;--"}, None, ["body", "world_id"]),
        ("POST", "/search", {**SEARCH, "query": "a\x00b"}, None, ["body", "query"]),
        ("POST", "/search", [1, 2], None, ["body"]),
        ("POST", "/context", {"world_id": "emberfall", "situation": "x", "token_budget": 10**9}, None, None),
        ("GET", "/worlds/Bad%20World/concepts/X/history", None, None, ["path", "world_id"]),
        ("GET", "/concepts/x/relationships", None, {"world_id": "emberfall"}, ["path", "concept_id"]),
        ("GET", "/concepts/7/relationships", None, None, ["query", "world_id"]),
        (
            "GET",
            "/concepts/7/relationships",
            None,
            {"world_id": "emberfall", "depth": "4"},
            ["query", "depth"],
        ),
        (
            "GET",
            "/concepts/7/relationships",
            None,
            {"world_id": "emberfall", "type": "Ally Of"},
            ["query", "type"],
        ),
        ("GET", "/worlds/emberfall/events", None, {"since": "2025-03-01T00:00:00"}, ["query", "since"]),
        ("GET", "/worlds/emberfall/events", None, {"cursor": "not-a-cursor"}, ["query", "cursor"]),
        ("GET", "/worlds/emberfall/events", None, {"limit": "201"}, ["query", "limit"]),
    ],
)
def test_invalid_input_is_422_with_where_and_without_echoing_it(
    services: FakeServices, calls: list[Any], method: str, path: str, body: Any, query: Any, where: Any
) -> None:
    status, _, error = call(services, method, path, body, query=query)
    assert (status, error["code"]) == (422, "validation_error")
    if where is not None:
        assert where in [d["loc"][: len(where)] for d in error["details"]]
    assert "DROP TABLE" not in json.dumps(error)
    assert calls == []  # nothing reached the domain


def test_body_problems_are_400_413_415(services: FakeServices, calls: list[Any]) -> None:
    assert call(services, "POST", "/search", "{not json")[0:3:2] == (
        400,
        {"code": "malformed_body", "message": "the request body is not valid JSON", "details": []},
    )
    status, _, error = call(
        services, "POST", "/search", json.dumps({**SEARCH, "query": "x" * api.MAX_BODY_BYTES})
    )
    assert (status, error["code"]) == (413, "body_too_large")
    assert call(services, "POST", "/search", b"\xff\xfe{")[0] == 400  # base64 of bytes that are not UTF-8
    status, _, error = call(services, "POST", "/search", "query=x", headers={"content-type": "text/plain"})
    assert (status, error["code"]) == (415, "unsupported_media_type")
    event = proxy_event("POST", "/search", body="not base64!")
    event["isBase64Encoded"] = True
    assert api.handle(api.build_app(services), event, None)["statusCode"] == 400
    encoded = proxy_event("POST", "/search", body=json.dumps(SEARCH).encode())
    assert encoded["isBase64Encoded"] and base64.b64decode(encoded["body"])
    assert api.handle(api.build_app(services), encoded, None)["statusCode"] == 200


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (DatabaseUnavailableError("connection refused"), 503, "database_unavailable"),
        (EmbeddingThrottledError("slow down"), 503, "embedding_throttled"),
        (EmbeddingError("input too long"), 502, "embedding_failed"),
        (RuntimeError("a bug"), 500, "internal_error"),
    ],
)
def test_dependency_failures_map_to_5xx_and_unavailability_says_when_to_retry(
    services: FakeServices, failure: Exception, status: int, code: str
) -> None:
    services.database.fail = failure
    got, headers, error = call(services, "POST", "/search", SEARCH)
    assert (got, error["code"]) == (status, code)
    assert ("Retry-After" in headers) == (status == 503)
    if status == 503:
        assert headers["Retry-After"] == str(api.RETRY_AFTER_SECONDS)
    assert "a bug" not in error["message"]  # internals stay in the logs


# --- hostile input never makes a 5xx ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
search_like = st.fixed_dictionaries(
    {},
    optional={
        "query": json_values | st.text(max_size=300),
        "world_id": st.sampled_from(["emberfall", "tidewatch", "", "A", "x" * 64]) | json_values,
        "k": st.integers(-5, 100) | json_values,
        "filters": json_values,
        "hybrid": json_values,
        "situation": st.text(max_size=100),
        "token_budget": st.integers(-10, 20_000),
    },
)
segments = st.text(
    st.characters(codec="utf-8", exclude_characters="/?#"), min_size=1, max_size=30
) | st.sampled_from(["emberfall", "..", "%00", "%2F", "%E2%82", "Queen%20Ysolde"])
query_values = st.dictionaries(
    st.sampled_from(["world_id", "depth", "type", "direction", "since", "limit", "cursor", "junk"]),
    st.text(max_size=30) | st.sampled_from(["1", "3", "emberfall", "2025-01-01T00:00:00Z"]),
    max_size=5,
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(route=st.sampled_from(["/search", "/context"]), body=search_like | json_values)
def test_arbitrary_json_bodies_never_5xx(
    services: FakeServices, calls: list[Any], route: str, body: Any
) -> None:
    status, _, answer = call(services, "POST", route, body)
    assert status < 500, answer


@FUZZ
@given(raw=st.binary(max_size=200) | st.text(max_size=200))
def test_arbitrary_bytes_never_5xx(services: FakeServices, calls: list[Any], raw: str | bytes) -> None:
    assert call(services, "POST", "/search", raw)[0] < 500


@FUZZ
@given(
    template=st.sampled_from(
        ["/worlds/{a}/concepts/{b}/history", "/concepts/{a}/relationships", "/worlds/{a}/events", "/{a}/{b}"]
    ),
    a=segments,
    b=segments,
    query=query_values,
)
def test_arbitrary_path_and_query_parameters_never_5xx(
    services: FakeServices, calls: list[Any], template: str, a: str, b: str, query: dict[str, str]
) -> None:
    status, _, answer = call(services, "GET", template.format(a=a, b=b), query=query)
    assert status < 500, answer


def test_openapi_lists_every_route_with_its_error_statuses() -> None:
    schema = json.loads(api.openapi_json())
    operations = {(m.upper(), p): op for p, item in schema["paths"].items() for m, op in item.items()}
    assert set(operations) == {
        ("POST", "/search"),
        ("POST", "/context"),
        ("GET", "/worlds/{world_id}/concepts/{name}/history"),
        ("GET", "/concepts/{concept_id}/relationships"),
        ("GET", "/worlds/{world_id}/events"),
    }
    for op in operations.values():
        assert {"404", "422", "503"} <= set(op["responses"])
    assert {"400", "413", "415"} <= set(operations["POST", "/search"]["responses"])
    assert schema["security"] == [{"sigv4": []}]
