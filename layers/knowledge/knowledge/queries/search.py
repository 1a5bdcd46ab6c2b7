"""World-scoped search: embed the query, then search its world (knowledge.adapters.postgres.search).

Hybrid (BM25 keyword arm fused with the vector arm) is the default everywhere; `vector` and `keyword`
run one arm alone. A reranker, when given, reorders the top k (knowledge.reranking). An unknown world
raises UnknownWorldError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from knowledge.adapters.postgres.search import DEFAULT_EF_SEARCH, search_by_keywords, search_by_vector
from knowledge.embedding.live import bind_live
from knowledge.errors import RerankUnavailableError, UnknownWorldError
from knowledge.ports import Embedder, Reranker
from knowledge.queries.models import SearchHit, SearchRequest, SearchResponse
from knowledge.reranking import rerank_hits

if TYPE_CHECKING:
    import psycopg

__all__ = ["SEARCH_MODES", "SearchMode", "SearchRow", "search", "search_chunks", "search_many"]

SearchMode = Literal["hybrid", "vector", "keyword"]
SEARCH_MODES: tuple[SearchMode, ...] = ("hybrid", "vector", "keyword")


def search(
    conn: psycopg.Connection[Any],
    embedder: Embedder,
    request: SearchRequest,
    *,
    reranker: Reranker | None = None,
    ef_search: int = DEFAULT_EF_SEARCH,
) -> SearchResponse:
    """Embed the query and search its world; with `request.rerank`, reorder by `reranker`.
    Raises UnknownWorldError, or RerankUnavailableError when reranking is asked for without a reranker."""
    if request.rerank and reranker is None:
        raise RerankUnavailableError("this search service has no reranker")
    vector = bind_live(conn, embedder).embed([request.query])[0]
    hits = search_by_vector(
        conn,
        vector,
        world_id=request.world_id,
        k=request.k,
        filters=request.filters,
        keywords=request.query if request.hybrid else None,
        ef_search=ef_search,
    )
    if request.rerank and reranker is not None:
        hits = rerank_hits(hits, reranker, request.query)
    return SearchResponse.model_construct(
        world_id=request.world_id, hybrid=request.hybrid, reranked=request.rerank, hits=hits
    )


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
    query_vector: Sequence[float] | None,
    *,
    world_id: str,
    k: int = 5,
    query: str | None = None,
    mode: SearchMode = "hybrid",
    ef_search: int = DEFAULT_EF_SEARCH,
    reranker: Reranker | None = None,
) -> list[SearchRow]:
    """Search as `kb search` prints it; an unknown world finds nothing instead of raising.

    `keyword` needs the query text, the others its vector; `hybrid` without the text is `vector`.
    A `reranker` (it needs the query text) reorders the top k.
    """
    if reranker is not None and query is None:
        raise ValueError("reranking needs the query text")
    try:
        if mode == "keyword":
            if query is None:
                raise ValueError("keyword search needs the query text")
            hits = search_by_keywords(conn, query, world_id=world_id, k=k)
        else:
            if query_vector is None:
                raise ValueError(f"{mode} search needs the query vector")
            keywords = query if mode == "hybrid" else None
            hits = search_by_vector(
                conn, query_vector, world_id=world_id, k=k, keywords=keywords, ef_search=ef_search
            )
    except UnknownWorldError:
        return []
    if reranker is not None and query is not None:
        hits = rerank_hits(hits, reranker, query)
    return [SearchRow.from_hit(h, world_id) for h in hits]


def search_many(
    conn: psycopg.Connection[Any],
    embedder: Embedder,
    queries: Sequence[tuple[str, str, int]],
    *,
    mode: SearchMode = "hybrid",
    ef_search: int = DEFAULT_EF_SEARCH,
    reranker: Reranker | None = None,
) -> list[list[SearchRow]]:
    """`search_chunks` for many (query, world, k) at once: the queries are embedded in batches first."""
    vectors: Sequence[Sequence[float] | None]
    if mode == "keyword":
        vectors = [None] * len(queries)
    else:
        vectors = bind_live(conn, embedder).embed([q for q, _, _ in queries]) if queries else []
    return [
        search_chunks(
            conn, vector, world_id=world, k=k, query=q, mode=mode, ef_search=ef_search, reranker=reranker
        )
        for (q, world, k), vector in zip(queries, vectors, strict=True)
    ]
