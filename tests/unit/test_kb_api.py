"""The knowledge API's routes and error mapping, with the query domain replaced at its module boundary."""

from __future__ import annotations

import base64
import json
import re
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
    RerankError,
    RerankUnavailableError,
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
from knowledge.queries.request_body import (
    MAX_INTEGER_DIGITS,
    MAX_NESTING,
    MalformedJsonError,
    nesting_depth,
    parse_json,
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
        self.reranker: Any = object()


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

    def search(conn: Any, embedder: Any, request: Any, *, reranker: Any = None) -> SearchResponse:
        check("search", request)
        if request.rerank and request.query == "rerank fails":
            raise reranker.error
        return SearchResponse(
            world_id=request.world_id, hybrid=request.hybrid, reranked=request.rerank, hits=[]
        )

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
JSON = {"Content-Type": "application/json"}


def test_every_route_answers_200_with_its_model(services: FakeServices, calls: list[Any]) -> None:
    assert call(services, "POST", "/search", {**SEARCH, "k": 3, "hybrid": True})[2] == {
        "world_id": "emberfall",
        "hybrid": True,
        "reranked": False,
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
    status, _, error = call(services, "POST", "/search", "{not json")
    assert (status, error["code"], error["details"]) == (400, "malformed_body", [])
    assert error["message"].startswith("the request body is not JSON this API reads: Expecting property name")
    status, _, error = call(
        services, "POST", "/search", json.dumps({**SEARCH, "query": "x" * api.MAX_BODY_BYTES})
    )
    assert (status, error["code"]) == (413, "body_too_large")
    assert call(services, "POST", "/search", b"\xff\xfe{")[0] == 400  # base64 of bytes that are not UTF-8
    status, _, error = call(services, "POST", "/search", "query=x", headers={"content-type": "text/plain"})
    assert (status, error["code"]) == (415, "unsupported_media_type")
    event = proxy_event("POST", "/search", body="not base64!", headers=JSON)
    event["isBase64Encoded"] = True
    assert api.handle(api.build_app(services), event, None)["statusCode"] == 400
    encoded = proxy_event("POST", "/search", body=json.dumps(SEARCH).encode(), headers=JSON)
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


def test_openapi_describes_every_success_error_and_parameter_rule() -> None:
    schema = json.loads(api.openapi_json())
    operations = {(m.upper(), p): op for p, item in schema["paths"].items() for m, op in item.items()}
    assert set(operations) >= {
        ("POST", "/search"),
        ("POST", "/context"),
        ("GET", "/worlds/{world_id}/concepts/{name}/history"),
        ("GET", "/concepts/{concept_id}/relationships"),
        ("GET", "/worlds/{world_id}/events"),
    }
    success = {
        ("POST", "/search"): "SearchResponse",
        ("POST", "/context"): "ContextPack",
        ("GET", "/worlds/{world_id}/concepts/{name}/history"): "ConceptHistory",
        ("GET", "/concepts/{concept_id}/relationships"): "ConceptGraph",
        ("GET", "/worlds/{world_id}/events"): "Timeline",
    }
    for key, op in operations.items():
        responses = op["responses"]
        assert {"200", "400", "404", "405", "413", "415", "422", "500", "503"} <= set(responses), key
        for status, response in responses.items():
            assert response["content"]["application/json"]["schema"]["$ref"], (key, status)
            # 403 is API Gateway's own answer, never the function's; 201 is PUT /worlds' created world
            if status not in ("200", "201", "403"):
                assert response["content"]["application/json"]["schema"]["$ref"].endswith("/ApiError")
        assert responses["403"]["content"]["application/json"]["schema"]["$ref"].endswith("/GatewayError")
        assert "Retry-After" in responses["503"]["headers"] and "Allow" in responses["405"]["headers"]
    for key, model in success.items():
        assert operations[key]["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{model}"
        }
    assert "502" in operations["POST", "/search"]["responses"]

    def parameter(key: tuple[str, str], name: str) -> dict[str, Any]:
        found = [p["schema"] for p in operations[key].get("parameters", []) if p["name"] == name]
        assert len(found) == 1, (key, name)
        return dict(found[0])

    history, graph = (
        ("GET", "/worlds/{world_id}/concepts/{name}/history"),
        ("GET", "/concepts/{concept_id}/relationships"),
    )
    timeline = ("GET", "/worlds/{world_id}/events")
    assert parameter(history, "world_id")["pattern"] == "^[a-z0-9][a-z0-9-]{0,62}$"
    assert (parameter(history, "name")["minLength"], parameter(history, "name")["maxLength"]) == (1, 200)
    assert (parameter(graph, "concept_id")["minimum"], parameter(graph, "concept_id")["maximum"]) == (
        1,
        2**63 - 1,
    )
    assert (parameter(graph, "depth")["minimum"], parameter(graph, "depth")["maximum"]) == (1, 3)
    assert parameter(graph, "world_id")["pattern"] == "^[a-z0-9][a-z0-9-]{0,62}$"
    assert parameter(graph, "type")["anyOf"][0]["pattern"] == "^[a-z][a-z0-9_]{0,62}$"
    assert parameter(graph, "direction")["enum"] == ["out", "in", "both"]
    assert (parameter(timeline, "limit")["minimum"], parameter(timeline, "limit")["maximum"]) == (1, 200)
    assert parameter(timeline, "cursor")["anyOf"][0]["maxLength"] == 800
    search = schema["components"]["schemas"]["SearchRequest"]["properties"]
    assert (search["k"]["minimum"], search["k"]["maximum"], search["query"]["maxLength"]) == (1, 50, 2000)
    assert schema["components"]["schemas"]["SearchRequest"]["additionalProperties"] is False
    assert schema["security"] == [{"sigv4": []}]
    assert "HTTPValidationError" not in schema["components"]["schemas"]  # no response uses it


# --- hostile clients: every one gets a 4xx with a clear reason, and nothing reaches the domain -------------

GOOD = json.dumps(SEARCH)


def _send(services: FakeServices, event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, Any]]:
    response = api.handle(api.build_app(services), event, None)
    headers = {k: v[0] for k, v in (response.get("multiValueHeaders") or {}).items()}
    headers |= response.get("headers") or {}
    return response["statusCode"], headers, json.loads(response["body"])


def _nested(depth: int) -> str:
    return json.dumps({**SEARCH, "filters": {"metadata": {"x": 1}}}).replace(
        '{"x": 1}', "[" * depth + "]" * depth
    )


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        ("[" * 1480 + "]" * 1480, 400, "malformed_body", "nests 1480 levels"),
        ('{"query":' * 1480 + "1" + "}" * 1480, 400, "malformed_body", "nests 1480 levels"),
        (_nested(5000), 400, "malformed_body", "levels deep"),
        (GOOD[:-1] + ', "k": ' + "7" * 4301 + "}", 400, "malformed_body", "more than 20 digits"),
        (GOOD[:-1] + ', "k": ' + "7" * 21 + "}", 400, "malformed_body", "more than 20 digits"),
        (GOOD[:-1] + ', "k": -' + "7" * 4400 + "}", 400, "malformed_body", "more than 20 digits"),
        (GOOD[:-1] + ', "k": NaN}', 400, "malformed_body", "NaN is not a JSON number"),
        (GOOD[:-1] + ', "k": Infinity}', 400, "malformed_body", "Infinity is not a JSON number"),
        (GOOD[:-1] + ', "k": -Infinity}', 400, "malformed_body", "Infinity is not a JSON number"),
        (GOOD[:-1] + ', "k": 1e400}', 400, "malformed_body", "out of the range"),
        (
            '{"query": "a\x00b", "world_id": "emberfall"}'.replace("\\x00", "\x00"),
            400,
            "malformed_body",
            "control character",
        ),
        ('{"query": "a\\u0000b", "world_id": "emberfall"}', 422, "validation_error", "NUL"),
        ('{"query": "a\\ud800b", "world_id": "emberfall"}', 422, "validation_error", "unicode"),
        ('{"query": "x", "world_id": "emberfall", "\\ud800": 1}', 422, "validation_error", "unicode"),
        ('{"query": "x", "world_id": "emberfall", "\\u0000": 1}', 422, "validation_error", "Extra inputs"),
        ('{"query": "a\ud800b", "world_id": "emberfall"}', 400, "malformed_body", "not UTF-8"),
        ("{not json", 400, "malformed_body", "line 1, column 2"),
        ("null", 422, "validation_error", "Field required"),
    ],
)
def test_hostile_bodies_are_4xx_and_say_why(
    services: FakeServices, calls: list[Any], body: str, status: int, code: str, says: str
) -> None:
    got, _, error = _send(services, proxy_event("POST", "/search", body=body, headers=JSON))
    assert (got, error["code"]) == (status, code), error
    assert says in error["message"] + json.dumps(error["details"], ensure_ascii=False)
    assert calls == [] and services.database.opened == 0
    json.dumps(error, ensure_ascii=False).encode("utf-8")  # the answer itself is valid UTF-8


