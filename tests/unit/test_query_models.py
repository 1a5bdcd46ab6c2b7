"""Request models of the query API: bounds, hostile input and wrong types are rejected with a ValidationError."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from knowledge.queries.models import (
    MAX_DEPTH,
    MAX_K,
    MAX_TOKEN_BUDGET,
    ConceptHistoryRequest,
    ContextRequest,
    RelationshipsRequest,
    SearchFilters,
    SearchRequest,
    TimelineCursor,
    TimelineRequest,
)

MODELS: list[type[BaseModel]] = [
    SearchRequest,
    ContextRequest,
    ConceptHistoryRequest,
    RelationshipsRequest,
    TimelineRequest,
    SearchFilters,
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["query", "world_id", "k", "filters", "hybrid", "situation", "token_budget", "name", "concept_id",
          "depth", "type", "direction", "since", "limit", "cursor", "document_keys", "tags", "metadata"]  # fmt: skip


def _storable(value: Any) -> None:
    """Every string a validated model holds can be sent to PostgreSQL as text."""
    if isinstance(value, str):
        assert "\x00" not in value
        value.encode("utf-8")
    elif isinstance(value, dict):
        for k, v in value.items():
            _storable(k)
            _storable(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _storable(v)
    elif isinstance(value, BaseModel):
        _storable(value.model_dump())


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    body=st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=12), json_values, max_size=8),
)
def test_arbitrary_json_bodies_validate_or_raise_validation_error_only(
    model: type[BaseModel], body: dict[str, Any]
) -> None:
    try:
        parsed = model.model_validate(body)
    except ValidationError:
        return
    _storable(parsed)
    json.dumps(parsed.model_dump(mode="json"))


@settings(max_examples=200, deadline=None)
@given(query=st.text(min_size=1, max_size=3000), k=st.integers(-10, 200), world=st.text(max_size=80))
def test_search_request_bounds(query: str, k: int, world: str) -> None:
    try:
        request = SearchRequest(query=query, world_id=world, k=k)
    except ValidationError:
        return
    assert 1 <= request.k <= MAX_K
    assert 1 <= len(request.query) <= 2000 and request.query == request.query.strip()
    assert "\x00" not in request.query
    assert len(request.world_id) <= 63 and request.world_id == request.world_id.lower()


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1)
)
def test_any_storable_text_survives_unchanged_apart_from_surrounding_space(text: str) -> None:
    if not text.strip() or len(text.strip()) > 2000:
        return
    request = SearchRequest(query=text, world_id="w")
    # Only surrounding whitespace goes (by Unicode White_Space; str.strip also drops a few controls).
    assert request.query in text and request.query.strip() == text.strip()


@pytest.mark.parametrize(
    "body",
    [
        {"query": "x", "world_id": "Emberfall"},  # not a slug
        {"query": "x", "world_id": "../etc"},
        {"query": "x", "world_id": "w'; DROP TABLE worlds; --"},
        {"query": "", "world_id": "w"},
        {"query": "   ", "world_id": "w"},
        {"query": "a\x00b", "world_id": "w"},
        {"query": "\ud800", "world_id": "w"},
        {"query": "x" * 2001, "world_id": "w"},
        {"query": ["x"], "world_id": "w"},
        {"query": {"$ne": 1}, "world_id": "w"},
        {"query": "x", "world_id": "w", "k": 0},
        {"query": "x", "world_id": "w", "k": MAX_K + 1},
        {"query": "x", "world_id": "w", "k": "ten"},
        {"query": "x", "world_id": "w", "k": 2.5},
        {"query": "x", "world_id": "w", "filter": {}},  # unknown field
        {"query": "x", "world_id": "w", "filters": {"document_keys": []}},
        {"query": "x", "world_id": "w", "filters": {"document_keys": ["k"] * 51}},
        {"query": "x", "world_id": "w", "filters": {"metadata": {"a": {"nested": 1}}}},
        {"query": "x", "world_id": "w", "filters": {"metadata": {f"k{i}": i for i in range(11)}}},
        {"query": "x", "world_id": "w", "filters": {"tags": ["t" * 65]}},
        {"query": "x", "world_id": "w", "filters": {"unknown": 1}},
    ],
)
def test_hostile_or_malformed_search_requests_are_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SearchRequest.model_validate(body)


def test_a_full_search_request_parses_from_json() -> None:
    request = SearchRequest.model_validate_json(
        json.dumps(
            {
                "query": "  who rules the Ember Court?  ",
                "world_id": "emberfall",
                "k": "5",  # query strings arrive as text
                "hybrid": True,
                "filters": {
                    "key_prefix": "incoming/emberfall/",
                    "metadata": {"era": "kindled", "canon": True},
                },
            }
        )
    )
    assert request.query == "who rules the Ember Court?" and request.k == 5
    assert request.filters is not None and not request.filters.is_empty
    assert SearchFilters().is_empty


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (ContextRequest, {"world_id": "w", "situation": "x", "token_budget": 63}),
        (ContextRequest, {"world_id": "w", "situation": "x", "token_budget": MAX_TOKEN_BUDGET + 1}),
        (ContextRequest, {"world_id": "w", "situation": "x" * 4001}),
        (RelationshipsRequest, {"world_id": "w", "concept_id": 1, "depth": MAX_DEPTH + 1}),
        (RelationshipsRequest, {"world_id": "w", "concept_id": 1, "depth": 0}),
        (RelationshipsRequest, {"world_id": "w", "concept_id": 0}),
        (RelationshipsRequest, {"world_id": "w", "concept_id": 2**63}),
        (RelationshipsRequest, {"world_id": "w", "concept_id": 1, "type": "Rules; --"}),
        (RelationshipsRequest, {"world_id": "w", "concept_id": 1, "direction": "sideways"}),
        (RelationshipsRequest, {"world_id": "w", "concept_id": 1, "fan_out": 101}),
        (ConceptHistoryRequest, {"world_id": "w", "name": "x" * 201}),
        (TimelineRequest, {"world_id": "w", "limit": 201}),
        (TimelineRequest, {"world_id": "w", "since": "2025-01-01T00:00:00"}),  # no time zone
        (TimelineRequest, {"world_id": "w", "cursor": "not-a-cursor"}),
        (TimelineRequest, {"world_id": "w", "cursor": "x" * 801}),
    ],
)
def test_other_requests_enforce_their_bounds(model: type[BaseModel], body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(body)


def test_timeline_cursor_round_trips_and_excludes_since() -> None:
    cursor = TimelineCursor(occurred_at=datetime(2025, 3, 1, tzinfo=UTC), event_id="e-1|x").encode()
    assert TimelineCursor.decode(cursor).event_id == "e-1|x"
    assert TimelineRequest(world_id="w", cursor=cursor).cursor == cursor
    with pytest.raises(ValidationError, match="either since or cursor"):
        TimelineRequest(world_id="w", cursor=cursor, since=datetime(2025, 1, 1, tzinfo=UTC))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=100))
def test_arbitrary_cursor_text_is_rejected_cleanly(token: str) -> None:
    with contextlib.suppress(ValidationError):
        TimelineRequest(world_id="w", cursor=token)
