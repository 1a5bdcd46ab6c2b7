"""Store path benchmark: precomputed 384-dim embeddings into the HNSW-indexed document_chunks table.

Side by side in one run, on the same embedded PostgreSQL, each method into a fresh migrated database:
- ours: knowledge.adapters.postgres.documents.store_document (one transaction, binary COPY of all chunks);
- row-by-row INSERT with a commit per row (how langchain-postgres' PGVector adds texts);
- psycopg `executemany` of the same INSERT in one transaction.
Prints a Markdown table and a JSON line; `--json` prints only the JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pgvector import Vector

from knowledge.adapters.postgres import documents
from knowledge.adapters.postgres.database import Database
from knowledge.adapters.postgres.migrations import apply_migrations
from knowledge.model import Chunk
from local_runtime.postgres import EmbeddedPostgres, start_embedded_postgres

DIM = 384
INSERT = (
    "INSERT INTO document_chunks (document_id, world_id, ordinal, heading, content, token_count, start_offset,"
    " end_offset, embedding) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def _corpus(n: int, seed: int = 7) -> tuple[list[Chunk], list[list[float]]]:
    rng = random.Random(seed)
    words = [
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
    ]
    chunks = []
    offset = 0
    for i in range(n):
        text = " ".join(rng.choice(words) for _ in range(140))
        chunks.append(Chunk(i, f"Section {i // 10}", text, offset, offset + len(text), 180))
        offset += len(text) + 2
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return chunks, vectors.tolist()


def _fresh(pg: EmbeddedPostgres, name: str, *, hnsw: bool) -> Database:
    from local_runtime.postgres import drop_database

    start_embedded_postgres(pg.data_dir, name)
    drop_database(pg, name)
    db = Database(lambda: pg.conninfo(name))
    with db.schema_connection() as conn:
        apply_migrations(conn, embedding_model="bench", embedding_dimension=DIM)
        if hnsw:
            # Since migration 0010 a small world's rows land in the shared partition, which has no graph;
            # a large world's partition has one. Storing "with the deployed HNSW index" is the latter.
            conn.execute("CREATE INDEX ON document_chunks_default USING hnsw (embedding vector_cosine_ops)")
        conn.commit()
    return db


def _document(conn: Any) -> int:
    conn.execute("INSERT INTO worlds (world_id, name) VALUES ('bench', 'Bench') ON CONFLICT DO NOTHING")
    row = conn.execute(
        "INSERT INTO narrative_documents (world_id, s3_key, title, media_type, content_sha256, size_bytes,"
        " embedding_model) VALUES ('bench', %s, 't', 'text/plain', %s, 1, 'bench') RETURNING document_id",
        (f"k{time.time_ns()}", "0" * 64),
    ).fetchone()
    return int(row[0])


def _rows(document_id: int, chunks: list[Chunk], vectors: list[list[float]]) -> list[tuple[Any, ...]]:
    return [
        (document_id, "bench", c.ordinal, c.heading, c.text, c.token_count, c.start, c.end, Vector(v))
        for c, v in zip(chunks, vectors, strict=True)
    ]


def ours(db: Database, chunks: list[Chunk], vectors: list[list[float]]) -> None:
    doc = documents.DocumentToStore(
        world_id="bench",
        s3_key=f"k{time.time_ns()}",
        title="t",
        media_type="text/plain",
        content_sha256=f"{random.getrandbits(256):064x}",
        size_bytes=1,
        embedding_model="bench",
        chunks=chunks,
        chunk_vectors=vectors,
    )
    with db.transaction() as conn:
        documents.store_document(conn, doc)


def commit_per_row(db: Database, chunks: list[Chunk], vectors: list[list[float]]) -> None:
    with db.transaction() as conn:
        document_id = _document(conn)
    for row in _rows(document_id, chunks, vectors):
        with db.transaction() as conn:
            conn.execute(INSERT, row)


def executemany(db: Database, chunks: list[Chunk], vectors: list[list[float]]) -> None:
    with db.transaction() as conn:
        document_id = _document(conn)
        with conn.cursor() as cursor:
            cursor.executemany(INSERT, _rows(document_id, chunks, vectors))


METHODS = {
    "ours (binary COPY, one transaction)": ours,
    "row-by-row INSERT, commit per row (langchain-postgres)": commit_per_row,
    "psycopg executemany, one transaction": executemany,
}


def run(n: int, repeats: int, home: Path, *, hnsw: bool = True) -> dict[str, Any]:
    pg = start_embedded_postgres(home / "pg", "postgres")
    chunks, vectors = _corpus(n)
    results: dict[str, list[float]] = {name: [] for name in METHODS}
    for _ in range(repeats):
        for index, (name, method) in enumerate(METHODS.items()):
            db = _fresh(pg, f"bench_store_{index}", hnsw=hnsw)
            started = time.perf_counter()
            method(db, chunks, vectors)
            results[name].append(time.perf_counter() - started)
            with db.transaction() as conn:
                assert conn.execute("SELECT count(*) FROM document_chunks").fetchone() == (n,)
            db.close()
    medians = {name: statistics.median(times) for name, times in results.items()}
    names = list(METHODS)
    return {
        "hnsw_index": hnsw,
        "chunks": n,
        "dimension": DIM,
        "repeats": repeats,
        "seconds": medians,
        "rows_per_s": {name: n / t for name, t in medians.items()},
        "speedup_vs_commit_per_row": medians[names[1]] / medians[names[0]],
        "speedup_vs_executemany": medians[names[2]] / medians[names[0]],
    }


def _table(result: dict[str, Any]) -> None:
    n = result["chunks"]
    index = (
        "with the deployed HNSW index" if result["hnsw_index"] else "transfer path only (HNSW index dropped)"
    )
    print(f"\nStore path, {index}: {n} chunks x {DIM} dims (median of {result['repeats']})\n")
    print("| method | seconds | rows/s | ours is faster by |")
    print("|---|---:|---:|---:|")
    ours_t = result["seconds"][next(iter(METHODS))]
    for name, seconds in result["seconds"].items():
        print(f"| {name} | {seconds:.3f} | {n / seconds:,.0f} | {seconds / ours_t:.1f}x |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as home:
        results = [run(args.chunks, args.repeats, Path(home), hnsw=h) for h in (True, False)]
    for result in results:
        if not args.json:
            _table(result)
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
