"""Request and response models of the knowledge-base query API.

Requests are plain pydantic v2 models with bounds on every size, count and depth, so an API resolver with
validation turns any malformed or oversized input into a 422 before a query runs. Strings reject NUL and
lone surrogates (PostgreSQL text cannot hold them); everything else is passed to SQL as parameters only.
Unknown fields are errors, so a typo such as `filter` for `filters` is reported instead of ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from knowledge.model import SNAKE_NAME_PATTERN, WORLD_ID_PATTERN

__all__ = [
    "MAX_DEPTH",
    "MAX_K",
    "MAX_TOKEN_BUDGET",
    "MAX_WORLDS",
    "Citation",
    "ConceptEdge",
    "ConceptGraph",
    "ConceptHistory",
    "ConceptHistoryRequest",
    "ConceptId",
    "ConceptList",
    "ConceptListLimit",
    "ConceptListRequest",
    "ConceptNode",
    "ConceptState",
    "ConceptSummary",
    "ConceptVersion",
    "ContextChunk",
    "ContextPack",
    "ContextRequest",
    "CursorToken",
    "Depth",
    "Direction",
    "RelationType",
    "RelationshipsRequest",
    "SearchFilters",
    "SearchHit",
    "SearchRequest",
    "SearchResponse",
    "StoryEvent",
    "Timeline",
    "TimelineCursor",
    "TimelineLimit",
    "TimelineRequest",
    "WorldId",
    "WorldList",
    "WorldSummary",
]

MAX_K = 50
MAX_DEPTH = 3
MAX_TOKEN_BUDGET = 16_000
RELATION_TYPE_PATTERN = SNAKE_NAME_PATTERN


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def _strip(n: int) -> StringConstraints:
    return StringConstraints(strip_whitespace=True, min_length=1, max_length=n)


# Text of each bound: stripped, non-empty, storable in PostgreSQL.
Text100 = Annotated[str, _strip(100), AfterValidator(_storable)]
Text200 = Annotated[str, _strip(200), AfterValidator(_storable)]
Text1024 = Annotated[str, _strip(1024), AfterValidator(_storable)]
Text2000 = Annotated[str, _strip(2000), AfterValidator(_storable)]
Text4000 = Annotated[str, _strip(4000), AfterValidator(_storable)]
Tag = Annotated[str, _strip(64), AfterValidator(_storable)]

WorldId = Annotated[
    str,
    Field(
        pattern=WORLD_ID_PATTERN,
        description="World slug: lowercase letters, digits and '-', at most 63 characters",
        examples=["emberfall"],
    ),
]
RelationType = Annotated[str, Field(pattern=RELATION_TYPE_PATTERN, examples=["member_of"])]
DocumentKey = Text1024
ConceptName = Text200
# Front-matter metadata is stored as JSON and compared in PostgreSQL: integers within bigint.
MetadataInt = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
MetadataValue = (
    Annotated[str, StringConstraints(max_length=256), AfterValidator(_storable)] | MetadataInt | bool
)
# Rules of the GET routes' path and query parameters, shared by the routes and the request models.
ConceptId = Annotated[int, Field(ge=1, le=2**63 - 1)]
Depth = Annotated[int, Field(ge=1, le=MAX_DEPTH)]
Direction = Literal["out", "in", "both"]
TimelineLimit = Annotated[int, Field(ge=1, le=200)]
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_storable)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- search ---------------------------------------------------------------------------------------------


class SearchFilters(_Request):
    """Narrow a search within its world; all given filters must hold (AND), values within one are OR.

    * `document_keys`: chunks of these documents (object keys as uploaded, e.g. `incoming/emberfall/a.md`).
    * `key_prefix`: chunks of documents whose key starts with this string (a folder).
    * `media_types`: chunks of documents of these media types (`text/markdown`, `text/html`, ...).
    * `tags`: chunks of documents whose front matter `tags` holds any of these (a list or a single tag).
    * `metadata`: chunks of documents whose front matter holds all of these key/value pairs.
    * `concepts`: chunks whose text (or heading) mentions any of these concept names, as a phrase, stemmed.
    """

    document_keys: list[DocumentKey] | None = Field(default=None, min_length=1, max_length=50)
    key_prefix: DocumentKey | None = None
    media_types: list[Text100] | None = Field(default=None, min_length=1, max_length=10)
    tags: list[Tag] | None = Field(default=None, min_length=1, max_length=20)
    metadata: dict[MetadataKey, MetadataValue] | None = Field(default=None, min_length=1, max_length=10)
    concepts: list[ConceptName] | None = Field(default=None, min_length=1, max_length=10)

    @property
    def is_empty(self) -> bool:
        return not any(
            (self.document_keys, self.key_prefix, self.media_types, self.tags, self.metadata, self.concepts)
        )


class SearchRequest(_Request):
    query: Text2000 = Field(description="What to look for, in natural language")
    world_id: WorldId
    k: int = Field(default=10, ge=1, le=MAX_K, description="How many chunks to return")
    filters: SearchFilters | None = None
    hybrid: bool = Field(
        default=True,
        description="Fuse a BM25 keyword ranking with the vector ranking (the default); false: vector only",
    )
    rerank: bool = Field(
        default=False,
        description=(
            "Reorder the top k by a second stage (a Bedrock rerank model in AWS; locally, each chunk's best"
            " sentence): better first hits, one more model call per search"
        ),
    )


class Citation(_Response):
    """Where a chunk comes from: character offsets into the document's source text."""

    document_key: str
    title: str
    heading: str
    start: int
    end: int


