"""World-scoped search: embed the query, then search its world (knowledge.adapters.postgres.search).

An unknown world raises UnknownWorldError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from knowledge.adapters.postgres.search import DEFAULT_EF_SEARCH, search_by_vector
from knowledge.errors import UnknownWorldError
from knowledge.ports import Embedder
from knowledge.queries.models import SearchHit, SearchRequest, SearchResponse

if TYPE_CHECKING:
    import psycopg

__all__ = ["SearchRow", "search", "search_chunks"]


def search(
    conn: psycopg.Connection[Any],
    embedder: Embedder,
    request: SearchRequest,
    *,
    ef_search: int = DEFAULT_EF_SEARCH,
) -> SearchResponse:
    """Embed the query and search its world. Raises UnknownWorldError."""
    vector = embedder.embed([request.query])[0]
    hits = search_by_vector(
        conn,
        vector,
        world_id=request.world_id,
        k=request.k,
        filters=request.filters,
        keywords=request.query if request.hybrid else None,
        ef_search=ef_search,
    )
    return SearchResponse.model_construct(world_id=request.world_id, hybrid=request.hybrid, hits=hits)


@dataclass(frozen=True, slots=True)
class SearchRow:
    """One line of `kb search` output: a hit flattened, with its world."""

    rank: int
    score: float
    document: str  # the object key
    title: str
    heading: str
    text: str
    start: int
    end: int
    world: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_hit(cls, hit: SearchHit, world: str) -> SearchRow:
        c = hit.citation
        return cls(
            rank=hit.rank,
            score=hit.score,
            document=c.document_key,
            title=c.title,
            heading=c.heading,
            text=hit.text,
            start=c.start,
            end=c.end,
            world=world,
        )


def search_chunks(
    conn: psycopg.Connection[Any],
    query_vector: Sequence[float],
    *,
    world_id: str,
    k: int = 5,
    ef_search: int = DEFAULT_EF_SEARCH,
) -> list[SearchRow]:
    """Vector search as `kb search` prints it; an unknown world finds nothing instead of raising."""
    try:
        hits = search_by_vector(conn, query_vector, world_id=world_id, k=k, ef_search=ef_search)
    except UnknownWorldError:
        return []
    return [SearchRow.from_hit(h, world_id) for h in hits]
