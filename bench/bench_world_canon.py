"""Search throughput of a world with a parent against a world without one (docs/worlds.md).

One database of the embedded PostgreSQL holds a canon (default 20,000 chunks in its own partition with
its own HNSW graph) and a child of it (default 400 chunks in the shared partition, a quarter of its
documents shadowing canon documents of the same name). Synthetic unit vectors (a topic centroid per
document plus noise) and chunk texts drawn from a small vocabulary, so BM25 has real document
frequencies. In one run, alternating `--repeat` times, one client process on one connection through
`Database.read` (the API's path), k = 10, for each of vector and hybrid search:

* canon, the SQL as before migration 0009 (the same statement without the parent column): the baseline;
* canon through `search_by_vector` now (the world has no parent: one statement);
* the child through `search_by_vector` (its lineage: the child and canon, shadowing applied).

Prints a Markdown table of medians and ratios against the baseline, and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector import Vector
from pgvector.psycopg import register_vector

from knowledge.adapters.postgres import search as search_sql
from knowledge.adapters.postgres.database import Database
from knowledge.adapters.postgres.migrations import apply_migrations
from local_runtime.paths import REPO_ROOT
from local_runtime.postgres import drop_database, embedded_postgres

DIM = 384
K = 10
CHUNKS_PER_DOCUMENT = 10
DATABASE = "bench_world_canon"
VOCABULARY = [f"w{i:03d}" for i in range(300)]


def _load(conn: psycopg.Connection[Any], canon_chunks: int, child_chunks: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    apply_migrations(conn, embedding_model="bench-synthetic", embedding_dimension=DIM)
    conn.autocommit = False
    register_vector(conn)
    conn.execute("INSERT INTO worlds (world_id, name) VALUES ('canon', 'Canon')")
    conn.execute("INSERT INTO worlds (world_id, name, parent_world_id) VALUES ('child', 'Child', 'canon')")
    canon_docs = canon_chunks // CHUNKS_PER_DOCUMENT
    child_docs = child_chunks // CHUNKS_PER_DOCUMENT
    # A quarter of the child's documents have a canon document's name: they shadow it.
    names = [("canon", f"doc-{d:05d}.md") for d in range(canon_docs)]
    names += [("child", f"doc-{d:05d}.md" if d % 4 == 0 else f"child-{d:05d}.md") for d in range(child_docs)]
    with conn.cursor().copy(
        "COPY narrative_documents (world_id, s3_key, title, media_type, content_sha256, size_bytes,"
        " embedding_model) FROM STDIN"
    ) as copy:
        for world, name in names:
            copy.write_row(
                (world, f"incoming/{world}/{name}", name, "text/markdown", "0" * 64, 1000, "bench")
            )
    ids = [r[0] for r in conn.execute("SELECT document_id FROM narrative_documents ORDER BY document_id")]
    centroids = rng.standard_normal((len(names), DIM)).astype(np.float32)
    with conn.cursor().copy(
        "COPY document_chunks (document_id, world_id, ordinal, heading, content, token_count, start_offset,"
        " end_offset, embedding) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "text", "int4", "text", "text", "int4", "int4", "int4", "vector"])
        for d, (world, _) in enumerate(names):
            for ordinal in range(CHUNKS_PER_DOCUMENT):
                v = centroids[d] + 0.7 * rng.standard_normal(DIM).astype(np.float32)
                text = " ".join(VOCABULARY[j] for j in rng.zipf(1.3, 60) % len(VOCABULARY))
                copy.write_row(
                    (ids[d], world, ordinal, "", text, 60, ordinal * 500, ordinal * 500 + len(text),
                     Vector(v / np.linalg.norm(v)))
                )  # fmt: skip
    conn.commit()
    # The canon is large: its own partition and graph (migration 0010), as a real canon would have.
    conn.execute("SET maintenance_work_mem = '512MB'")
    conn.execute("SELECT promote_world_chunks('canon')")
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")  # as autovacuum would after the promotion (dead rows in the default)


def _queries(n: int, seed: int) -> list[tuple[Vector, str]]:
    rng = np.random.default_rng(seed + 1)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    words = rng.integers(0, 40, (n, 3))
    return [
        (Vector(v / np.linalg.norm(v)), " ".join(VOCABULARY[j] for j in w))
        for v, w in zip(vectors, words, strict=True)
    ]


def _before(conn: psycopg.Connection[Any], q: Vector, text: str | None) -> list[Any]:
    """The single-world search as it ran before migration 0009: the same SQL without the parent column."""
    where, params = search_sql._filter_sql("canon", None)
    params |= {"q": q, "k": K}
    if text is None:
        sql = search_sql._vector_sql(where, exact=False)
    else:
        sql = search_sql._hybrid_sql(where, False)
        params |= {
            "keywords": text,
            "depth": max(4 * K, 40),
            "weight": search_sql.KEYWORD_WEIGHT,
            "sentence_weight": search_sql.SENTENCE_WEIGHT,
        }
    plain = sql.replace(f", {search_sql._PARENT}".encode(), b"")
    return search_sql._run(conn, plain, params, search_sql.DEFAULT_EF_SEARCH)


def _rate(
    database: Database,
    one: Callable[[Any, Vector, str | None], Any],
    queries: Any,
    hybrid: bool,
    seconds: float,
) -> float:
    def run(i: int) -> None:
        q, text = queries[i % len(queries)]
        database.read(lambda conn: one(conn, q, text if hybrid else None))

    for i in range(20):  # prepare the statements and warm the caches before the clock starts
        run(i)
    done, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        run(done)
        done += 1
    return done / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--canon-chunks", type=int, default=20_000)
    parser.add_argument("--child-chunks", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each measurement")
    parser.add_argument("--repeat", type=int, default=3, help="alternate the three searches N times")
    parser.add_argument("--home", type=Path, default=REPO_ROOT / ".local" / "bench-world-canon")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)

    with embedded_postgres(args.home / "pg", DATABASE) as pg:  # stopped after, if started here
        return _measure(pg, args)


def _measure(pg: Any, args: argparse.Namespace) -> int:
    drop_database(pg, DATABASE)
    with psycopg.connect(pg.conninfo(DATABASE), autocommit=True) as conn:
        _load(conn, args.canon_chunks, args.child_chunks, args.seed)
    queries = _queries(200, args.seed)
    database = Database(lambda: pg.conninfo(DATABASE), max_size=1)

    def now(world: str) -> Callable[[Any, Vector, str | None], Any]:
        return lambda conn, q, text: search_sql.search_by_vector(conn, q, world_id=world, k=K, keywords=text)

    searches = {
        "canon, SQL as before 0009": _before,
        "canon (no parent) now": now("canon"),
        "child of canon": now("child"),
    }
    samples: dict[str, dict[str, list[float]]] = {m: {s: [] for s in searches} for m in ("vector", "hybrid")}
    loads = []
    for _ in range(args.repeat):
        for mode in samples:
            for name, one in searches.items():
                samples[mode][name].append(_rate(database, one, queries, mode == "hybrid", args.seconds))
                loads.append(os.getloadavg()[0])
    database.close()

    print(
        f"canon {args.canon_chunks:,} chunks, child {args.child_chunks:,}; load average {min(loads):.1f}-{max(loads):.1f}\n"
    )
    print("| search | vector q/s | vs before | hybrid q/s | vs before |\n|---|---:|---:|---:|---:|")
    result: dict[str, Any] = {"samples": samples, "load_average": [min(loads), max(loads)]}
    baseline = {m: statistics.median(samples[m]["canon, SQL as before 0009"]) for m in samples}
    for name in searches:
        cells = []
        for mode in samples:
            median = statistics.median(samples[mode][name])
            cells += [f"{median:,.0f}", f"{median / baseline[mode]:.2f}x"]
            result[f"{mode}: {name}"] = median
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
