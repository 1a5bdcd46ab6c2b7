"""Many worlds: chunk-table layouts for N worlds of Zipf-like sizes, side by side in one run.

`bench_search.py --layouts --worlds N` (`kb bench search --worlds N`). World sizes follow 1/rank (a few
large worlds, many of a handful of chunks), about `--chunks` in all. The vectors are synthetic: per world
a centroid, per document of 20 chunks a direction, per chunk noise, normalised (the layout is measured,
not the embedder). Loaded once into a database of its own and reused while the parameters match.

Layouts, each a table of (chunk_id, world_id, embedding), searched by the same world-filtered query:

* `partition per world`: LIST partitions, one per world, each with its HNSW graph (migration 0003);
* `shared + large partitions`: a partition and graph only for worlds of at least `--promote-at` chunks,
  the DEFAULT partition (no graph, a (world_id) index) for the rest, searched exactly (migration 0010);
* `one index`: one table, one HNSW graph and a (world_id) index, pgvector's iterative scan;
* `production`: `document_chunks` as migrated, large worlds promoted by
  knowledge.adapters.postgres.partitions, through `Database.read` + `search_by_vector` (the API's path);
* `production, hybrid`: the same with the query's words, hybrid search as the API runs it by default.
  Chunk texts are words of a synthetic vocabulary drawn by a Zipf law (so BM25 has real document
  frequencies) whose most frequent words are English stop words, as in text (PostgreSQL's english
  list, which the keyword arm drops; `--no-stop-words` keeps synthetic words there, a harsher case);
  a query's words are drawn from a chunk of the document its vector came from. Its overlap with the
  exact vector top 10 is not a recall, and is not reported.

Per layout: recall@10 against exact search (numpy, over the world's vectors), queries/s and latency of
concurrent client processes (prepared statements, as bench_search.py measures), the same while another
connection keeps creating a world and holding its ingesting transaction open, and planning time
(EXPLAIN (ANALYZE): custom plans, and a generic plan's build once and execution after).
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector import Vector
from pgvector.psycopg import register_vector

from knowledge.adapters.postgres import documents
from knowledge.adapters.postgres.database import Database
from knowledge.adapters.postgres.migrations import apply_migrations
from knowledge.adapters.postgres.partitions import promote_large_worlds
from knowledge.model import Chunk
from knowledge.queries.search import DEFAULT_EF_SEARCH, search_by_vector
from local_runtime.postgres import EmbeddedPostgres, drop_database, start_embedded_postgres

DIM = 384
K = 10
CHUNKS_PER_DOCUMENT = 20
VERSION = 3
# Chunk texts: WORDS_PER_CHUNK words of a VOCABULARY-word vocabulary, word r drawn with weight 1/r; the
# most frequent ranks are English stop words unless the corpus is made without them.
VOCABULARY = 5000
WORDS_PER_CHUNK = 30
QUERY_WORDS = 8
MODEL = "bench-synthetic"
# Migration 0010's document_chunks_own_partition_threshold(), for the bench's own shared layout.
DEFAULT_PROMOTE_AT = 500

PER_WORLD = "partition per world"
SHARED = "shared + large partitions"
ONE_INDEX = "one index"
PRODUCTION = "production (document_chunks, search_by_vector)"
PRODUCTION_HYBRID = "production, hybrid (search_by_vector with the query's words)"
_TABLES = {PER_WORLD: "bw_per_world", SHARED: "bw_shared", ONE_INDEX: "bw_one_index"}


def _sql(table: str) -> str:
    return f"SELECT chunk_id FROM {table} WHERE world_id = %(world)s ORDER BY embedding <=> %(q)b LIMIT 10"


def _unit(rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


class Worlds:
    """N worlds of 1/rank sizes (at least 2 chunks each) and their clustered unit vectors."""

    def __init__(self, worlds: int, chunks: int, seed: int = 13, stop_words: Sequence[str] = ()) -> None:
        rng = np.random.default_rng(seed)
        harmonic = float(np.sum(1.0 / np.arange(1, worlds + 1)))
        self.sizes = np.maximum(2, (chunks / harmonic / np.arange(1, worlds + 1)).astype(np.int64))
        self.names = [f"world-{w:05d}" for w in range(worlds)]
        self.chunk_world = np.repeat(np.arange(worlds), self.sizes)
        ordinal = np.concatenate([np.arange(s) for s in self.sizes])
        starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        # Documents never span worlds: a chunk's document is its world's (ordinal // 20)-th.
        doc_in_world = ordinal // CHUNKS_PER_DOCUMENT
        doc_offsets = np.concatenate([[0], np.cumsum(-(-self.sizes // CHUNKS_PER_DOCUMENT))[:-1]])
        self.chunk_document = doc_offsets[self.chunk_world] + doc_in_world
        self.document_world = np.zeros(int(self.chunk_document.max()) + 1, dtype=np.int64)
        self.document_world[self.chunk_document] = self.chunk_world
        self.centroids = _unit(rng.standard_normal((worlds, DIM)))
        self.directions = _unit(rng.standard_normal((len(self.document_world), DIM)))
        self.vectors = self._sample(rng, self.chunk_document)
        self.world_start = starts
        self.seed = seed
        weights = 1.0 / np.arange(1, VOCABULARY + 1)
        self._words = rng.choice(
            VOCABULARY, (len(self.chunk_world), WORDS_PER_CHUNK), p=weights / weights.sum()
        )
        self._vocabulary = [*stop_words[:VOCABULARY], *(f"w{r}" for r in range(len(stop_words), VOCABULARY))]

    def text(self, chunk: int) -> str:
        return " ".join(self._vocabulary[w] for w in self._words[chunk])

    def _sample(self, rng: np.random.Generator, docs: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        noise = _unit(rng.standard_normal((len(docs), DIM)))
        return _unit(self.centroids[self.document_world[docs]] + 0.5 * self.directions[docs] + 0.8 * noise)

    def queries(self, n: int) -> tuple[np.ndarray[Any, Any], list[int]]:
        """Half from a uniformly drawn world (most are small), half from the world of a random chunk."""
        rng = np.random.default_rng(self.seed + 1)
        by_world = rng.integers(0, len(self.names), n // 2)
        by_chunk = self.chunk_world[rng.integers(0, len(self.chunk_world), n - n // 2)]
        worlds = np.concatenate([by_world, by_chunk])
        rng.shuffle(worlds)
        chunks = np.array([self.world_start[w] + rng.integers(0, self.sizes[w]) for w in worlds])
        self.query_words = [
            " ".join(self._vocabulary[w] for w in rng.choice(self._words[c], QUERY_WORDS, replace=False))
            for c in chunks
        ]
        return self._sample(rng, self.chunk_document[chunks]), [int(w) for w in worlds]

    def exact(self, queries: np.ndarray[Any, Any], worlds: list[int]) -> list[set[int]]:
        """Exact top-10 chunk indexes (0-based, load order) of each query within its world."""
        truth = []
        for q, w in zip(queries, worlds, strict=True):
            start, size = int(self.world_start[w]), int(self.sizes[w])
            sims = self.vectors[start : start + size] @ q
            top = np.argsort(-sims)[:K]
            truth.append({start + int(i) for i in top})
        return truth


# --- loading --------------------------------------------------------------------------------------------


def _copy_rows(conn: psycopg.Connection[Any], table: str, corpus: Worlds) -> None:
    # Rows are in world order; a transaction per 200 worlds keeps the partitions it locks within the lock table.
    for first in range(0, len(corpus.names), 200):
        start = int(corpus.world_start[first])
        last = min(first + 200, len(corpus.names)) - 1
        end = int(corpus.world_start[last] + corpus.sizes[last])
        with conn.cursor().copy(
            f"COPY {table} (chunk_id, world_id, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "text", "vector"])
            for i in range(start, end):
                copy.write_row((i, corpus.names[int(corpus.chunk_world[i])], Vector(corpus.vectors[i])))
        conn.commit()


def _partitioned(conn: psycopg.Connection[Any], table: str, worlds: list[str], *, default: bool) -> None:
    conn.execute(
        f"CREATE TABLE {table} (chunk_id bigint NOT NULL, world_id text NOT NULL, embedding vector({DIM}) NOT NULL)"
        " PARTITION BY LIST (world_id)"
    )
    for n, world in enumerate(worlds):
        conn.execute(f"CREATE TABLE {table}_{n} PARTITION OF {table} FOR VALUES IN ('{world}')")
        if n % 200 == 199:
            conn.commit()  # a transaction locks every table it creates: keep it within the lock table
    if default:
        conn.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
    conn.commit()


def _load(
    pg: EmbeddedPostgres, name: str, corpus: Worlds, promote_at: int, params: dict[str, Any], log: Any
) -> None:
    start_embedded_postgres(pg.data_dir, name)
    drop_database(pg, name)
    large = [corpus.names[w] for w in np.flatnonzero(corpus.sizes >= promote_at)]
    with psycopg.connect(pg.conninfo(name)) as conn:
        apply_migrations(conn, embedding_model=MODEL, embedding_dimension=DIM)
        conn.autocommit = False
        register_vector(conn)
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        started = time.perf_counter()
        _partitioned(conn, "bw_per_world", corpus.names, default=False)
        _partitioned(conn, "bw_shared", large, default=True)
        conn.execute(
            f"CREATE TABLE bw_one_index (chunk_id bigint PRIMARY KEY, world_id text NOT NULL, embedding vector({DIM}) NOT NULL)"
        )
        for table in _TABLES.values():
            _copy_rows(conn, table, corpus)
        conn.commit()
        log(
            f"created {len(corpus.names):,} partitions and copied the rows in {time.perf_counter() - started:.1f}s"
        )
        started = time.perf_counter()
        for n in range(len(corpus.names)):  # each partition's own graph, a transaction per 200
            conn.execute(f"CREATE INDEX ON bw_per_world_{n} USING hnsw (embedding vector_cosine_ops)")
            if n % 200 == 199:
                conn.commit()
        for n in range(len(large)):
            conn.execute(f"CREATE INDEX ON bw_shared_{n} USING hnsw (embedding vector_cosine_ops)")
        conn.execute("CREATE INDEX ON bw_shared_default (world_id)")
        conn.execute("CREATE INDEX ON bw_one_index USING hnsw (embedding vector_cosine_ops)")
        conn.execute("CREATE INDEX ON bw_one_index (world_id)")
        conn.commit()
        log(f"built the layouts' indexes in {time.perf_counter() - started:.1f}s")

        started = time.perf_counter()
        for start in range(0, len(corpus.names), 500):
            batch = corpus.names[start : start + 500]
            conn.execute(
                "INSERT INTO worlds (world_id, name) SELECT w, w FROM unnest(%s::text[]) AS w", (batch,)
            )
        with conn.cursor().copy(
            "COPY narrative_documents (world_id, s3_key, title, media_type, content_sha256, size_bytes,"
            " embedding_model) FROM STDIN"
        ) as copy:
            for d, w in enumerate(corpus.document_world):
                world = corpus.names[int(w)]
                copy.write_row(
                    (
                        world,
                        f"incoming/{world}/doc-{d:06d}.md",
                        f"Document {d}",
                        "text/markdown",
                        "0" * 64,
                        1000,
                        MODEL,
                    )
                )
        ids = [r[0] for r in conn.execute("SELECT document_id FROM narrative_documents ORDER BY document_id")]
        with conn.cursor().copy(
            "COPY document_chunks (document_id, world_id, ordinal, heading, content, token_count, start_offset,"
            " end_offset, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "text", "int4", "text", "text", "int4", "int4", "int4", "vector"])
            for i, v in enumerate(corpus.vectors):
                cw, d = int(corpus.chunk_world[i]), int(corpus.chunk_document[i])
                ordinal = int(i - corpus.world_start[cw]) % CHUNKS_PER_DOCUMENT
                copy.write_row(
                    (
                        ids[d],
                        corpus.names[cw],
                        ordinal,
                        "Section",
                        corpus.text(i),
                        WORDS_PER_CHUNK,
                        0,
                        10,
                        Vector(v),
                    )
                )
        conn.commit()
        promoted = promote_large_worlds(conn)
        log(
            f"loaded document_chunks and promoted {len(promoted)} worlds in {time.perf_counter() - started:.1f}s"
        )
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        conn.execute("CREATE TABLE bench_meta (params jsonb NOT NULL)")
        conn.execute("INSERT INTO bench_meta VALUES (%s::jsonb)", (json.dumps(params),))


def _cached(pg: EmbeddedPostgres, name: str, params: dict[str, Any]) -> bool:
    with psycopg.connect(pg.conninfo("postgres")) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            return False
    with psycopg.connect(pg.conninfo(name)) as conn:
        try:
            row = conn.execute("SELECT params FROM bench_meta").fetchone()
        except psycopg.errors.UndefinedTable:
            return False
    return row is not None and dict(row[0]) == params


# --- measurements ---------------------------------------------------------------------------------------


def _searcher(conninfo: str, layout: str, ef: int) -> tuple[Any, Any, psycopg.Connection[Any] | None]:
    """A function running one search (vector, world, words) -> chunk ids, its closer and its plain
    connection."""
    if layout in (PRODUCTION, PRODUCTION_HYBRID):
        db = Database(lambda: conninfo, max_size=1)
        with psycopg.connect(conninfo) as conn:
            first = int(conn.execute("SELECT min(chunk_id) FROM document_chunks").fetchone()[0])  # type: ignore[index]
        hybrid = layout == PRODUCTION_HYBRID

        def production(q: Vector, world: str, words: str = "") -> list[int]:
            keywords = words if hybrid else None
            hits = db.read(
                lambda c: search_by_vector(c, q, world_id=world, k=K, ef_search=ef, keywords=keywords)
            )
            return [h.chunk_id - first for h in hits]

        return production, db.close, None
    conn = psycopg.connect(conninfo, autocommit=True)
    register_vector(conn)
    conn.execute(f"SET hnsw.ef_search = {int(ef)}")
    conn.execute("SET hnsw.iterative_scan = relaxed_order")
    sql = _sql(_TABLES[layout]).encode()

    def raw(q: Vector, world: str, words: str = "") -> list[int]:
        return [r[0] for r in conn.execute(sql, {"q": q, "world": world}, prepare=True, binary=True)]

    return raw, conn.close, conn


def _client(
    args: tuple[str, str, Any, list[str], list[str], int, float, float, int],
) -> tuple[list[float], dict[str, int]]:
    """One client process searching for `seconds`; failed searches are counted, not timed."""
    conninfo, layout, queries, worlds, words, ef, start_at, seconds, offset = args
    vectors = [Vector(q) for q in queries]
    one, close, conn = _searcher(conninfo, layout, ef)
    for i in range(10):  # connect, prepare and warm the caches before the clock starts
        with contextlib.suppress(psycopg.Error):  # counted below, where it recurs
            one(vectors[i], worlds[i], words[i])
    time.sleep(max(0.0, start_at - time.time()))
    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds
    i = offset
    while (now := time.perf_counter()) < end:
        try:
            one(vectors[i % len(vectors)], worlds[i % len(vectors)], words[i % len(vectors)])
            latencies.append(time.perf_counter() - now)
        except psycopg.Error:
            errors += 1
        i += 1
    plans: dict[str, int] = {"errors": errors}
    if conn is not None:
        # The plan cache of this client's own session: did the server settle on a generic plan?
        row = conn.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements").fetchone()
        plans |= {"generic_plans": int(row[0]), "custom_plans": int(row[1])} if row else {}
    close()
    return latencies, plans


def _ingester(args: tuple[str, str, float, float, float, int]) -> int | str:
    """Create a new world and hold its ingesting transaction open `hold` s, again and again: the worlds
    made, or why the first could not be (10,000 partitions: out of shared memory)."""
    try:
        return _ingest_worlds(args)
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {exc.diag.message_primary}"


def _ingest_worlds(args: tuple[str, str, float, float, float, int]) -> int:
    conninfo, layout, start_at, seconds, hold, seed = args
    conn = psycopg.connect(conninfo)
    register_vector(conn)
    rng = np.random.default_rng(seed)
    time.sleep(max(0.0, start_at - time.time()))
    end = time.perf_counter() + seconds
    made = 0
    while time.perf_counter() < end:
        world = f"new-{seed}-{made:04d}"
        vectors = _unit(rng.standard_normal((40, DIM)))
        if layout in (PRODUCTION, PRODUCTION_HYBRID):
            chunks = [Chunk(i, "Part", f"new chunk {i}", 0, 10, 3) for i in range(len(vectors))]
            documents.store_document(
                conn,
                documents.DocumentToStore(
                    world_id=world, s3_key=f"incoming/{world}/a.md", title="a", media_type="text/markdown",
                    content_sha256="1" * 64, size_bytes=10, embedding_model=MODEL, chunks=chunks,
                    chunk_vectors=vectors.tolist(), concepts=[], concept_vectors=[],
                    relationships=[], metadata={},
                ),
            )  # fmt: skip
        else:
            table = _TABLES[layout]
            if layout == PER_WORLD:  # what migration 0003's trigger did for a new world
                conn.execute(
                    f"CREATE TABLE {table}_{world.replace('-', '_')} PARTITION OF {table} FOR VALUES IN ('{world}')"
                )
            with conn.cursor().copy(
                f"COPY {table} (chunk_id, world_id, embedding) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "text", "vector"])
                for i, v in enumerate(vectors):
                    copy.write_row((-1 - 1000 * made - i, world, Vector(v)))
        conn.execute("SELECT pg_sleep(%s)", (hold,))
        conn.commit()
        made += 1
    conn.close()
    return made


def _cleanup(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for (table,) in conn.execute(
            "SELECT relname FROM pg_class WHERE relname LIKE 'bw_per_world_new_%'"
        ).fetchall():
            conn.execute(f"DROP TABLE {table}")
        # The per-world layout's new rows went with their partitions (a DELETE over 10,000 would lock all).
        for layout, table in _TABLES.items():
            if layout != PER_WORLD:
                conn.execute(f"DELETE FROM {table} WHERE world_id LIKE 'new-%'")
        conn.execute("DELETE FROM narrative_documents WHERE world_id LIKE 'new-%'")
        conn.execute("DELETE FROM keyword_stats WHERE world_id LIKE 'new-%'")
        conn.execute("DELETE FROM worlds WHERE world_id LIKE 'new-%'")


def _throughput(
    conninfo: str,
    layout: str,
    queries: Any,
    worlds: list[str],
    words: list[str],
    ef: int,
    clients: int,
    seconds: float,
    hold: float,
) -> dict[str, Any]:
    start_at = time.time() + 2.0
    jobs = [(conninfo, layout, queries, worlds, words, ef, start_at, seconds, 37 * c) for c in range(clients)]
    with multiprocessing.get_context("fork").Pool(clients + (1 if hold else 0)) as pool:
        ingest = (
            pool.apply_async(_ingester, ((conninfo, layout, start_at, seconds, hold, 1),)) if hold else None
        )
        results = pool.map(_client, jobs)
        made = ingest.get() if ingest else 0
    if hold:
        _cleanup(conninfo)
    latencies = sorted(t for ts, _ in results for t in ts)
    plans = {
        key: sum(p.get(key, 0) for _, p in results) for key in ("generic_plans", "custom_plans", "errors")
    }
    if not latencies:  # every search failed (see "errors"): no latency to report
        latencies = [math.nan]
    return {
        "qps": len(latencies) / seconds if not math.isnan(latencies[0]) else 0.0,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "max_ms": 1000 * latencies[-1],
        "load_average": os.getloadavg()[0],
        **plans,
        **({"worlds_created": made} if hold else {}),
    }


def _explain_ms(conn: psycopg.Connection[Any], sql: str) -> tuple[float, float]:
    plan = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}".encode(), prepare=False).fetchone()[0][0]  # type: ignore[index]
    return float(plan["Planning Time"]), float(plan["Execution Time"])


def _literal(q: Any) -> str:
    return "'[" + ",".join(f"{x:.6f}" for x in q) + "]'"


def _planning(conninfo: str, layout: str, queries: Any, worlds: list[str], ef: int) -> dict[str, Any]:
    """Median custom-plan planning and execution ms; a generic plan's first (building) EXECUTE and the rest."""
    table = "document_chunks" if layout == PRODUCTION else _TABLES[layout]
    custom_sql = (
        f"SELECT chunk_id FROM {table} WHERE world_id = '{{w}}' ORDER BY embedding <=> {{q}} LIMIT 10"
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(f"SET hnsw.ef_search = {int(ef)}")
        conn.execute("SET hnsw.iterative_scan = relaxed_order")
        pairs = [(_literal(q), w) for q, w in zip(queries, worlds, strict=True)]
        custom = [_explain_ms(conn, custom_sql.format(w=w, q=q)) for q, w in pairs]
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(
            f"PREPARE bw(text, vector) AS SELECT chunk_id FROM {table} WHERE world_id = $1"
            " ORDER BY embedding <=> $2 LIMIT 10"
        )
        try:
            generic = [_explain_ms(conn, f"EXECUTE bw('{w}', {q})") for q, w in pairs]
        except psycopg.errors.OutOfMemory as exc:  # a lock per partition and index overflows the lock table
            generic, error = [], exc.diag.message_primary
        conn.execute("DEALLOCATE ALL")
    measured: dict[str, Any] = {
        "custom_planning_ms": statistics.median(p for p, _ in custom),
        "custom_execution_ms": statistics.median(e for _, e in custom),
    }
    if not generic:
        return measured | {"generic_first_ms": None, "generic_execution_ms": None, "generic_error": error}
    return measured | {
        "generic_first_ms": generic[0][0] + generic[0][1],
        "generic_execution_ms": statistics.median(e for _, e in generic[1:]),
    }


def _recall(
    conninfo: str, layout: str, queries: Any, worlds: list[str], truth: list[set[int]], ef: int
) -> float:
    one, close, _ = _searcher(conninfo, layout, ef)
    found = []
    for q, w in zip(queries, worlds, strict=True):
        try:
            found.append(set(one(Vector(q), w)))
        except psycopg.Error:  # e.g. a generic plan over 10,000 partitions overflows the lock table
            found.append(set())
    close()
    return sum(len(f & t) for f, t in zip(found, truth, strict=True)) / sum(len(t) for t in truth)


def _stop_words(pg: EmbeddedPostgres) -> list[str]:
    """PostgreSQL's english stop words, in the order of its list (to_tsvector('english') drops them)."""
    with psycopg.connect(pg.conninfo("postgres")) as conn:
        (share,) = conn.execute("SELECT setting FROM pg_config WHERE name = 'SHAREDIR'").fetchone()  # type: ignore[misc]
    path = Path(share) / "tsearch_data" / "english.stop"
    return [w for w in path.read_text().split() if w]


def run(
    *,
    worlds: int,
    chunks: int,
    home: Any,
    clients: int,
    seconds: float,
    recall_queries: int,
    promote_at: int,
    hold: float,
    ef: int = DEFAULT_EF_SEARCH,
    repeat: int = 1,
    stop_words: bool = True,
    log: Any,
) -> dict[str, Any]:
    pg = start_embedded_postgres(home / "pg", "postgres")
    corpus = Worlds(worlds, chunks, stop_words=_stop_words(pg) if stop_words else ())
    name = f"bench_worlds_{worlds}_{chunks}_{promote_at}_v{VERSION}{'' if stop_words else '_no_stop_words'}"
    params = {
        "worlds": worlds,
        "chunks": chunks,
        "promote_at": promote_at,
        "seed": corpus.seed,
        "version": VERSION,
        "stop_words": stop_words,
    }
    if _cached(pg, name, params):
        log(f"reusing the cached layouts in database {name}")
    else:
        _load(pg, name, corpus, promote_at, params, log)
    conninfo = pg.conninfo(name)
    queries, query_worlds = corpus.queries(max(recall_queries, 400))
    names = [corpus.names[w] for w in query_worlds]
    truth = corpus.exact(queries[:recall_queries], query_worlds[:recall_queries])
    result: dict[str, Any] = {
        "worlds": worlds,
        "chunks": int(corpus.sizes.sum()),
        "largest_world": int(corpus.sizes[0]),
        "median_world": float(np.median(corpus.sizes)),
        "promote_at": promote_at,
        "stop_words": stop_words,
        "own_partitions": int(np.sum(corpus.sizes >= promote_at)),
        "dimension": DIM,
        "ef_search": ef,
        "clients": clients,
        "seconds_per_measurement": seconds,
        "hold_s": hold,
        "repeat": repeat,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "layouts": {},
    }
    words = corpus.query_words
    layouts = (PER_WORLD, SHARED, ONE_INDEX, PRODUCTION, PRODUCTION_HYBRID)
    for layout in layouts[:-1]:
        result["layouts"][layout] = {
            "recall_at_10": _recall(
                conninfo, layout, queries[:recall_queries], names[:recall_queries], truth, ef
            ),
            **_planning(conninfo, layout, queries[:30], names[:30], ef),
            "samples": [],
        }
    # Hybrid: not a vector ranking, so no recall against exact vector search; its planning is the API's.
    result["layouts"][PRODUCTION_HYBRID] = {"recall_at_10": None, "custom_planning_ms": None, "samples": []}
    result["layouts"][PRODUCTION_HYBRID] |= {"generic_first_ms": None, "generic_error": "n/a"}
    # The layouts alternate, so a burst of load from elsewhere hits all alike; medians are reported.
    for _ in range(repeat):
        for layout in layouts:
            sample = _throughput(conninfo, layout, queries, names, words, ef, clients, seconds, 0.0)
            result["layouts"][layout]["samples"].append(sample)
            log(f"{layout}: {sample['qps']:,.0f} queries/s (load {sample['load_average']:.2f})")
    for layout in layouts:
        entry = result["layouts"][layout]
        for key in ("qps", "p50_ms", "p99_ms", "max_ms", "load_average"):
            entry[key] = statistics.median(m[key] for m in entry["samples"])
        for key in ("generic_plans", "custom_plans", "errors"):
            entry[key] = sum(m.get(key, 0) for m in entry["samples"])
        entry["while_creating_worlds"] = _throughput(
            conninfo, layout, queries, names, words, ef, clients, seconds, hold
        )
        log(f"{layout}: recall@10 {_fraction(entry['recall_at_10'])}, p99 while creating worlds"
            f" {entry['while_creating_worlds']['p99_ms']:.1f} ms")  # fmt: skip
    result["load_average_at_end"] = list(os.getloadavg())
    return result


def report(r: dict[str, Any]) -> None:
    print(f"\n{r['worlds']:,} worlds, {r['chunks']:,} chunks x {r['dimension']} dims (largest world {r['largest_world']:,},"
          f" median {r['median_world']:g}; {r['own_partitions']} worlds of >= {r['promote_at']:,} chunks),"
          f" ef_search {r['ef_search']}, {r['clients']} client processes on {r['cpu_count']} CPUs,"
          f" {r['seconds_per_measurement']:g}s each, {r['repeat']} alternating repeats; load average {r['load_average_at_start'][0]:.2f}"
          f" -> {r['load_average_at_end'][0]:.2f}\n")  # fmt: skip
    print("| layout | recall@10 | queries/s (median) | p50 ms | p99 ms | p99 ms, creating worlds | max ms, creating worlds |"
          " planning ms (custom) | generic plan: first ms / execution ms | load |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for layout, v in r["layouts"].items():
        c = v["while_creating_worlds"]
        planning = "n/a" if v["custom_planning_ms"] is None else f"{v['custom_planning_ms']:.2f}"
        print(f"| {layout} | {_fraction(v['recall_at_10'])} | {v['qps']:,.0f} | {_ms(v['p50_ms'], 2)} | {_ms(v['p99_ms'])} |"
              f" {_ms(c['p99_ms'])} | {_ms(c['max_ms'], 0)} | {planning} |"
              f" {_generic(v)} | {v['load_average']:.2f} |")  # fmt: skip


def _fraction(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _ms(value: float, digits: int = 1) -> str:
    return "fails" if math.isnan(value) else f"{value:,.{digits}f}"  # NaN: no search answered


def _generic(v: dict[str, Any]) -> str:
    if v["generic_first_ms"] is None:
        return "n/a" if v["generic_error"] == "n/a" else f"fails: {v['generic_error']}"
    return f"{v['generic_first_ms']:.1f} / {v['generic_execution_ms']:.2f}"