def test_the_body_limit_is_256_kib_of_bytes_after_base64(services: FakeServices, calls: list[Any]) -> None:
    limit = api.MAX_BODY_BYTES
    assert limit == 256 * 1024
    at_limit = GOOD + " " * (limit - len(GOOD))
    assert _send(services, proxy_event("POST", "/search", body=at_limit, headers=JSON))[0] == 200
    status, _, error = _send(services, proxy_event("POST", "/search", body=at_limit + " ", headers=JSON))
    assert (status, error["code"]) == (413, "body_too_large") and str(limit) in error["message"]
    # Characters are not bytes: 90,000 three-byte characters are 270,000 bytes.
    wide = json.dumps({**SEARCH, "query": "€" * 90_000}, ensure_ascii=False)
    assert len(wide) < limit < len(wide.encode())
    assert _send(services, proxy_event("POST", "/search", body=wide, headers=JSON))[0] == 413
    # Base64 counts what it decodes to.
    assert _send(services, proxy_event("POST", "/search", body=at_limit.encode(), headers=JSON))[0] == 200
    over = proxy_event("POST", "/search", body=(at_limit + " ").encode(), headers=JSON)
    assert _send(services, over)[0] == 413
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 415),
        ({"Content-Type": ""}, 415),
        ({"content-type": "text/plain"}, 415),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
        ({"Content-Type": "application/json; charset=latin-1"}, 415),
        ({"Content-Type": "application/json; charset=utf-8"}, 200),
        ({"CONTENT-TYPE": "Application/JSON"}, 200),
        ({"Content-Type": "application/vnd.storyteller+json"}, 200),
    ],
)
def test_bodies_must_say_they_are_utf8_json(
    services: FakeServices, calls: list[Any], headers: dict[str, str], status: int
) -> None:
    got, _, answer = _send(services, proxy_event("POST", "/search", body=GOOD, headers=headers))
    assert got == status, answer
    if status == 415:
        assert answer["code"] == "unsupported_media_type" and "application/json" in answer["message"]
        assert calls == []


