"""SQL of world-scoped semantic (and optionally hybrid keyword + vector) search over document chunks.

How a query runs:

* document_chunks is list-partitioned by world (migration 0003): a large world has a partition and HNSW
  cosine graph of its own, small worlds share the DEFAULT partition, which has no graph (migration 0010).
  The world condition prunes the search to the world's partition; the planner walks its graph, with no
  filter, or in the shared partition reads the world's rows by its (world_id) index and sorts them: an
  exact search of a few hundred rows, recall 1.0. The SQL is the same for both. Other filters are WHERE conditions; pgvector's iterative index scan (`hnsw.iterative_scan =
  relaxed_order`) keeps walking the graph until k rows pass them.
* When that scan still returns fewer than k rows (a filter so narrow that the scan hit
  `hnsw.max_scan_tuples`, or a world with fewer than k chunks) the query is repeated as an exact scan of
  the filtered rows: those are few by then, and exact search of few rows is both correct and cheap.
* Document-level filters resolve to an array of document ids first (an init plan run once), so the index
  scan only checks `document_id = ANY(...)` per row and keeps its distance order.
* Hybrid search (the default of the API, `kb search` and context packs) adds a keyword arm: BM25 over the
  world's chunks (Okapi, k1 = 1.2, b = 0.75), from the per-world statistics of migration 0008 -- a query
  term's postings come from one range of `chunk_terms`' primary key, its document frequency is their
  count, N and the mean chunk length one row of `keyword_stats`. Query terms are the query's lexemes
  (`to_tsvector('english')`: stemmed, stop words dropped), any of which may match. Both arms are
  `depth` deep (4k, at least 40); the fused score is a convex combination of the two arms' scores, each
  scaled to [0, 1] over its list (similarity min-max, BM25 by the best) (`KEYWORD_WEIGHT` on BM25; a chunk absent from one list scores
  0 there), measured on the retrieval set in bench/retrieval/ (docs/benchmarks.md).
  A sentence stage then reorders the fused list's first 10 (`SENTENCE_STAGE_DEPTH`, whatever k, so a
  search for k = 1 returns the first hit of k = 10): each chunk gains `SENTENCE_WEIGHT` x the share of the
  query terms' IDF that its best single sentence holds, read from the sentence ordinals each posting keeps
  (migration 0013), so a fact stated in one sentence outranks the same words scattered over a chunk. It
  parses no text and embeds nothing: a primary-key probe per (chunk, query term).
* A world searched alone with no filters is first searched through migration 0014's functions, which read
  the shared partition only: the same statements (`shared_partition_body`), with one generic plan kept per
  session instead of a plan made for every call. A world with a partition of its own finds no rows there
  and is remembered (`_not_shared`): its hybrid searches name its partition, with a generic plan for that
  statement alone (`_world_alone`); its vector searches, which plan cheaply, run the plain statement.
* Settings: see _run. Through `Database.read` (autocommit, the API's path) a search is one statement,
  one round trip, with no BEGIN or COMMIT.

* A world with a parent (migration 0009, docs/worlds.md) reads its lineage: `c.world_id = ANY(worlds)`
  prunes to those partitions, and a chunk of a document shadowed by a nearer world's document of the same
  name is left out. BM25 then uses the sum of the lineage's statistics (N, total length, df); shadowed
  chunks still count in them. A search first runs as if the world had no parent, one statement as above,
  whose rows also carry the world's parent: only when that is set (or nothing was found) is the lineage
  read and the search run again over it, so a world without a parent runs exactly as before. A world
  seen with a parent reads its lineage first next time (`_parented`).

An unknown world raises UnknownWorldError; the existence check only runs when a search finds nothing.
"""

from __future__ import annotations

import functools
import hashlib
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from pgvector import Vector
from psycopg import sql
from psycopg.types.json import Jsonb

from knowledge.adapters.postgres.worlds import world_lineage
from knowledge.queries.models import Citation, SearchFilters, SearchHit