class SearchHit(_Response):
    rank: int
    chunk_id: int
    score: float = Field(
        description=(
            "Cosine similarity; when hybrid, the fused keyword and vector score with the share of the query"
            " one sentence of the chunk holds (0-1); when reranked, the second stage's score (0-1)"
        )
    )
    similarity: float = Field(description="Cosine similarity of the chunk to the query")
    text: str
    citation: Citation


class SearchResponse(_Response):
    world_id: str
    hybrid: bool
    reranked: bool = False
    hits: list[SearchHit]


# --- context pack ---------------------------------------------------------------------------------------


class ContextRequest(_Request):
    world_id: WorldId
    situation: Text4000 = Field(description="The scene or question the pack is for, in natural language")
    token_budget: int = Field(
        default=1500,
        ge=64,
        le=MAX_TOKEN_BUDGET,
        description="Most tokens the packed texts may cost, by the embedding model's tokenizer",
    )
    max_chunks: int = Field(default=12, ge=1, le=40)
    max_concepts: int = Field(default=8, ge=0, le=30)
    max_events: int = Field(default=8, ge=0, le=50)


class ContextChunk(_Response):
    chunk_id: int
    similarity: float
    tokens: int
    text: str
    citation: Citation


class ConceptState(_Response):
    """A concept as it stands now: its latest version."""

    concept_id: int
    name: str
    kind: str
    description: str
    version: int
    source_document_key: str | None
    updated_at: datetime
    tokens: int


class StoryEvent(_Response):
    event_id: str
    occurred_at: datetime
    kind: str
    summary: str
    concept_ids: list[int]
    payload: dict[str, Any] = Field(default_factory=dict)
    tokens: int = 0


class ContextPack(_Response):
    world_id: str
    token_budget: int
    tokens_used: int
    tokenizer: str = Field(description="Model whose tokenizer counted the tokens")
    chunks: list[ContextChunk]
    concepts: list[ConceptState]
    events: list[StoryEvent]
    dropped_duplicates: int = Field(description="Chunks left out as overlapping or repeating a packed one")


# --- concepts -------------------------------------------------------------------------------------------


class ConceptHistoryRequest(_Request):
    world_id: WorldId
    name: ConceptName


