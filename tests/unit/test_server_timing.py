"""Where a request's time went: the spans of `knowledge.queries.timing` and the API's `Server-Timing` header.

The clock is a fake the fakes advance, so the assertions are about which span time lands in, never about
how long anything took.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from knowledge.errors import UnknownWorldError
from knowledge.queries import api, timing
from knowledge.queries.models import SearchResponse
from knowledge.reranking import SentenceReranker
from local_runtime.api_gateway import proxy_event


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += ms / 1000.0


class SlowEmbedder:
    model_id = "fake"
    dimension = 3

    def __init__(self, clock: Clock, ms: float) -> None:
        self.clock, self.ms = clock, ms

    def embed(self, texts: Any) -> list[list[float]]:
        self.clock.advance(self.ms)
        return [[1.0, 0.0, 0.0] for _ in texts]

    def count_tokens(self, text: str) -> int:
        self.clock.advance(1.0)
        return len(text.split())


class SlowDatabase:
    """Checkout and round trips cost `ms` each side of the work done with the connection."""

    def __init__(self, clock: Clock, ms: float) -> None:
        self.clock, self.ms = clock, ms

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        self.clock.advance(self.ms / 2)
        yield object()
        self.clock.advance(self.ms / 2)

    def read[T](self, fn: Callable[[Any], T]) -> T:
        with self.transaction() as conn:
            return fn(conn)


class Services:
    def __init__(self, clock: Clock) -> None:
        self.database = SlowDatabase(clock, ms=4.0)
        self.embedder = SlowEmbedder(clock, ms=30.0)
        self.reranker = SentenceReranker(self.embedder)


def test_a_span_counts_its_own_time_without_the_spans_nested_in_it() -> None:
    clock = Clock()
    timings = timing.RequestTimings(clock)
    with timing.measuring(timings):
        clock.advance(1)
        with timing.span(timing.SQL):
            clock.advance(2)
            with timing.span(timing.EMBED):
                clock.advance(10)
            clock.advance(3)
        with timing.span(timing.SQL):
            clock.advance(5)
    clock.advance(100)  # after the request: not the handler's
    assert timings.ms(timing.EMBED) == pytest.approx(10)
    assert timings.ms(timing.SQL) == pytest.approx(10)
    assert timings.handler_ms == pytest.approx(21)


def test_spans_outside_a_measured_request_record_nothing_and_still_run() -> None:
    ran = []
    with timing.span(timing.SQL):
        ran.append(True)
    assert ran == [True]


def test_the_header_always_names_embed_sql_and_handler_and_parses_back() -> None:
    value = timing.RequestTimings(Clock()).server_timing()
    assert [part.split(";")[0] for part in value.split(", ")] == ["embed", "tokens", "sql", "handler"]
    assert timing.parse_server_timing(value) == {"embed": 0.0, "tokens": 0.0, "sql": 0.0, "handler": 0.0}
    for bad in ("embed", "embed;dur=", "embed;dur=-1", "embed;dur=1;desc=x", "a;dur=1,,b;dur=2"):
        with pytest.raises(ValueError, match="not a Server-Timing metric"):
            timing.parse_server_timing(bad)


def _headers(response: dict[str, Any]) -> dict[str, str]:
    return {k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()} | dict(
        response.get("headers") or {}
    )


def test_a_search_reports_its_embedding_apart_from_its_sql(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()

    def search(conn: Any, embedder: Any, request: Any, *, reranker: Any = None) -> SearchResponse:
        embedder.embed([request.query])  # inside the database's read, as the real search does
        embedder.count_tokens("a context pack counts its chunks' tokens")
        return SearchResponse(world_id=request.world_id, hybrid=False, hits=[])

    monkeypatch.setattr(api.search_queries, "search", search)
    app = api.build_app(Services(clock))
    body = json.dumps({"query": "who rules", "world_id": "emberfall"})
    timings = timing.RequestTimings(clock)
    response = api.handle(
        app,
        proxy_event("POST", "/search", body=body, headers={"Content-Type": "application/json"}),
        None,
        timings,
    )
    assert response["statusCode"] == 200
    reported = timing.parse_server_timing(_headers(response)[timing.SERVER_TIMING_HEADER])
    assert reported["embed"] == pytest.approx(30.0, abs=0.01)
    assert reported["tokens"] == pytest.approx(1.0, abs=0.01)
    assert reported["sql"] == pytest.approx(4.0, abs=0.01)
    assert reported["handler"] >= reported["embed"] + reported["tokens"] + reported["sql"]
    assert timings.ms(timing.EMBED) == pytest.approx(30.0)


def test_errors_and_refusals_before_routing_carry_the_header_too(monkeypatch: pytest.MonkeyPatch) -> None:
    def unknown(conn: Any, request: Any) -> Any:
        raise UnknownWorldError(request.world_id)

    monkeypatch.setattr(api.timeline_queries, "events_timeline", unknown)
    app = api.build_app(Services(Clock()))
    answers = [
        api.handle(app, proxy_event("GET", "/worlds/nowhere/events"), None),  # 404 from the domain
        api.handle(app, proxy_event("GET", "/no/such/route"), None),  # 404 from the resolver
        api.handle(  # 415 from the screen, before routing
            app, proxy_event("POST", "/search", body="{}", headers={"Content-Type": "text/plain"}), None
        ),
    ]
    assert [a["statusCode"] for a in answers] == [404, 404, 415]
    for answer in answers:
        assert set(timing.parse_server_timing(_headers(answer)[timing.SERVER_TIMING_HEADER])) == {
            "embed",
            "tokens",
            "sql",
            "handler",
        }