# With a graph per world, world-filtered recall@10 of 0.999 on the 100k-chunk benchmark corpus
# (bench/bench_search.py; 0.99 at 20, no gain at 80); a world far larger than 10k chunks may want more.
DEFAULT_EF_SEARCH = 40
RRF_K = 60
# BM25 parameters and the keyword arm's weight in the fused score (docs/benchmarks.md, "Ranking").
BM25_K1 = 1.2
BM25_B = 0.75
KEYWORD_WEIGHT = 0.5
# The sentence stage of hybrid search: the fused list's first SENTENCE_STAGE_DEPTH chunks gain
# SENTENCE_WEIGHT x the share of the query terms' IDF that the chunk's best single sentence holds
# (docs/benchmarks.md, section 8: chosen on the retrieval set, every weight from 0.1 to 0.5 gained there).
SENTENCE_STAGE_DEPTH = 10
SENTENCE_WEIGHT = 0.3
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
    keyword_weight: float = KEYWORD_WEIGHT,
    sentence_weight: float = SENTENCE_WEIGHT,
) -> list[SearchHit]:
    """The k chunks of `world_id` (and its ancestors) nearest to `vector` (hybrid with `keywords`).

    Arguments are trusted to be within the request models' bounds. Raises UnknownWorldError.
    """
    return search_in_lineage(
        conn,
        vector,
        world_id=world_id,
        k=k,
        filters=filters,
        keywords=keywords,
        ef_search=ef_search,
        keyword_weight=keyword_weight,
        sentence_weight=sentence_weight,
    )[0]


def search_in_lineage(
    conn: psycopg.Connection[Any],
    vector: Sequence[float] | np.ndarray[Any, Any] | Vector,
    *,
    world_id: str,
    k: int = 10,
    filters: SearchFilters | None = None,
    keywords: str | None = None,
    ef_search: int = DEFAULT_EF_SEARCH,
    keyword_weight: float = KEYWORD_WEIGHT,
    sentence_weight: float = SENTENCE_WEIGHT,
) -> tuple[list[SearchHit], list[str]]:
    """`search_by_vector`, and the lineage it read ([world_id] for a world without a parent), for callers
    that read more of the same worlds (context packs)."""
    q = vector if isinstance(vector, Vector) else Vector(np.asarray(vector, dtype=np.float32))
    extra: dict[str, Any] = {"q": q, "k": int(k)}
    if keywords is not None:
        extra |= {
            "keywords": keywords,
            "depth": max(4 * int(k), 40),
            "weight": float(keyword_weight),
            "sentence_weight": float(sentence_weight),
        }

    def rows_of(worlds: list[str] | None, *, exact: bool) -> list[tuple[Any, ...]]:
        where, params = _filter_sql(world_id, filters, worlds)
        many = worlds is not None
        if keywords is not None:
            sql = _hybrid_sql(where, where != _WORLD_ONLY, many)
        else:
            sql = _vector_sql(where, exact=exact, many=many)
        return _run(conn, sql, params | extra, int(ef_search))

    lineage = _known_lineage(conn, world_id)
    worlds = _ancestry(lineage)
    rows: list[tuple[Any, ...]] = []
    alone = lineage is None and (filters is None or filters.is_empty)
    if alone:
        rows, exact = _world_alone(
            conn, world_id, "vector" if keywords is None else "hybrid", extra, ef_search
        )
        # A world with a parent searches its lineage (below); a graph search that found fewer than k rows
        # runs again exactly.
        if rows and rows[0][-1] is None and (exact or keywords is not None or len(rows) >= k):
            return _hits(rows, fused=keywords is not None), [world_id]
    if not rows:
        rows = rows_of(worlds, exact=False)
    if lineage is None and (worlds := _read_ancestry(conn, world_id, rows)) is not None:
        rows = rows_of(worlds, exact=False)
    if len(rows) < k and keywords is None:
        rows = rows_of(worlds, exact=True)
    return _hits(rows, fused=keywords is not None), worlds or [world_id]