def test_base64_bodies_are_decoded_or_refused(services: FakeServices, calls: list[Any]) -> None:
    encoded = proxy_event("POST", "/search", body=GOOD.encode(), headers=JSON)
    assert encoded["isBase64Encoded"]
    assert _send(services, encoded)[0] == 200
    not_base64 = {**proxy_event("POST", "/search", body="{}", headers=JSON), "isBase64Encoded": True}
    not_base64["body"] = "not base64!"
    status, _, error = _send(services, not_base64)
    assert (status, error["code"]) == (400, "malformed_body") and "base64" in error["message"]
    for raw, says in [(b"\xff\xfe{", "not UTF-8 (byte 0)"), (b'{"query": "\xc3"}', "not UTF-8 (byte 11)")]:
        status, _, error = _send(services, proxy_event("POST", "/search", body=raw, headers=JSON))
        assert (status, error["code"], says in error["message"]) == (400, "malformed_body", True)
    deep = proxy_event("POST", "/search", body=("[" * 2000 + "]" * 2000).encode(), headers=JSON)
    assert _send(services, deep)[0] == 400
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/search", "POST"),
        ("DELETE", "/search", "POST"),
        ("PUT", "/context", "POST"),
        ("OPTIONS", "/search", "POST"),
        ("POST", "/worlds/emberfall/events", "GET"),
        ("HEAD", "/worlds/emberfall/events", "GET"),
        ("PATCH", "/concepts/7/relationships", "GET"),
        ("GET", "/worlds/emberfall", "PUT"),
        ("POST", "/worlds/emberfall/concepts/Queen%20Ysolde/history", "GET"),
    ],
)
def test_a_known_path_with_another_method_is_405_with_allow(
    services: FakeServices, calls: list[Any], method: str, path: str, allow: str
) -> None:
    status, headers, error = _send(services, proxy_event(method, path, headers=JSON))
    assert (status, error["code"], headers["Allow"]) == (405, "method_not_allowed", allow)
    assert method in error["message"] and calls == []


