"""World-scoped semantic search over document chunks, with citations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from pgvector import Vector


@dataclass(frozen=True, slots=True)
class SearchHit:
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


def search_chunks(
    conn: psycopg.Connection,
    query_vector: Sequence[float],
    *,
    world_id: str,
    k: int = 5,
    ef_search: int = 100,
) -> list[SearchHit]:
    # Iterative scans keep filtered HNSW queries from returning fewer than k rows (pgvector >= 0.8).
    conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
    conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
    vector = Vector(list(query_vector))
    rows = conn.execute(
        "SELECT * FROM (SELECT c.embedding <=> %(q)s AS distance, d.s3_key, d.title, c.heading, c.content,"
        "  c.start_offset, c.end_offset, c.world_id"
        " FROM document_chunks c JOIN narrative_documents d ON d.document_id = c.document_id"
        " WHERE c.world_id = %(world)s ORDER BY c.embedding <=> %(q)s LIMIT %(k)s) hits ORDER BY distance",
        {"q": vector, "world": world_id, "k": k},
    ).fetchall()
    return [
        SearchHit(
            rank=i + 1,
            score=round(1.0 - float(r[0]), 4),
            document=r[1],
            title=r[2],
            heading=r[3],
            text=r[4],
            start=r[5],
            end=r[6],
            world=r[7],
        )
        for i, r in enumerate(rows)
    ]