def _world_alone(
    conn: psycopg.Connection[Any], world_id: str, kind: str, params: dict[str, Any], ef_search: int
) -> tuple[list[tuple[Any, ...]], bool]:
    """One world's unfiltered search with a generic plan, and whether it was exact ([] when neither path
    applies: the caller runs the plain statement). A world in the shared partition is read through
    migration 0014's functions; one with a partition of its own, for hybrid search, by the same statement
    naming that partition (through `Database.read`'s autocommit connections)."""
    params = {"world": world_id} | params
    if world_id not in _not_shared:
        rows = _run(conn, _SHARED_CALLS[kind], params, int(ef_search))
        if rows or not _has_own_partition(conn, world_id):
            return rows, True
        _remember(_not_shared, world_id)
    # Inside a caller's transaction: no generic plan, nor a failure to recover from. Vector search plans in
    # a third of a millisecond: less than the transaction that holds the setting costs (docs/benchmarks.md).
    if not conn.autocommit or kind == "vector":
        return [], False
    try:
        return _run(conn, _own_partition_sql(kind, world_id), params, int(ef_search), generic=True), False
    except psycopg.errors.UndefinedTable:  # not (or no longer) a partition of its own
        _not_shared.discard(world_id)
        return [], False


def _has_own_partition(conn: psycopg.Connection[Any], world_id: str) -> bool:
    row = conn.execute(
        _HAS_OWN_PARTITION_SQL, {"part": own_partition_name(world_id)}, prepare=True
    ).fetchone()
    return bool(row and row[0])


_HAS_OWN_PARTITION_SQL = b"SELECT to_regclass(quote_ident(%(part)s)) IS NOT NULL"


def own_partition_name(world_id: str) -> str:
    """The name migration 0003's `document_chunks_partition_name(world)` gives the world's partition."""
    digest = hashlib.md5(world_id.encode(), usedforsecurity=False).hexdigest()  # a name, not a secret
    return f"chunks_{world_id[:40].replace('-', '_')}_{digest[:8]}"


@functools.lru_cache(maxsize=1024)
def _own_partition_sql(kind: str, world_id: str) -> sql.Composed:
    """The one-world statement over the world's own partition, named: a table, not the partitioned one,
    so its generic plan locks that table alone."""
    parts = _one_world_sql(kind).split("document_chunks c")
    name = sql.Identifier(own_partition_name(world_id))
    pieces: list[sql.Composable] = [sql.SQL(parts[0])]
    for part in parts[1:]:
        pieces += [name, sql.SQL(" c" + part)]
    return sql.Composed(pieces)


# Worlds last seen with a parent: their searches read the lineage first instead of trying the world alone.
# Only the order of the statements depends on it (the lineage itself is read each time), so a stale entry
# costs one round trip, never a wrong answer.
_parented: set[str] = set()
# Worlds last seen with chunks outside the shared partition (a partition of their own): their searches skip
# the shared-partition functions. A stale entry only costs them the faster path.
_not_shared: set[str] = set()
_MAX_REMEMBERED = 10_000


def _remember(worlds: set[str], world_id: str) -> None:
    if len(worlds) >= _MAX_REMEMBERED:
        worlds.clear()
    worlds.add(world_id)


def _known_lineage(conn: psycopg.Connection[Any], world_id: str) -> list[str] | None:
    """The lineage of a world last seen with a parent, read before searching; None for any other."""
    if world_id not in _parented:
        return None
    lineage = world_lineage(conn, world_id)  # UnknownWorldError
    if len(lineage) == 1:
        _parented.discard(world_id)
    return lineage


def _ancestry(lineage: Sequence[str] | None) -> list[str] | None:
    """The worlds to read when they are more than one (None: the world alone, the plain SQL)."""
    return list(lineage) if lineage is not None and len(lineage) > 1 else None


def _read_ancestry(
    conn: psycopg.Connection[Any], world_id: str, rows: list[tuple[Any, ...]]
) -> list[str] | None:
    """After a search of the world alone: its lineage when it has a parent. Rows carry the parent (the
    last column); with none the lineage query doubles as the existence check (UnknownWorldError)."""
    if rows and rows[0][-1] is None:
        return None
    worlds = _ancestry(world_lineage(conn, world_id))
    if worlds is not None:
        _remember(_parented, world_id)
    return worlds