class ConceptVersion(_Response):
    version: int
    description: str
    created_at: datetime
    source_document_key: str | None = Field(description="Object key of the document that set it")
    source_document_title: str | None = Field(description="None once that document is deleted")
    source_event_id: str | None


class ConceptHistory(_Response):
    concept_id: int
    world_id: str
    name: str
    kind: str
    current_version: int
    versions: list[ConceptVersion] = Field(description="Oldest first")


class RelationshipsRequest(_Request):
    world_id: WorldId
    concept_id: ConceptId
    depth: Depth = Field(default=1, description="Hops from the concept")
    type: RelationType | None = Field(default=None, description="Follow only edges of this type")
    direction: Direction = "both"
    fan_out: int = Field(default=25, ge=1, le=100, description="Most edges followed from any one concept")
    max_edges: int = Field(default=200, ge=1, le=1000, description="Most edges in the whole answer")


class ConceptNode(_Response):
    concept_id: int
    name: str
    kind: str
    depth: int = Field(description="Hops from the root concept")


class ConceptEdge(_Response):
    relationship_id: int
    source_concept_id: int
    target_concept_id: int
    type: str
    description: str
    depth: int = Field(description="Hop at which the walk crossed this edge")


class ConceptGraph(_Response):
    root: ConceptNode
    nodes: list[ConceptNode] = Field(description="Every concept reached, root included, nearest first")
    edges: list[ConceptEdge]
    truncated: bool = Field(description="max_edges or fan_out left edges out")


# --- timeline -------------------------------------------------------------------------------------------


class TimelineCursor(_Request):
    """Keyset position: the last event of the previous page."""

    occurred_at: AwareDatetime
    event_id: str

    def encode(self) -> str:
        raw = json.dumps([self.occurred_at.isoformat(), self.event_id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> TimelineCursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            occurred_at, event_id = json.loads(raw)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise ValueError("not a cursor returned by this API") from exc
        return cls(occurred_at=occurred_at, event_id=event_id)


def _cursor(token: str) -> str:
    TimelineCursor.decode(token)
    return token


CursorToken = Annotated[str, StringConstraints(min_length=1, max_length=800), AfterValidator(_cursor)]


class TimelineRequest(_Request):
    """Story events in chronological order (oldest first), from `since` on, `limit` at a time."""

    world_id: WorldId
    since: AwareDatetime | None = Field(default=None, description="Earliest occurred_at to include")
    limit: TimelineLimit = 50
    cursor: CursorToken | None = Field(default=None, description="next_cursor of the previous page")

    @model_validator(mode="after")
    def _not_both(self) -> TimelineRequest:
        if self.since is not None and self.cursor is not None:
            raise ValueError("give either since or cursor, not both: the cursor already fixes the position")
        return self


class Timeline(_Response):
    world_id: str
    events: list[StoryEvent]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; None on the last page")


# --- catalog: what a world holds, for pickers and listings ---------------------------------------------

MAX_WORLDS = 1000
ConceptListLimit = Annotated[int, Field(ge=1, le=1000)]


class WorldSummary(_Response):
    world_id: str
    name: str
    documents: int
    concepts: int
    events: int
    parent: str | None = Field(
        default=None, description="The world it diverges from (docs/worlds.md), if any"
    )


class WorldList(_Response):
    worlds: list[WorldSummary] = Field(description="By world_id")
    truncated: bool = Field(description=f"More than {MAX_WORLDS} worlds: the rest are left out")


class ConceptListRequest(_Request):
    world_id: WorldId
    prefix: ConceptName | None = Field(default=None, description="Only names starting with this (any case)")
    limit: ConceptListLimit = 200


class ConceptSummary(_Response):
    concept_id: int
    name: str
    kind: str
    current_version: int
    relationships: int = Field(description="Edges into or out of the concept")


class ConceptList(_Response):
    world_id: str
    concepts: list[ConceptSummary] = Field(description="By name, case-insensitively")
    truncated: bool = Field(description="limit left concepts out")
