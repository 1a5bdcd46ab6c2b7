"""Chunk partitions per world (migration 0010): small worlds share one, creating a world never blocks a search,
large worlds move to their own partition and graph."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from knowledge.adapters.postgres import documents
from knowledge.adapters.postgres.database import Database
from knowledge.adapters.postgres.migrations import apply_migrations
from knowledge.adapters.postgres.partitions import promote_if_large, promote_large_worlds, worlds_to_promote
from knowledge.embedding.hashing import HashEmbedder
from knowledge.model import Chunk
from knowledge.queries.search import search_by_vector
from knowledge.schema import available_migrations
from local_runtime.postgres import start_embedded_postgres

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDER = HashEmbedder(384)


def _document(world: str, key: str, chunks: int, seed: int = 0) -> documents.DocumentToStore:
    texts = [f"chunk {i} of {key} about the ember guild" for i in range(chunks)]
    vectors = np.random.default_rng(seed).standard_normal((chunks, 384)).astype(np.float32)
    return documents.DocumentToStore(
        world_id=world,
        s3_key=key,
        title=key,
        media_type="text/markdown",
        content_sha256=f"{seed:064x}",
        size_bytes=100,
        embedding_model=MODEL,
        chunks=[Chunk(i, "Part", t, i * 100, i * 100 + len(t), 8) for i, t in enumerate(texts)],
        chunk_vectors=(vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).tolist(),
        concepts=[],
        concept_vectors=EMBEDDER.embed([]),
        relationships=[],
        metadata={},
    )


def _query(seed: int) -> list[float]:
    vector = np.random.default_rng(seed).standard_normal(384)
    return [float(x) for x in vector / np.linalg.norm(vector)]


def _connect(postgres: Any, database_name: str, **kwargs: Any) -> psycopg.Connection[Any]:
    conn = psycopg.connect(postgres.conninfo(database_name), **kwargs)
    register_vector(conn)
    return conn


def _threshold(conn: Any) -> int:
    row = conn.execute("SELECT document_chunks_own_partition_threshold()").fetchone()
    return int(row[0])


def _partitions(conn: Any) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'document_chunks'::regclass"
    ).fetchall()
    return {r[0] for r in rows}


def _ids(conn: Any, world: str, query: Any) -> list[int]:
    return [h.chunk_id for h in search_by_vector(conn, query, world_id=world, k=10)]


def test_creating_a_world_runs_no_ddl_and_never_blocks_a_search(
    database: Any, postgres: Any, database_name: str
) -> None:
    with database.transaction() as conn:
        documents.store_document(conn, _document("emberfall", "incoming/emberfall/a.md", 30))
        before = _partitions(conn)
    query = _query(7)

    ingesting = _connect(postgres, database_name)
    try:
        # The ingestion of a new world's first document, left open.
        documents.store_document(ingesting, _document("tidewatch", "incoming/tidewatch/a.md", 40, seed=1))
        with _connect(postgres, database_name, autocommit=True) as reader:
            # A search that had to wait for the ingestion's locks would fail here instead of hanging.
            reader.execute("SET lock_timeout = '1s'")
            reader.execute("SET statement_timeout = '5s'")
            hits = _ids(reader, "emberfall", query)
            assert len(hits) == 10
            assert _partitions(reader) == before == {"document_chunks_default"}
        ingesting.commit()
    finally:
        ingesting.close()
    with database.transaction() as conn:
        assert len(_ids(conn, "tidewatch", query)) == 10


def test_a_large_world_moves_to_its_own_partition_with_the_same_results(
    database: Any, postgres: Any, database_name: str
) -> None:
    with database.transaction() as conn:
        # Well past the threshold: at the threshold itself the planner may still prefer an exact scan.
        big = 4 * _threshold(conn)
        documents.store_document(conn, _document("emberfall", "incoming/emberfall/big.md", big, seed=2))
        documents.store_document(conn, _document("tidewatch", "incoming/tidewatch/a.md", 50, seed=3))
        stats = conn.execute("SELECT * FROM keyword_stats ORDER BY world_id").fetchall()
        terms = conn.execute("SELECT count(*) FROM chunk_terms").fetchone()
    query = _query(9)
    with database.transaction() as conn:
        assert worlds_to_promote(conn) == ["emberfall"]
        exact_before = _ids(conn, "emberfall", query)

    with _connect(postgres, database_name) as owner:
        assert promote_large_worlds(owner) == ["emberfall"]
        assert promote_large_worlds(owner) == []

    with database.transaction() as conn:
        parts = _partitions(conn)
        assert len(parts) == 2 and "document_chunks_default" in parts
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM document_chunks_default WHERE world_id = 'emberfall'),"
            " (SELECT count(*) FROM document_chunks WHERE world_id = 'emberfall')"
        ).fetchone()
        assert counts == (0, big)
        # The rows moved: the keyword statistics are those of the same chunks.
        assert conn.execute("SELECT * FROM keyword_stats ORDER BY world_id").fetchall() == stats
        assert conn.execute("SELECT count(*) FROM chunk_terms").fetchone() == terms
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT chunk_id FROM document_chunks WHERE world_id = 'emberfall'"
                " ORDER BY embedding <=> %s::vector LIMIT 10",
                (str(query),),
            )
        )
        assert "embedding_idx" in plan
        # The world's own graph finds most of what exact search found (random vectors: its hardest case).
        assert len(set(_ids(conn, "emberfall", query)) & set(exact_before)) >= 7
        assert len(_ids(conn, "tidewatch", query)) == 10
        # New chunks of a promoted world go to its partition.
        documents.store_document(conn, _document("emberfall", "incoming/emberfall/more.md", 5, seed=4))
        row = conn.execute(
            "SELECT count(*) FROM document_chunks_default WHERE world_id = 'emberfall'"
        ).fetchone()
        assert row == (0,)


def test_a_promotion_that_cannot_lock_the_shared_partition_leaves_nothing_behind(
    database: Any, postgres: Any, database_name: str
) -> None:
    with database.transaction() as conn:
        documents.store_document(
            conn, _document("emberfall", "incoming/emberfall/big.md", _threshold(conn), seed=5)
        )
        documents.store_document(conn, _document("tidewatch", "incoming/tidewatch/a.md", 20, seed=6))
    reader = _connect(postgres, database_name)
    try:
        # A long search transaction of a small world holds the shared partition.
        reader.execute("SELECT count(*) FROM document_chunks WHERE world_id = 'tidewatch'")
        with _connect(postgres, database_name) as owner:
            assert promote_large_worlds(owner) == []
    finally:
        reader.close()
    with database.transaction() as conn:
        assert _partitions(conn) == {"document_chunks_default"}
        assert conn.execute("SELECT to_regclass(document_chunks_partition_name('emberfall'))").fetchone() == (
            None,
        )
        assert worlds_to_promote(conn) == ["emberfall"]


def test_the_migration_folds_small_world_partitions_into_the_shared_one(
    postgres: Any, database_name: str
) -> None:
    start_embedded_postgres(postgres.data_dir, database_name)
    before = [m for m in available_migrations() if m.version < 10]
    with psycopg.connect(postgres.conninfo(database_name)) as conn:
        apply_migrations(conn, embedding_model=MODEL, embedding_dimension=384, migrations=before)
        register_vector(conn)
        conn.autocommit = False
        documents.store_document(conn, _document("small", "incoming/small/a.md", 30, seed=1))
        documents.store_document(conn, _document("large", "incoming/large/a.md", 2000, seed=2))
        conn.commit()
        assert len(_partitions(conn)) == 3
        ids = conn.execute("SELECT world_id, chunk_id FROM document_chunks ORDER BY 2").fetchall()
        conn.commit()
        apply_migrations(conn, embedding_model=MODEL, embedding_dimension=384)
        conn.autocommit = False
        large = conn.execute("SELECT document_chunks_partition_name('large')").fetchone()
        assert large is not None and _threshold(conn) <= 2000
        assert _partitions(conn) == {"document_chunks_default", large[0]}
        assert conn.execute("SELECT world_id, chunk_id FROM document_chunks ORDER BY 2").fetchall() == ids
        indexes = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE tablename = %s AND indexdef LIKE '%%hnsw%%'", (large[0],)
        ).fetchone()
        assert indexes == (1,)
        # A promotion's dead rows are vacuumed soon, not after a fifth of the shared partition.
        options = conn.execute(
            "SELECT reloptions FROM pg_class WHERE relname = 'document_chunks_default'"
        ).fetchone()
        assert options is not None and "autovacuum_vacuum_scale_factor=0.01" in options[0]
        # New chunks keep numbering after the moved ones, and a new world still lands in the shared partition.
        documents.store_document(conn, _document("fresh", "incoming/fresh/a.md", 3, seed=3))
        row = conn.execute(
            "SELECT min(chunk_id) > %s FROM document_chunks_default WHERE world_id = 'fresh'", (ids[-1][1],)
        ).fetchone()
        assert row == (True,)
        conn.commit()


@pytest.mark.parametrize("world", ["a-world-id-of-more-than-forty-characters-in-all-1"])
def test_long_world_ids_get_their_own_partition_name(
    database: Any, postgres: Any, database_name: str, world: str
) -> None:
    with database.transaction() as conn:
        documents.store_document(conn, _document(world, f"incoming/{world}/a.md", _threshold(conn), seed=8))
    with _connect(postgres, database_name) as owner:
        assert promote_large_worlds(owner) == [world]


def test_ingestion_promotes_a_world_once_it_reaches_the_threshold(
    database: Any, postgres: Any, database_name: str
) -> None:
    # As the ingestion step does after its commit, with ingestion's role: no DDL rights of its own.
    ingestion = Database(
        lambda: f"host={postgres.socket_dir} dbname={database_name} user=kb_ingestion", max_size=1
    )
    try:
        with ingestion.transaction() as conn:
            threshold = _threshold(conn)
            documents.store_document(conn, _document("emberfall", "incoming/emberfall/a.md", threshold - 1))
        assert promote_if_large(ingestion, "emberfall") is False
        with ingestion.transaction() as conn:
            documents.store_document(conn, _document("emberfall", "incoming/emberfall/b.md", 1, seed=1))
        assert promote_if_large(ingestion, "emberfall") is True
        assert promote_if_large(ingestion, "emberfall") is False
        with ingestion.transaction() as conn:
            row = conn.execute("SELECT count(*) FROM document_chunks WHERE world_id = 'emberfall'").fetchone()
            assert row == (threshold,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE TABLE mine (x int)")
    finally:
        ingestion.close()
    with database.transaction() as conn:
        assert len(_partitions(conn)) == 2


def _toasted_vectors(conn: Any, relation: str) -> int:
    """Rows of `relation` whose vector is stored out of line (its stored size is not the inline size)."""
    row = conn.execute(
        f"SELECT count(*) FILTER (WHERE pg_column_size(embedding) <> 8 + 4 * 384) FROM {relation}"
    ).fetchone()
    return int(row[0]) if row else -1


def test_vectors_are_stored_in_the_row_in_shared_and_promoted_partitions(
    database: Any, postgres: Any, database_name: str
) -> None:
    # Chunks with long texts: the row is over TOAST's 2 KB threshold, so the default storage moved the
    # vector out of line and every exact distance read TOAST first (migration 0012).
    def long_document(world: str, chunks: int, seed: int) -> documents.DocumentToStore:
        document = _document(world, f"incoming/{world}/long.md", chunks, seed=seed)
        letters = np.random.default_rng(seed).integers(97, 123, (chunks, 700))
        texts = ["".join(map(chr, row)) for row in letters]  # random letters: they barely compress
        return dataclasses.replace(
            document,
            chunks=[
                Chunk(c.ordinal, c.heading, texts[c.ordinal], c.start, c.end, 100) for c in document.chunks
            ],
        )

    with database.transaction() as conn:
        documents.store_document(conn, long_document("tidewatch", 20, seed=1))
        documents.store_document(conn, long_document("emberfall", _threshold(conn), seed=2))
        assert _toasted_vectors(conn, "document_chunks_default") == 0
    with _connect(postgres, database_name) as owner:
        assert promote_large_worlds(owner) == ["emberfall"]
    with database.transaction() as conn:
        part = conn.execute("SELECT document_chunks_partition_name('emberfall')").fetchone()
        assert part is not None
        storage = conn.execute(
            "SELECT attstorage FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'embedding'",
            (part[0],),
        ).fetchone()
        assert storage == ("m",)
        assert _toasted_vectors(conn, part[0]) == 0
        assert _toasted_vectors(conn, "document_chunks_default") == 0