def _hits(rows: list[tuple[Any, ...]], *, fused: bool) -> list[SearchHit]:
    return [
        SearchHit.model_construct(
            rank=rank,
            chunk_id=row[0],
            score=round(float(row[1]), 6) if fused else round(float(row[2]), 4),
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


_GENERIC_PLAN_SQL = b"SELECT set_config('plan_cache_mode', 'force_generic_plan', true)"


def _run(
    conn: psycopg.Connection[Any],
    statement: bytes | sql.Composed,
    params: dict[str, Any],
    ef_search: int,
    *,
    generic: bool = False,
) -> list[tuple[Any, ...]]:
    """`statement`'s rows under the search settings; `generic`: with the session's generic plan of it
    (autocommit connections only: inside a caller's transaction the setting would outlive the search)."""
    if conn.autocommit:
        # No transaction to scope settings to: they are made for the session, once per connection and
        # ef_search, and the query alone is then one round trip. (A pipeline of settings and query
        # would also do, at about a third more client time per search.)
        if _session_ef_search.get(conn) != ef_search:
            conn.execute(_SESSION_SETTINGS_SQL, (str(ef_search),), prepare=True)
            _session_ef_search[conn] = ef_search  # only once made: after a failure the next search retries
        if not generic:
            return conn.execute(statement, params, prepare=True, binary=True).fetchall()
        # A transaction of its own holds the setting for this statement alone, in the same round trip.
        with conn.pipeline(), conn.transaction():
            conn.execute(_GENERIC_PLAN_SQL, prepare=True)
            cursor = conn.execute(statement, params, prepare=True, binary=True)
        return cursor.fetchall()
    # Inside a transaction the settings are transaction-local, sent in one pipeline with the query: one
    # round trip, and a pooled connection never carries them to another caller.
    with conn.pipeline():
        conn.execute(_LOCAL_SETTINGS_SQL, (str(ef_search), STATEMENT_TIMEOUT), prepare=True)
        cursor = conn.execute(statement, params, prepare=True, binary=True)
    return cursor.fetchall()


# Document-level conditions, resolved once into an array of document ids (see the module docstring).
_DOCUMENT_CONDITIONS = {
    "document_keys": "d.s3_key = ANY(%(document_keys)s)",
    "key_prefix": "starts_with(d.s3_key, %(key_prefix)s)",
    "media_types": "d.media_type = ANY(%(media_types)s)",
    "tags": "d.metadata -> 'tags' ?| %(tags)s",
    "metadata": "d.metadata @> %(metadata)s",
}


_WORLD_ONLY = "c.world_id = %(world)s"
# The chunks of a lineage (%(worlds)s, nearest first) less those of documents a nearer world shadows:
# each document of a world is looked up by name in every world after it (the (world_id, s3_key) index).
_LINEAGE = (
    "c.world_id = ANY(%(worlds)s::text[]) AND c.document_id <> ALL(ARRAY(SELECT a.document_id"
    " FROM unnest(%(worlds)s::text[]) WITH ORDINALITY AS near (world_id, pos)"
    " JOIN narrative_documents n ON n.world_id = near.world_id"
    " CROSS JOIN LATERAL (SELECT document_name(n.world_id, n.s3_key) AS name) nm"
    " JOIN unnest(%(worlds)s::text[]) WITH ORDINALITY AS far (world_id, pos) ON far.pos > near.pos"
    " JOIN narrative_documents a ON a.world_id = far.world_id"
    "  AND a.s3_key = ANY(ARRAY['incoming/' || far.world_id || '/' || nm.name, nm.name])))"
)


def _filter_sql(
    world_id: str, filters: SearchFilters | None, worlds: list[str] | None = None
) -> tuple[str, dict[str, Any]]:
    """WHERE conditions on `c` (document_chunks) and their parameters; the SQL text never holds input.

    `worlds`: the lineage to read when the world has ancestors (then `_scoped(..., many=True)`)."""
    where = [_WORLD_ONLY if worlds is None else _LINEAGE]
    params: dict[str, Any] = {"world": world_id} | ({} if worlds is None else {"worlds": worlds})
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


# The world's parent rides along (an init plan run once): see _read_ancestry.
_PARENT = "(SELECT w.parent_world_id FROM worlds w WHERE w.world_id = %(world)s)"
_OUTPUT = (
    "h.chunk_id, {score}, h.similarity, d.s3_key, d.title, h.heading, h.content, h.start_offset, h.end_offset"
    f", {_PARENT}"
)
_CHUNK_COLUMNS = "c.chunk_id, c.document_id, c.heading, c.content, c.start_offset, c.end_offset"


@functools.cache
def _vector_sql(where: str, *, exact: bool, many: bool = False) -> bytes:
    # The exact variant orders by an expression the HNSW index cannot serve, forcing a scan of the
    # filtered rows. The outer ORDER BY restores exact order: relaxed_order scans may return a near tie
    # out of order.
    order = "(c.embedding <=> %(q)b) + 0" if exact else "c.embedding <=> %(q)b"
    return _scoped(
        f"SELECT {_OUTPUT.format(score='h.similarity')}"
        f" FROM (SELECT {_CHUNK_COLUMNS}, 1 - (c.embedding <=> %(q)b) AS similarity"
        f"   FROM document_chunks c WHERE {where} ORDER BY {order} LIMIT %(k)s) h"
        " JOIN narrative_documents d ON d.document_id = h.document_id"
        " ORDER BY h.similarity DESC, h.chunk_id",
        many,
    )


# A query term's inverse document frequency as BM25 weighs it, over `postings p` and `stats s`.
_IDF = "ln(1 + (s.n - p.df + 0.5) / (p.df + 0.5))"
# BM25 of the world's chunks that hold any query term; `filtered` joins the chunks for the other filters.
_BM25_SQL = (
    "terms AS (SELECT DISTINCT u.term FROM unnest(tsvector_to_array(to_tsvector('english', %(keywords)s)))"
    "   AS u(term)),"
    " {stats},"
    # One index range per query term, whatever the plan: OFFSET 0 keeps the lateral subquery a subquery,
    # so a generic plan (which cannot count the query's terms) never reads all the world's postings instead.
    " postings AS (SELECT t.term, p.chunk_id, p.tf, p.chunk_length, count(*) OVER (PARTITION BY t.term) AS df"
    "   FROM terms t CROSS JOIN LATERAL (SELECT p.chunk_id, p.tf, p.chunk_length FROM chunk_terms p"
    "     WHERE p.world_id = %(world)s AND p.term = t.term OFFSET 0) p),"
    f" kw AS (SELECT p.chunk_id, sum({_IDF}"
    f"   * p.tf * ({BM25_K1} + 1) / (p.tf + {BM25_K1} * (1 - {BM25_B} + {BM25_B} * p.chunk_length / s.avgdl)))"
    "   AS score FROM postings p CROSS JOIN stats s{join} GROUP BY p.chunk_id ORDER BY score DESC, p.chunk_id"
    "   LIMIT %(depth)s)"
)


@functools.cache
def _keyword_sql(where: str, filtered: bool) -> str:
    join = f" JOIN document_chunks c ON c.world_id = %(world)s AND c.chunk_id = p.chunk_id WHERE {where}"
    return _BM25_SQL.replace("{join}", join if filtered else "").replace("{stats}", _STATS_ONE)


_STATS_ONE = (
    "stats AS (SELECT chunk_count::float8 AS n, term_total::float8 / chunk_count AS avgdl"
    "   FROM keyword_stats WHERE world_id = %(world)s AND chunk_count > 0 AND term_total > 0)"
)
# A lineage's statistics are the sums of its worlds' (df is summed by counting postings of all of them).
_STATS_MANY = (
    "stats AS (SELECT sum(chunk_count)::float8 AS n, sum(term_total)::float8 / sum(chunk_count) AS avgdl"
    "   FROM keyword_stats WHERE world_id = ANY(%(worlds)s::text[])"
    "   HAVING sum(chunk_count) > 0 AND sum(term_total) > 0)"
)


def _scoped(sql: str, many: bool) -> bytes:
    """`sql` as written (one world), or over the lineage %(worlds)s: every `world_id = %(world)s` becomes
    `= ANY(...)`, statistics are summed, and no parent rides along. The one place the scope changes."""
    if many:
        sql = sql.replace(_PARENT, "NULL::text").replace(_STATS_ONE, _STATS_MANY)
        sql = sql.replace("= %(world)s", "= ANY(%(worlds)s::text[])")
    return sql.encode()


@functools.cache
def _hybrid_sql(where: str, filtered: bool, many: bool = False) -> bytes:
    return _scoped(
        "WITH vec AS ("
        "  SELECT c.chunk_id, 1 - (c.embedding <=> %(q)b) AS similarity FROM document_chunks c"
        f"  WHERE {where} ORDER BY c.embedding <=> %(q)b LIMIT %(depth)s),"
        f" {_keyword_sql(where, filtered)},"
        " fused AS ("
        "  SELECT chunk_id, (1 - %(weight)s) * CASE WHEN vec.similarity IS NULL THEN 0 ELSE coalesce("
        "    (vec.similarity - min(vec.similarity) OVER ())"
        "    / nullif(max(vec.similarity) OVER () - min(vec.similarity) OVER (), 0), 1) END"
        "   + %(weight)s * coalesce(kw.score / nullif(max(kw.score) OVER (), 0), 0) AS score"
        "   FROM vec FULL JOIN kw USING (chunk_id) ORDER BY score DESC, chunk_id"
        f"   LIMIT greatest(%(k)s, {SENTENCE_STAGE_DEPTH})),"
        # Sentence stage: each query term's IDF (as BM25 weighs it), then per chunk of the fused list's
        # head the best sentence's share of their sum. A chunk past the head scores as if no sentence held
        # a term, which can never lift it above the head: the head is reordered, the rest keeps its order.
        f" idf AS (SELECT DISTINCT ON (p.term) p.term, {_IDF} AS idf"
        "   FROM postings p CROSS JOIN stats s),"
        " head AS (SELECT f.chunk_id FROM fused f ORDER BY f.score DESC, f.chunk_id"
        f"   LIMIT {SENTENCE_STAGE_DEPTH}),"
        " coverage AS (SELECT per_sentence.chunk_id, max(per_sentence.idf) / (SELECT sum(idf) FROM idf) AS share"
        # One primary-key probe per (chunk, term): LIMIT 1 (there is one posting per key) keeps the planner
        # from scanning a chunk's postings of every term instead, as a generic plan would.
        "   FROM (SELECT head.chunk_id, sentence.n, sum(i.idf) AS idf FROM head CROSS JOIN idf i"
        "     CROSS JOIN LATERAL (SELECT ct.sentences FROM chunk_terms ct WHERE ct.world_id = %(world)s"
        "       AND ct.term = i.term AND ct.chunk_id = head.chunk_id LIMIT 1) ct"
        "     CROSS JOIN LATERAL unnest(ct.sentences) AS sentence (n) GROUP BY head.chunk_id, sentence.n) per_sentence"
        "   GROUP BY per_sentence.chunk_id),"
        " ranked AS (SELECT f.chunk_id,"
        "   (1 - %(sentence_weight)s) * f.score + %(sentence_weight)s * coalesce(cv.share, 0) AS score"
        "   FROM fused f LEFT JOIN coverage cv USING (chunk_id) ORDER BY score DESC, f.chunk_id LIMIT %(k)s)"
        f" SELECT {_OUTPUT.format(score='h.score')}"
        f" FROM (SELECT {_CHUNK_COLUMNS}, r.score, 1 - (c.embedding <=> %(q)b) AS similarity FROM ranked r"
        # The world condition lets the planner read only that world's partition.
        "   JOIN document_chunks c ON c.world_id = %(world)s AND c.chunk_id = r.chunk_id) h"
        " JOIN narrative_documents d ON d.document_id = h.document_id"
        " ORDER BY h.score DESC, h.chunk_id",
        many,
    )


# Small worlds' searches as functions (migration 0014). A world without a partition of its own is read from
# the shared partition; naming it directly lets PL/pgSQL keep one generic plan per session for all such
# worlds, where the statement above is planned again on every call (it took about half of a hybrid
# search's time, docs/benchmarks.md section 8), and a generic plan of the partitioned table would lock
# every partition. The function bodies are these module's statements over that partition
# (`shared_partition_body`); tests/functional hold the migration's copies equal to them.
_SHARED_ARGUMENTS = {
    "vector": (("world", "text"), ("q", "vector"), ("k", "integer")),
    "hybrid": (
        ("world", "text"),
        ("q", "vector"),
        ("k", "integer"),
        ("keywords", "text"),
        ("depth", "integer"),
        ("weight", "double precision"),
        ("sentence_weight", "double precision"),
    ),
}
SHARED_FUNCTIONS = {"vector": "search_shared_chunks", "hybrid": "search_shared_chunks_hybrid"}


def _one_world_sql(kind: str) -> str:
    """The unfiltered statement of one world without a parent, vector or hybrid."""
    statement = _vector_sql(_WORLD_ONLY, exact=False) if kind == "vector" else _hybrid_sql(_WORLD_ONLY, False)
    return statement.decode()


def shared_partition_body(kind: str) -> str:
    """The query of `SHARED_FUNCTIONS[kind]`: the one-world statement over the shared partition, its
    parameters by position."""
    body = _one_world_sql(kind).replace("document_chunks c", "document_chunks_default c")
    for position, (name, _) in enumerate(_SHARED_ARGUMENTS[kind], start=1):
        body = body.replace(f"%({name})s", f"${position}").replace(f"%({name})b", f"${position}")
    return body


_SHARED_CALLS = {
    kind: (
        f"SELECT * FROM {SHARED_FUNCTIONS[kind]}("
        + ", ".join(f"%({name}){'b' if name == 'q' else 's'}::{type_}" for name, type_ in arguments)
        + ")"
    ).encode()
    for kind, arguments in _SHARED_ARGUMENTS.items()
}


@functools.cache
def _keyword_only_sql(where: str, filtered: bool, many: bool = False) -> bytes:
    return _scoped(
        f"WITH {_keyword_sql(where, filtered)}"
        f" SELECT {_OUTPUT.format(score='h.score')}"
        f" FROM (SELECT {_CHUNK_COLUMNS}, kw.score, 0.0::float8 AS similarity FROM kw"
        "   JOIN document_chunks c ON c.world_id = %(world)s AND c.chunk_id = kw.chunk_id) h"
        " JOIN narrative_documents d ON d.document_id = h.document_id"
        " ORDER BY h.score DESC, h.chunk_id",
        many,
    )


def search_by_keywords(
    conn: psycopg.Connection[Any],
    keywords: str,
    *,
    world_id: str,
    k: int = 10,
    filters: SearchFilters | None = None,
) -> list[SearchHit]:
    """The k chunks of `world_id` with the highest BM25 score for `keywords` (the keyword arm alone).

    Chunks with no query term are not returned. Raises UnknownWorldError when nothing is found in a world
    that does not exist.
    """
    extra = {"keywords": keywords, "depth": int(k)}

    def rows_of(worlds: list[str] | None) -> list[tuple[Any, ...]]:
        where, params = _filter_sql(world_id, filters, worlds)
        sql = _keyword_only_sql(where, where != _WORLD_ONLY, worlds is not None)
        return _run(conn, sql, params | extra, DEFAULT_EF_SEARCH)

    lineage = _known_lineage(conn, world_id)
    rows = rows_of(_ancestry(lineage))
    if lineage is None and (worlds := _read_ancestry(conn, world_id, rows)) is not None:
        rows = rows_of(worlds)
    return _hits(rows, fused=True)