@pytest.mark.parametrize(
    "path", ["/", "/nowhere", "/search/more", "/worlds/emberfall/x", "/worlds/emberfall/concepts/x", "/%00"]
)
def test_an_unknown_path_is_404_whatever_the_method(services: FakeServices, path: str) -> None:
    for method in ("GET", "POST", "DELETE"):
        status, headers, error = _send(services, proxy_event(method, path, headers=JSON))
        assert (status, error["code"]) == (404, "not_found") and "Allow" not in headers


def test_hostile_query_and_path_values_are_422(services: FakeServices, calls: list[Any]) -> None:
    huge = "9" * 5000
    for path, query, where in [
        ("/concepts/7/relationships", {"world_id": "emberfall", "depth": huge}, ["query", "depth"]),
        (f"/concepts/{huge}/relationships", {"world_id": "emberfall"}, ["path", "concept_id"]),
        ("/worlds/emberfall/events", {"limit": huge}, ["query", "limit"]),
        ("/worlds/emberfall/events", {"cursor": "\ud800"}, ["query", "cursor"]),
        ("/concepts/7/relationships", {"world_id": "\ud800"}, ["query", "world_id"]),
        ("/worlds/emberfall/concepts/%00/history", None, ["path", "name"]),
    ]:
        status, _, error = _send(services, proxy_event("GET", path, query=query))
        assert (status, error["code"]) == (422, "validation_error"), (path, error)
        assert where in [d["loc"] for d in error["details"]]
    assert calls == []


@FUZZ
@given(depth=st.integers(0, 3000), wrap=st.sampled_from(["[", '{"a":']))
def test_any_nesting_is_answered_without_a_5xx(
    services: FakeServices, calls: list[Any], depth: int, wrap: str
) -> None:
    close = "]" if wrap == "[" else "}"
    inner = wrap * depth + "1" + close * depth
    status, _, _ = _send(services, proxy_event("POST", "/search", body=inner, headers=JSON))
    assert status == (400 if depth > 32 else 422)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/worlds/emberfall/events", {"limt": "5"}),
        ("/concepts/7/relationships", {"world_id": "emberfall", "x-unknown": "42"}),
        ("/worlds/emberfall/concepts/Queen%20Ysolde/history", {"world_id": "emberfall"}),
        ("/worlds/emberfall/events", {"\ud800": "1"}),
    ],
)
def test_unknown_query_parameters_are_422_not_ignored(
    services: FakeServices, calls: list[Any], path: str, query: dict[str, str]
) -> None:
    status, _, error = _send(services, proxy_event("GET", path, query=query))
    assert (status, error["code"]) == (422, "validation_error")
    assert {d["type"] for d in error["details"]} == {"extra_forbidden"}
    assert all(d["loc"][0] == "query" for d in error["details"]) and calls == []
    json.dumps(error, ensure_ascii=False).encode("utf-8")


