"""Search benchmark: our world-scoped query path against langchain-postgres, on the same vectors.

A synthetic corpus (default 100,000 chunks x 384 dims in 10 worlds) of clustered unit vectors -- topic
centroids, a per-document direction and noise, normalised -- is loaded once into a dedicated database of
the embedded PostgreSQL and reused while the parameters match. In one run, side by side:

* recall@10 of the HNSW searches against exact search (`enable_indexscan = off`, a sequential scan) on a
  sample of held-out queries, unfiltered and filtered to the query's world, across `ef_search` values;
* queries/s and latency of the API's path -- `Database.read` (the read pool: autocommit, session
  settings made once per connection) running `knowledge.adapters.postgres.search.search_by_vector` (prepared statement,
  binary vector) on `document_chunks` as migrated (list-partitioned by world) -- with concurrent client
  *processes*, world-scoped as every API search is; the same through `Database.transaction` for
  comparison;
* the two ways of filtering by world, with the same minimal client: the production table (an HNSW
  graph per world partition) versus a copy in one unpartitioned table with one HNSW index, filtered by
  iterative scans;
* langchain-postgres `PGVector.similarity_search_by_vector` (its own tables, filled with the same vectors
  by SQL, with an HNSW cosine index added; its defaults otherwise), unfiltered and with `filter={"world"}`.
  It runs in its own virtual environment (see --baseline-python): langchain-postgres requires pgvector<0.4.

The machine is shared: each measurement records the 1-minute load average, and `--repeat N` alternates
ours and the baseline N times at the chosen ef_search, reporting the medians (samples kept in the JSON).

Prints a Markdown report and a JSON line; `--json` prints only the JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector import Vector
from pgvector.psycopg import register_vector

from knowledge.adapters.postgres.database import Database
from knowledge.adapters.postgres.migrations import apply_migrations
from knowledge.adapters.postgres.partitions import promote_large_worlds
from knowledge.queries.search import DEFAULT_EF_SEARCH, search_by_vector
from local_runtime.postgres import EmbeddedPostgres, drop_database, embedded_postgres, start_embedded_postgres

DIM = 384
K = 10
CHUNKS_PER_DOCUMENT = 20
TOPICS_PER_WORLD = 24
SHARED_TOPICS = 16  # themes every world shares (war, trade, ...): worlds overlap in vector space
CORPUS_VERSION = 4  # 3: document_chunks partitioned by world (migration 0003); 4: large worlds only (0010)
REPO = Path(__file__).resolve().parent.parent
BASELINE_PYTHON = REPO / ".local" / "baseline-venv" / "bin" / "python"
BASELINE_SCRIPT = Path(__file__).resolve().parent / "baseline_langchain.py"
BASELINE_COLLECTION = "bench"
WORDS = [
    "ember",
    "tide",
    "lantern",
    "guild",
    "court",
    "tithe",
    "ash",
    "salt",
    "keeper",
    "vigil",
    "smuggler",
    "reef",
    "kiln",
    "throne",
    "queen",
    "harbour",
    "storm",
    "oath",
    "exile",
    "heir",
    "ledger",
    "forge",
    "caldera",
    "beacon",
    "drowned",
    "council",
    "feast",
    "night",
    "trial",
    "conspiracy",
]

PARTITIONED = "partitioned by world"
ONE_INDEX = "one index, iterative scan"
_LAYOUT_SQL = {
    ONE_INDEX: (
        "SELECT chunk_id FROM bench_chunks_one_index WHERE world_id = %(world)s"
        " ORDER BY embedding <=> %(q)b LIMIT 10"
    ),
    PARTITIONED: (
        "SELECT chunk_id FROM document_chunks WHERE world_id = %(world)s ORDER BY embedding <=> %(q)b LIMIT 10"
    ),
}
_UNFILTERED_SQL = "SELECT chunk_id FROM document_chunks ORDER BY embedding <=> %(q)b LIMIT 10"


# --- corpus ---------------------------------------------------------------------------------------------


def _unit(rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


class Corpus:
    """Deterministic clustered vectors: chunk = centroid + 0.5 document direction + 0.8 noise, normalised."""

    def __init__(self, chunks: int, worlds: int, seed: int = 11) -> None:
        rng = np.random.default_rng(seed)
        self.worlds = [f"world-{w:02d}" for w in range(worlds)]
        self.centroids = _unit(rng.standard_normal((worlds * TOPICS_PER_WORLD + SHARED_TOPICS, DIM)))
        documents = -(-chunks // CHUNKS_PER_DOCUMENT)
        self.document_world = rng.integers(0, worlds, documents)
        self.document_topic = np.array([self._topic(rng, int(w)) for w in self.document_world])
        self.document_direction = _unit(rng.standard_normal((documents, DIM)))
        self.chunk_document = np.arange(chunks) // CHUNKS_PER_DOCUMENT
        self.vectors = self._sample(rng, self.chunk_document)
        self.chunk_world = self.document_world[self.chunk_document]
        self.seed = seed

    def _topic(self, rng: np.random.Generator, world: int) -> int:
        if rng.random() < 0.2:
            return len(self.centroids) - 1 - int(rng.integers(0, SHARED_TOPICS))
        return world * TOPICS_PER_WORLD + int(rng.integers(0, TOPICS_PER_WORLD))

    def _sample(self, rng: np.random.Generator, documents: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        noise = _unit(rng.standard_normal((len(documents), DIM)))
        rows = (
            self.centroids[self.document_topic[documents]]
            + 0.5 * self.document_direction[documents]
            + 0.8 * noise
        )
        return _unit(rows)

    def queries(self, n: int) -> tuple[np.ndarray[Any, Any], list[str]]:
        """Held-out queries drawn like chunks of random documents, with each document's world."""
        rng = np.random.default_rng(self.seed + 1)
        documents = rng.integers(0, len(self.document_world), n)
        return self._sample(rng, documents), [self.worlds[int(w)] for w in self.document_world[documents]]


