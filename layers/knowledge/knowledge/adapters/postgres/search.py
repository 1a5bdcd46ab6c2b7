"""SQL of world-scoped semantic (and optionally hybrid keyword + vector) search over document chunks.

How a query runs:

* document_chunks is list-partitioned by world, each partition with its own HNSW cosine graph (migration
  0003), so the world condition prunes the search to that world's graph and the walk needs no filter.
  Other filters are WHERE conditions; pgvector's iterative index scan (`hnsw.iterative_scan =
  relaxed_order`) keeps walking the graph until k rows pass them.
* When that scan still returns fewer than k rows (a filter so narrow that the scan hit
  `hnsw.max_scan_tuples`, or a world with fewer than k chunks) the query is repeated as an exact scan of
  the filtered rows: those are few by then, and exact search of few rows is both correct and cheap.
* Document-level filters resolve to an array of document ids first (an init plan run once), so the index
  scan only checks `document_id = ANY(...)` per row and keeps its distance order.
* Hybrid search ranks the same filtered chunks by full text (`search_tsv`, English stemming, websearch
  syntax) and fuses both rankings by reciprocal rank fusion (k = 60, each list 4k deep).
* Settings: see _run. Through `Database.read` (autocommit, the API's path) a search is one statement,
  one round trip, with no BEGIN or COMMIT.

An unknown world raises UnknownWorldError; the existence check only runs when a search finds nothing.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from pgvector import Vector
from psycopg.types.json import Jsonb

from knowledge.adapters.postgres.worlds import require_world
from knowledge.queries.models import Citation, SearchFilters, SearchHit

# With a graph per world, world-filtered recall@10 of 0.999 on the 100k-chunk benchmark corpus
# (bench/bench_search.py; 0.99 at 20, no gain at 80); a world far larger than 10k chunks may want more.
DEFAULT_EF_SEARCH = 40
RRF_K = 60
# Bounds the work any one query can make the database do, whatever the input.
STATEMENT_TIMEOUT = "5s"


def search_by_vector(
    conn: psycopg.Connection[Any],
    vector: Sequence[float] | np.ndarray[Any, Any] | Vector,
    *,
    world_id: str,
    k: int = 10,
    filters: SearchFilters | None = None,
    keywords: str | None = None,
    ef_search: int = DEFAULT_EF_SEARCH,
) -> list[SearchHit]:
    """The k chunks of `world_id` nearest to `vector` (hybrid with `keywords` when given).

    Arguments are trusted to be within the request models' bounds. Raises UnknownWorldError.
    """
    q = vector if isinstance(vector, Vector) else Vector(np.asarray(vector, dtype=np.float32))
    where, params = _filter_sql(world_id, filters)
    params |= {"q": q, "k": int(k)}
    if keywords is not None:
        sql = _hybrid_sql(where)
        params |= {"keywords": keywords, "depth": max(4 * int(k), 40)}
    else:
        sql = _vector_sql(where, exact=False)
    rows = _run(conn, sql, params, int(ef_search))
    if len(rows) < k and keywords is None:
        rows = _run(conn, _vector_sql(where, exact=True), params, int(ef_search))
    if not rows:
        require_world(conn, world_id)
    return [
        SearchHit.model_construct(
            rank=rank,
            chunk_id=row[0],
            score=round(float(row[1]), 6) if keywords is not None else round(float(row[2]), 4),
            similarity=round(float(row[2]), 4),
            text=row[6],
            citation=Citation.model_construct(
                document_key=row[3], title=row[4], heading=row[5], start=row[7], end=row[8]
            ),
        )
        for rank, row in enumerate(rows, start=1)
    ]


# The ef_search an autocommit connection's session holds, as last set by _run.
_session_ef_search: weakref.WeakKeyDictionary[psycopg.Connection[Any], int] = weakref.WeakKeyDictionary()

_LOCAL_SETTINGS_SQL = (
    b"SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', 'relaxed_order', true),"
    b" set_config('statement_timeout', %s, true)"
)
_SESSION_SETTINGS_SQL = (
    b"SELECT set_config('hnsw.ef_search', %s, false),"
    b" set_config('hnsw.iterative_scan', 'relaxed_order', false)"
)


def _run(
    conn: psycopg.Connection[Any], sql: bytes, params: dict[str, Any], ef_search: int
) -> list[tuple[Any, ...]]:
    if conn.autocommit:
        # No transaction to scope settings to: they are made for the session, once per connection and
        # ef_search, and the query alone is then one round trip. (A pipeline of settings and query
        # would also do, at about a third more client time per search.)
        if _session_ef_search.get(conn) != ef_search:
            conn.execute(_SESSION_SETTINGS_SQL, (str(ef_search),), prepare=True)
            _session_ef_search[conn] = ef_search  # only once made: after a failure the next search retries
        return conn.execute(sql, params, prepare=True, binary=True).fetchall()
    # Inside a transaction the settings are transaction-local, sent in one pipeline with the query: one
    # round trip, and a pooled connection never carries them to another caller.
    with conn.pipeline():
        conn.execute(_LOCAL_SETTINGS_SQL, (str(ef_search), STATEMENT_TIMEOUT), prepare=True)
        cursor = conn.execute(sql, params, prepare=True, binary=True)
    return cursor.fetchall()


# Document-level conditions, resolved once into an array of document ids (see the module docstring).
_DOCUMENT_CONDITIONS = {
    "document_keys": "d.s3_key = ANY(%(document_keys)s)",
    "key_prefix": "starts_with(d.s3_key, %(key_prefix)s)",
    "media_types": "d.media_type = ANY(%(media_types)s)",
    "tags": "d.metadata -> 'tags' ?| %(tags)s",
    "metadata": "d.metadata @> %(metadata)s",
}


def _filter_sql(world_id: str, filters: SearchFilters | None) -> tuple[str, dict[str, Any]]:
    """WHERE conditions on `c` (document_chunks) and their parameters; the SQL text never holds input."""
    where = ["c.world_id = %(world)s"]
    params: dict[str, Any] = {"world": world_id}
    if filters is None or filters.is_empty:
        return " AND ".join(where), params
    document_conditions = []
    for name, condition in _DOCUMENT_CONDITIONS.items():
        value = getattr(filters, name)
        if value:
            document_conditions.append(condition)
            params[name] = Jsonb(value) if name == "metadata" else value
    if document_conditions:
        where.append(
            "c.document_id = ANY(ARRAY(SELECT d.document_id FROM narrative_documents d"
            f" WHERE d.world_id = %(world)s AND {' AND '.join(document_conditions)}))"
        )
    if filters.concepts:
        # One OR of phrase queries: the GIN index on search_tsv answers it.
        where.append(
            "c.search_tsv @@ (SELECT string_agg('(' || phraseto_tsquery('english', n)::text || ')', ' | ')"
            "::tsquery FROM unnest(%(concepts)s::text[]) AS n WHERE phraseto_tsquery('english', n)::text <> '')"
        )
        params["concepts"] = list(filters.concepts)
    return " AND ".join(where), params


_OUTPUT = (
    "h.chunk_id, {score}, h.similarity, d.s3_key, d.title, h.heading, h.content, h.start_offset, h.end_offset"
)
_CHUNK_COLUMNS = "c.chunk_id, c.document_id, c.heading, c.content, c.start_offset, c.end_offset"


@functools.cache
def _vector_sql(where: str, *, exact: bool) -> bytes:
    # The exact variant orders by an expression the HNSW index cannot serve, forcing a scan of the
    # filtered rows. The outer ORDER BY restores exact order: relaxed_order scans may return a near tie
    # out of order.
    order = "(c.embedding <=> %(q)b) + 0" if exact else "c.embedding <=> %(q)b"
    return (
        f"SELECT {_OUTPUT.format(score='h.similarity')}"
        f" FROM (SELECT {_CHUNK_COLUMNS}, 1 - (c.embedding <=> %(q)b) AS similarity"
        f"   FROM document_chunks c WHERE {where} ORDER BY {order} LIMIT %(k)s) h"
        " JOIN narrative_documents d ON d.document_id = h.document_id"
        " ORDER BY h.similarity DESC, h.chunk_id"
    ).encode()


@functools.cache
def _hybrid_sql(where: str) -> bytes:
    return (
        "WITH vec AS ("
        "  SELECT chunk_id, row_number() OVER (ORDER BY distance, chunk_id) AS rank FROM ("
        "    SELECT c.chunk_id, c.embedding <=> %(q)b AS distance FROM document_chunks c"
        f"    WHERE {where} ORDER BY c.embedding <=> %(q)b LIMIT %(depth)s) v),"
        " words AS (SELECT websearch_to_tsquery('english', %(keywords)s) AS tsq),"
        " kw AS ("
        "  SELECT c.chunk_id, row_number() OVER (ORDER BY ts_rank_cd(c.search_tsv, w.tsq) DESC, c.chunk_id)"
        "   AS rank FROM document_chunks c, words w"
        f"  WHERE {where} AND c.search_tsv @@ w.tsq"
        "  ORDER BY ts_rank_cd(c.search_tsv, w.tsq) DESC, c.chunk_id LIMIT %(depth)s),"
        " fused AS ("
        f"  SELECT chunk_id, coalesce(1.0 / ({RRF_K} + vec.rank), 0) + coalesce(1.0 / ({RRF_K} + kw.rank), 0)"
        "   AS score FROM vec FULL JOIN kw USING (chunk_id) ORDER BY score DESC, chunk_id LIMIT %(k)s)"
        f" SELECT {_OUTPUT.format(score='h.score')}"
        f" FROM (SELECT {_CHUNK_COLUMNS}, f.score, 1 - (c.embedding <=> %(q)b) AS similarity FROM fused f"
        # The world condition lets the planner read only that world's partition.
        "   JOIN document_chunks c ON c.world_id = %(world)s AND c.chunk_id = f.chunk_id) h"
        " JOIN narrative_documents d ON d.document_id = h.document_id"
        " ORDER BY h.score DESC, h.chunk_id"
    ).encode()