def test_the_strict_parser_counts_only_brackets_outside_strings() -> None:
    assert nesting_depth('{"a": "[[[[", "b": [1, {"c": "]]"}]}') == 3
    assert nesting_depth('["\\"[[", []]') == 2  # an escaped quote does not end the string
    # Unterminated strings full of escaped quotes: linear patterns still answer (quadratic ones would not).
    assert nesting_depth('"' + '\\"' * 100_000) == 0
    assert nesting_depth("[" * 100_000) == 100_000
    assert parse_json(b'{"k": 1}') == {"k": 1}
    cases: list[tuple[str | bytes, str]] = [
        (b'{"k": "\xff"}', "not UTF-8 (byte 7)"),
        ("[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1), "nests 33 levels"),
        ('{"k": ' + "9" * (MAX_INTEGER_DIGITS + 1) + "}", "more than 20 digits"),
        ("-1e999", "out of the range"),
        ('{"k": 1', "line 1, column 8"),
    ]
    for bad, says in cases:
        with pytest.raises(MalformedJsonError, match=re.escape(says)):
            parse_json(bad)
    assert parse_json("[" * MAX_NESTING + "]" * MAX_NESTING) is not None
    assert parse_json("-" + "9" * MAX_INTEGER_DIGITS) == -int("9" * MAX_INTEGER_DIGITS)


@pytest.mark.filterwarnings("ignore:Received multipart/form-data")
def test_the_resolver_alone_is_as_strict_as_the_screen(services: FakeServices, calls: list[Any]) -> None:
    """Behind `screen` or not (a future caller of `app.resolve`), hostile bodies stay 4xx."""
    app = api.build_app(services)
    no_context: Any = None
    for body, headers, status in [
        (GOOD[:-1] + ', "k": NaN}', JSON, 400),
        ("[" * 1480 + "]" * 1480, JSON, 400),
        (GOOD[:-1] + ', "k": ' + "7" * 4301 + "}", JSON, 400),
        (GOOD, {"Content-Type": "text/plain"}, 415),
        (GOOD, {"Content-Type": "multipart/form-data; boundary=x"}, 422),
    ]:
        response = app.resolve(proxy_event("POST", "/search", body=body, headers=headers), no_context)
        assert response["statusCode"] == status, (body[:40], response["body"])
    assert calls == []


class _FailingReranker:
    def __init__(self, error: Exception) -> None:
        self.error = error


class _NoRerankerServices:
    def __init__(self) -> None:
        self.database = FakeDatabase()
        self.embedder: Any = object()

    @property
    def reranker(self) -> Any:
        raise RerankUnavailableError("this deployment has no rerank model (stack parameter RerankModelId)")


def test_rerank_is_refused_with_400_where_no_rerank_model_is_configured(calls: list[Any]) -> None:
    services = _NoRerankerServices()
    status, _, error = call(services, "POST", "/search", {**SEARCH, "rerank": True})
    assert status == 400 and error["code"] == "rerank_unavailable" and "RerankModelId" in error["message"]
    # Without rerank the same deployment searches as before: the reranker is built only when asked for.
    status, _, found = call(services, "POST", "/search", SEARCH)
    assert status == 200 and found["reranked"] is False


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (RerankError("Bedrock rerank failed: ThrottlingException", transient=True), 503, "rerank_throttled"),
        (RerankError("Bedrock rerank failed: ValidationException"), 502, "rerank_failed"),
    ],
)
def test_a_failing_rerank_model_answers_503_or_502_never_500(
    services: FakeServices, calls: list[Any], error: RerankError, status: int, code: str
) -> None:
    services.reranker = _FailingReranker(error)
    answered, headers, body = call(
        services, "POST", "/search", {**SEARCH, "query": "rerank fails", "rerank": True}
    )
    assert (answered, body["code"]) == (status, code)
    assert ("Retry-After" in headers) is (status == 503)


def test_a_reranked_search_says_so(services: FakeServices, calls: list[Any]) -> None:
    status, _, found = call(services, "POST", "/search", {**SEARCH, "rerank": True})
    assert status == 200 and found["reranked"] is True