# --- database -------------------------------------------------------------------------------------------


def _database_name(chunks: int, worlds: int) -> str:
    return f"bench_search_{chunks}_{worlds}_v{CORPUS_VERSION}"


def _cached(pg: EmbeddedPostgres, name: str, params: dict[str, Any]) -> bool:
    with psycopg.connect(pg.conninfo("postgres")) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            return False
    with psycopg.connect(pg.conninfo(name)) as conn:
        try:
            row = conn.execute("SELECT params FROM bench_meta").fetchone()
        except psycopg.errors.UndefinedTable:
            return False
    if row is None:
        return False
    cached = dict(row[0])
    # A corpus loaded with the baseline's tables serves runs without the baseline too.
    return cached.pop("baseline") >= params["baseline"] and cached == {
        k: v for k, v in params.items() if k != "baseline"
    }


def _load(pg: EmbeddedPostgres, name: str, corpus: Corpus, params: dict[str, Any], log: Any) -> None:
    start_embedded_postgres(pg.data_dir, name)
    drop_database(pg, name)
    with psycopg.connect(pg.conninfo(name)) as conn:
        apply_migrations(conn, embedding_model="bench-synthetic", embedding_dimension=DIM)
        conn.commit()
        register_vector(conn)
        # Bulk load into the shared partition (it has no graph), then promote: each large world's graph is
        # built once over its rows, far faster than inserting into it (migration 0010).
        for world in corpus.worlds:
            conn.execute("INSERT INTO worlds (world_id, name) VALUES (%s, %s)", (world, world))
        started = time.perf_counter()
        rng = np.random.default_rng(corpus.seed + 2)
        with conn.cursor().copy(
            "COPY narrative_documents (world_id, s3_key, title, media_type, content_sha256, size_bytes,"
            " embedding_model, metadata) FROM STDIN"
        ) as copy:
            for d, w in enumerate(corpus.document_world):
                world = corpus.worlds[int(w)]
                tags = json.dumps({"tags": [WORDS[int(corpus.document_topic[d]) % len(WORDS)]]})
                copy.write_row(
                    (world, f"incoming/{world}/doc-{d:06d}.md", f"Document {d}", "text/markdown", "0" * 64, 1000,
                     "bench-synthetic", tags)
                )  # fmt: skip
        ids = [r[0] for r in conn.execute("SELECT document_id FROM narrative_documents ORDER BY document_id")]
        with conn.cursor().copy(
            "COPY document_chunks (document_id, world_id, ordinal, heading, content, token_count, start_offset,"
            " end_offset, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "text", "int4", "text", "text", "int4", "int4", "int4", "vector"])
            for i, vector in enumerate(corpus.vectors):
                d = int(corpus.chunk_document[i])
                text = " ".join(WORDS[j] for j in rng.integers(0, len(WORDS), 60))
                ordinal = i % CHUNKS_PER_DOCUMENT
                copy.write_row(
                    (ids[d], corpus.worlds[int(corpus.chunk_world[i])], ordinal, f"Section {ordinal}", text, 80,
                     ordinal * 500, ordinal * 500 + len(text), Vector(vector))
                )  # fmt: skip
        conn.commit()
        log(f"loaded {len(corpus.vectors):,} chunks in {time.perf_counter() - started:.1f}s")

        conn.execute("SET maintenance_work_mem = '1GB'")
        started = time.perf_counter()
        promoted = promote_large_worlds(conn)
        log(
            f"promoted {len(promoted)} worlds to their own partition and graph in {time.perf_counter() - started:.1f}s"
        )

        # The layout before migration 0003, for comparison: one table, one graph, the world a filter.
        started = time.perf_counter()
        conn.execute(
            "CREATE TABLE bench_chunks_one_index (chunk_id bigint PRIMARY KEY, world_id text NOT NULL,"
            f" embedding vector({DIM}) NOT NULL)"
        )
        conn.execute(
            "INSERT INTO bench_chunks_one_index SELECT chunk_id, world_id, embedding FROM document_chunks"
        )
        conn.execute("CREATE INDEX ON bench_chunks_one_index (world_id)")
        conn.execute("CREATE INDEX ON bench_chunks_one_index USING hnsw (embedding vector_cosine_ops)")
        conn.commit()
        log(f"built the one-index copy in {time.perf_counter() - started:.1f}s")

    if params["baseline"]:
        started = time.perf_counter()
        setup = _baseline(pg, name, "setup")
        with psycopg.connect(pg.conninfo(name)) as conn:
            conn.execute(
                "INSERT INTO langchain_pg_embedding (id, collection_id, embedding, document, cmetadata)"
                " SELECT chunk_id::text, %s, embedding, content, jsonb_build_object('world', world_id)"
                " FROM document_chunks",
                (setup["collection_uuid"],),
            )
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.execute("CREATE INDEX ON langchain_pg_embedding USING hnsw (embedding vector_cosine_ops)")
        log(f"filled the langchain-postgres tables in {time.perf_counter() - started:.1f}s")

    with psycopg.connect(pg.conninfo(name)) as conn:
        conn.execute("ANALYZE")
        conn.execute("CREATE TABLE bench_meta (params jsonb NOT NULL)")
        conn.execute("INSERT INTO bench_meta VALUES (%s::jsonb)", (json.dumps(params),))


# --- measurements ---------------------------------------------------------------------------------------


def _exact(
    conn: psycopg.Connection[Any], queries: np.ndarray[Any, Any], worlds: list[str] | None
) -> list[set[int]]:
    truth = []
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        for i, q in enumerate(queries):
            sql = _LAYOUT_SQL[PARTITIONED] if worlds else _UNFILTERED_SQL
            params = {"q": Vector(q), "world": worlds[i] if worlds else None}
            # Never prepared: a cached plan made with index scans off would make later searches exact too.
            truth.append({r[0] for r in conn.execute(sql, params, prepare=False)})
    return truth


def _recall(found: list[list[int]] | list[set[int]], truth: list[set[int]]) -> float:
    return sum(len(set(f) & t) for f, t in zip(found, truth, strict=True)) / sum(len(t) for t in truth)


def _settings(conn: psycopg.Connection[Any], ef: int) -> None:
    conn.execute(f"SET hnsw.ef_search = {int(ef)}")
    conn.execute("SET hnsw.iterative_scan = relaxed_order")
    conn.commit()


def _raw_ids(
    conn: psycopg.Connection[Any], sql: str, queries: Any, worlds: list[str] | None
) -> list[list[int]]:
    return [
        [
            r[0]
            for r in conn.execute(
                sql, {"q": Vector(q), "world": worlds[i] if worlds else None}, prepare=False
            )
        ]
        for i, q in enumerate(queries)
    ]


def _client(args: tuple[str, str, Any, list[str], int, float, float, int]) -> tuple[int, list[float]]:
    """One client process: `api` runs search_by_vector through Database.read (the API's path),
    `api-transaction` through Database.transaction, else raw layout SQL on one plain connection."""
    conninfo, mode, queries, worlds, ef, start_at, seconds, offset = args
    vectors = [Vector(q) for q in queries]
    latencies: list[float] = []
    db = Database(lambda: conninfo, max_size=1)
    if mode == "api":

        def one(i: int) -> None:
            db.read(lambda conn: search_by_vector(conn, vectors[i], world_id=worlds[i], k=K, ef_search=ef))
    elif mode == "api-transaction":

        def one(i: int) -> None:
            with db.transaction() as conn:
                search_by_vector(conn, vectors[i], world_id=worlds[i], k=K, ef_search=ef)
    else:
        conn = psycopg.connect(conninfo, autocommit=True)
        register_vector(conn)
        _settings(conn, ef)
        sql = _LAYOUT_SQL[mode].encode()

        def one(i: int) -> None:
            conn.execute(sql, {"q": vectors[i], "world": worlds[i]}, prepare=True, binary=True).fetchall()

    for i in range(10):  # connect, prepare and warm the caches before the clock starts
        one(i)
    time.sleep(max(0.0, start_at - time.time()))
    end = time.perf_counter() + seconds
    i = offset
    while (now := time.perf_counter()) < end:
        one(i % len(vectors))
        latencies.append(time.perf_counter() - now)
        i += 1
    db.close()
    return len(latencies), latencies


def _throughput(
    conninfo: str, mode: str, queries: Any, worlds: list[str], ef: int, clients: int, seconds: float
) -> dict[str, float]:
    start_at = time.time() + 1.5
    jobs = [(conninfo, mode, queries, worlds, ef, start_at, seconds, 37 * c) for c in range(clients)]
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        results = pool.map(_client, jobs)
    latencies = sorted(t for _, ts in results for t in ts)
    return {
        "qps": sum(n for n, _ in results) / seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p95_ms": 1000 * latencies[int(len(latencies) * 0.95)],
        "load_average": os.getloadavg()[0],
    }


def _baseline_url(pg: EmbeddedPostgres, name: str) -> str:
    return f"postgresql+psycopg://postgres@/{name}?host={pg.socket_dir}"


def _baseline(pg: EmbeddedPostgres, name: str, mode: str, *extra: str) -> Any:
    out = subprocess.run(
        [str(BASELINE_PYTHON), str(BASELINE_SCRIPT), mode, "--url", _baseline_url(pg, name),
         "--collection", BASELINE_COLLECTION, *extra],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _api_ids(q: Any, world: str, ef: int) -> Any:
    def ids(conn: psycopg.Connection[Any]) -> list[int]:
        return [h.chunk_id for h in search_by_vector(conn, q, world_id=world, k=K, ef_search=ef)]

    return ids


def _layout(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT relkind FROM pg_class WHERE oid = 'document_chunks'::regclass").fetchone()
    return PARTITIONED if row and row[0] == "p" else ONE_INDEX


def run(
    *,
    chunks: int,
    worlds: int,
    home: Path,
    ef_values: list[int],
    recall_queries: int,
    clients: int,
    seconds: float,
    baseline: bool,
    log: Any,
    repeat: int = 1,
) -> dict[str, Any]:
    pg = start_embedded_postgres(home / "pg", "postgres")
    corpus = Corpus(chunks, worlds)
    name = _database_name(chunks, worlds)
    params = {"chunks": chunks, "worlds": worlds, "seed": corpus.seed, "version": CORPUS_VERSION,
              "baseline": baseline}  # fmt: skip
    if _cached(pg, name, params):
        log(f"reusing the cached corpus in database {name}")
    else:
        _load(pg, name, corpus, params, log)
    conninfo = pg.conninfo(name)
    queries, query_worlds = corpus.queries(max(recall_queries, 200))
    sample, sample_worlds = queries[:recall_queries], query_worlds[:recall_queries]

    result: dict[str, Any] = {
        "chunks": chunks,
        "worlds": worlds,
        "dimension": DIM,
        "clients": clients,
        "client_kind": "processes",
        "seconds_per_measurement": seconds,
        "cpu_count": os.cpu_count(),
        "ef_search": DEFAULT_EF_SEARCH,
        "path": "Database.read + knowledge.adapters.postgres.search.search_by_vector",
        "load_average_at_start": list(os.getloadavg()),
    }
    with psycopg.connect(conninfo) as conn:
        register_vector(conn)
        result["layout"] = _layout(conn)
        started = time.perf_counter()
        truth = _exact(conn, sample, None)
        truth_filtered = _exact(conn, sample, sample_worlds)
        log(
            f"exact top-{K} of {recall_queries} queries by sequential scan in {time.perf_counter() - started:.1f}s"
        )
        conn.commit()
        sweep: list[dict[str, Any]] = []
        db = Database(lambda: conninfo, max_size=1)
        for ef in ef_values:
            _settings(conn, ef)
            unfiltered = _recall(_raw_ids(conn, _UNFILTERED_SQL, sample, None), truth)
            layouts = {
                layout: _recall(_raw_ids(conn, sql, sample, sample_worlds), truth_filtered)
                for layout, sql in _LAYOUT_SQL.items()
            }
            found = [db.read(_api_ids(q, w, ef)) for q, w in zip(sample, sample_worlds, strict=True)]
            sweep.append(
                {
                    "ef_search": ef,
                    "recall_at_10": unfiltered,
                    "filtered_recall_at_10": _recall(found, truth_filtered),
                    "partitioned_filtered_recall_at_10": layouts[PARTITIONED],
                    "one_index_filtered_recall_at_10": layouts[ONE_INDEX],
                }
            )
        db.close()
    for point in sweep:
        speed = _throughput(conninfo, "api", queries, query_worlds, point["ef_search"], clients, seconds)
        point |= speed
        log(
            f"ef_search={point['ef_search']}: {speed['qps']:,.0f} queries/s (load {speed['load_average']:.2f})"
        )
    result["sweep"] = sweep
    chosen = next((p for p in sweep if p["ef_search"] == DEFAULT_EF_SEARCH), sweep[0])
    ef = chosen["ef_search"]
    result |= {
        "ef_search": ef,
        "recall_at_10": chosen["recall_at_10"],
        "filtered_recall_at_10": chosen["filtered_recall_at_10"],
    }
    result["layouts"] = {
        layout: {
            "filtered_recall_at_10": chosen[
                "partitioned_filtered_recall_at_10"
                if layout == PARTITIONED
                else "one_index_filtered_recall_at_10"
            ],
            **_throughput(conninfo, layout, queries, query_worlds, ef, clients, seconds),
        }
        for layout in _LAYOUT_SQL
    }
    result["transaction_path"] = _throughput(
        conninfo, "api-transaction", queries, query_worlds, ef, clients, seconds
    )
    baseline_static = _baseline_recall(baseline, pg, name, sample, sample_worlds, truth, truth_filtered)
    # Ours and the baseline alternate, so a burst of load from elsewhere hits both alike.
    ours = [chosen]
    theirs: list[dict[str, Any]] = []
    for n in range(repeat):
        if n:
            ours.append(_throughput(conninfo, "api", queries, query_worlds, ef, clients, seconds))
        if baseline:
            theirs.append(_baseline_qps(pg, name, queries, query_worlds, clients, seconds))
            log(f"langchain-postgres: {theirs[-1]['qps']:,.0f} queries/s world-filtered")
    result |= {
        "qps": statistics.median(m["qps"] for m in ours),
        "p50_ms": statistics.median(m["p50_ms"] for m in ours),
        "p95_ms": statistics.median(m["p95_ms"] for m in ours),
        "qps_samples": [m["qps"] for m in ours],
        "load_average": statistics.median(m["load_average"] for m in ours + theirs),
        **baseline_static,
    }
    if theirs:
        result |= {
            "baseline_qps": statistics.median(m["qps"] for m in theirs),
            "baseline_p95_ms": statistics.median(m["p95_ms"] for m in theirs),
            "baseline_qps_samples": [m["qps"] for m in theirs],
            "baseline_unfiltered_qps": _baseline_qps(pg, name, queries, None, clients, seconds)["qps"],
        }
        result["speedup_vs_baseline"] = result["qps"] / result["baseline_qps"]
    result["load_average_at_end"] = list(os.getloadavg())
    result["goal_met"] = bool(
        result["qps"] >= 1500
        and min(result["recall_at_10"], result["filtered_recall_at_10"]) >= 0.95
        and result.get("speedup_vs_baseline", 0) >= 2
    )
    return result


def _baseline_recall(
    enabled: bool,
    pg: EmbeddedPostgres,
    name: str,
    sample: Any,
    sample_worlds: list[str],
    truth: list[set[int]],
    truth_filtered: list[set[int]],
) -> dict[str, Any]:
    if not enabled:
        return {"baseline": None, "baseline_qps": None, "baseline_recall_at_10": None,
                "baseline_filtered_recall_at_10": None}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        sample_file, sample_worlds_file = Path(tmp, "sample.npy"), Path(tmp, "sample_worlds.json")
        np.save(sample_file, sample)
        sample_worlds_file.write_text(json.dumps(sample_worlds))
        ids = _baseline(pg, name, "ids", "--queries", str(sample_file))
        ids_filtered = _baseline(
            pg, name, "ids", "--queries", str(sample_file), "--worlds", str(sample_worlds_file)
        )
    return {
        "baseline": "langchain-postgres PGVector.similarity_search_by_vector (HNSW cosine index, its defaults)",
        "baseline_recall_at_10": _recall([[int(i) for i in r] for r in ids], truth),
        "baseline_filtered_recall_at_10": _recall(
            [[int(i) for i in r] for r in ids_filtered], truth_filtered
        ),
    }


def _baseline_qps(
    pg: EmbeddedPostgres, name: str, queries: Any, worlds: list[str] | None, clients: int, seconds: float
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        query_file, worlds_file = Path(tmp, "queries.npy"), Path(tmp, "worlds.json")
        np.save(query_file, queries)
        extra = ["--worlds", str(worlds_file)] if worlds is not None else []
        if worlds is not None:
            worlds_file.write_text(json.dumps(worlds))
        timing = ["--clients", str(clients), "--seconds", str(seconds)]
        measured: dict[str, Any] = _baseline(pg, name, "qps", "--queries", str(query_file), *extra, *timing)
    return measured | {"load_average": os.getloadavg()[0]}


def _report(r: dict[str, Any]) -> None:
    print(f"\nSearch, {r['chunks']:,} chunks x {r['dimension']} dims in {r['worlds']} worlds, table layout: "
          f"{r['layout']}; {r['clients']} client processes on {r['cpu_count']} CPUs, "
          f"{r['seconds_per_measurement']:g}s each; load average {r['load_average']:.2f}\n")  # fmt: skip
    print("| ef_search | recall@10 | world-filtered recall@10 | one-index filtered recall@10 | queries/s |"
          " p95 ms | load |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for p in r["sweep"]:
        print(f"| {p['ef_search']} | {p['recall_at_10']:.3f} | {p['filtered_recall_at_10']:.3f} | "
              f"{p['one_index_filtered_recall_at_10']:.3f} | {p['qps']:,.0f} | {p['p95_ms']:.1f} | "
              f"{p['load_average']:.2f} |")  # fmt: skip
    print(f"\nWorld filter, minimal client, ef_search={r['ef_search']}:\n")
    print("| layout | queries/s | p95 ms |")
    print("|---|---:|---:|")
    for layout, v in r["layouts"].items():
        print(f"| {layout} | {v['qps']:,.0f} | {v['p95_ms']:.1f} |")
    t = r["transaction_path"]
    print(f"\nThrough Database.transaction instead of Database.read: {t['qps']:,.0f} queries/s, "
          f"p95 {t['p95_ms']:.1f} ms")  # fmt: skip
    if r["baseline_qps"]:
        print(
            "\n| path (world-filtered) | queries/s (median) | samples | p95 ms | recall@10 | filtered recall@10 |"
        )
        print("|---|---:|---|---:|---:|---:|")
        print(f"| ours (ef_search={r['ef_search']}) | {r['qps']:,.0f} | "
              f"{', '.join(f'{q:,.0f}' for q in r['qps_samples'])} | {r['p95_ms']:.1f} | "
              f"{r['recall_at_10']:.3f} | {r['filtered_recall_at_10']:.3f} |")  # fmt: skip
        print(f"| langchain-postgres | {r['baseline_qps']:,.0f} | "
              f"{', '.join(f'{q:,.0f}' for q in r['baseline_qps_samples'])} | {r['baseline_p95_ms']:.1f} | "
              f"{r['baseline_recall_at_10']:.3f} | {r['baseline_filtered_recall_at_10']:.3f} |")  # fmt: skip
    print(f"\ngoal met (>= 1,500 q/s at recall >= 0.95, >= 2x baseline): {r['goal_met']}\n")


def _layouts(args: argparse.Namespace, log: Any) -> int:
    from local_runtime.paths import kb_home

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_worlds

    result = bench_worlds.run(
        worlds=args.worlds,
        chunks=args.chunks,
        home=args.home or kb_home(),
        clients=args.clients,
        seconds=args.seconds,
        recall_queries=args.recall_queries,
        promote_at=args.promote_at or bench_worlds.DEFAULT_PROMOTE_AT,
        hold=args.hold,
        ef=min(args.ef_search) if len(args.ef_search) == 1 else DEFAULT_EF_SEARCH,
        repeat=max(1, args.repeat),
        stop_words=not args.no_stop_words,
        log=log,
    )
    if not args.json:
        bench_worlds.report(result)
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    from local_runtime.paths import kb_home

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--worlds", type=int, default=10)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[20, DEFAULT_EF_SEARCH, 80, 160])
    parser.add_argument("--recall-queries", type=int, default=100)
    parser.add_argument("--clients", type=int, default=4, help="concurrent client processes")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each throughput measurement")
    parser.add_argument("--home", type=Path, default=None, help="directory of the embedded PostgreSQL (pg/)")
    parser.add_argument("--repeat", type=int, default=3, help="alternate ours and the baseline N times")
    parser.add_argument(
        "--no-stop-words",
        action="store_true",
        help="--worlds: chunk texts without English stop words at the head of the vocabulary (harsher BM25)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip langchain-postgres")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--layouts",
        action="store_true",
        help="compare chunk-table layouts across --worlds worlds (bench_worlds.py)",
    )
    parser.add_argument(
        "--promote-at", type=int, default=None, help="--layouts: chunks for a world's own partition"
    )
    parser.add_argument(
        "--hold", type=float, default=0.5, help="--layouts: seconds each new world's ingestion stays open"
    )
    args = parser.parse_args(argv)
    if args.chunks < 100 or args.worlds < 1:
        parser.error("--chunks must be at least 100 and --worlds at least 1")

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    # The benchmark stops the embedded server it started (not one a `kb serve` keeps running).
    with embedded_postgres((args.home or kb_home()) / "pg", "postgres"):
        if args.layouts:
            return _layouts(args, log)
        return _searches(args, log)


def _searches(args: argparse.Namespace, log: Any) -> int:
    from local_runtime.paths import kb_home

    result = run(
        chunks=args.chunks,
        worlds=args.worlds,
        home=args.home or kb_home(),
        ef_values=sorted(set(args.ef_search)),
        recall_queries=args.recall_queries,
        clients=args.clients,
        seconds=args.seconds,
        baseline=not args.no_baseline and BASELINE_PYTHON.is_file(),
        log=log,
        repeat=max(1, args.repeat),
    )
    if not args.json:
        _report(result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
