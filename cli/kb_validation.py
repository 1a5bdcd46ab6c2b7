"""The `kb` arguments checked by the knowledge API's own request models: same limits, same messages.

Each check is an argparse `type=`, so a bad value is a usage error (exit 2) before any work starts, and
its message is the one the API returns in a 422's `details` for the same value. Messages are plain text:
the caller prints them without markup, so a pattern such as `^[a-z0-9]...` keeps its brackets.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError

from knowledge.queries.models import (
    MAX_K,
    ConceptHistoryRequest,
    ContextRequest,
    RelationshipsRequest,
    SearchRequest,
    TimelineRequest,
    WorldId,
)

__all__ = [
    "MAX_K",
    "budget",
    "concept_name",
    "depth",
    "document_name",
    "k",
    "query_text",
    "relation_type",
    "situation_text",
    "timeline_limit",
    "timestamp",
    "world_id",
]

_WORLD_RULE = "lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters"


def _field(model: type[Any], name: str) -> TypeAdapter[Any]:
    """The adapter of one request field, with its constraints exactly as the API's model declares them."""
    info = model.model_fields[name]
    return TypeAdapter(Annotated[info.annotation, info])


_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "world": TypeAdapter(WorldId),
    "k": _field(SearchRequest, "k"),
    "query": _field(SearchRequest, "query"),
    "situation": _field(ContextRequest, "situation"),
    "budget": _field(ContextRequest, "token_budget"),
    "concept": _field(ConceptHistoryRequest, "name"),
    "depth": _field(RelationshipsRequest, "depth"),
    "type": _field(RelationshipsRequest, "type"),
    "limit": _field(TimelineRequest, "limit"),
    "since": _field(TimelineRequest, "since"),
}


def _message(exc: ValidationError) -> str:
    return str(exc.errors(include_url=False)[0]["msg"])


def _check(kind: str, value: Any) -> Any:
    try:
        return _ADAPTERS[kind].validate_python(value)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(_message(exc)) from None


def _integer(kind: str, raw: str) -> int:
    try:
        number = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from None
    return int(_check(kind, number))


def world_id(raw: str) -> str:
    """A world id as the API accepts it in a body or a path."""
    try:
        return str(_ADAPTERS["world"].validate_python(raw))
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(f"{_message(exc)} ({_WORLD_RULE}): {raw!r}") from None


def k(raw: str) -> int:
    """How many hits: 1 to MAX_K (50), as POST /search allows."""
    return _integer("k", raw)


def query_text(raw: str) -> str:
    """A search query: non-blank after stripping, at most 2,000 characters."""
    return str(_check("query", raw))


def situation_text(raw: str) -> str:
    return str(_check("situation", raw))


def budget(raw: str) -> int:
    return _integer("budget", raw)


def concept_name(raw: str) -> str:
    return str(_check("concept", raw))


def depth(raw: str) -> int:
    return _integer("depth", raw)


def relation_type(raw: str) -> str:
    return str(_check("type", raw))


def timeline_limit(raw: str) -> int:
    return _integer("limit", raw)


def timestamp(raw: str) -> datetime:
    """An ISO 8601 time with its time zone (`2026-01-31T20:00:00Z`), as the events route's `since`."""
    value = _check("since", raw)
    assert isinstance(value, datetime)
    return value


def document_name(raw: str) -> str:
    """The file name of an uploaded document: one path segment, so `incoming/<world>/<name>` stays inside
    its world's folder (no `/`, `\\`, `.` or `..`, no NUL)."""
    if not raw or raw in (".", "..") or any(c in raw for c in "/\\\x00"):
        raise argparse.ArgumentTypeError(
            f"a document name is one file name (no '/', '\\', '.' or '..'), as ingested: {raw!r}"
        )
    if len(raw.encode("utf-8", "surrogatepass")) > 255:
        raise argparse.ArgumentTypeError("a document name is at most 255 bytes")
    return raw
