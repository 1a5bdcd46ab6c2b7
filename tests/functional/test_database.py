"""Migrations, repository and search on the embedded PostgreSQL (never mocked)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from knowledge.adapters.postgres import documents
from knowledge.adapters.postgres.migrations import apply_migrations
from knowledge.errors import ConfigurationError
from knowledge.model import Chunk, ConceptSpec, RelationshipSpec
from knowledge.queries.search import search_chunks
from knowledge.schema import available_migrations
from knowledge.schema.custom_resource import run_custom_resource

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
REPO = Path(__file__).resolve().parents[2]


def _unit(i: int, dim: int = 384) -> list[float]:
    vector = [0.0] * dim
    vector[i % dim] = 1.0
    return vector


def _doc(
    sha: str = "a" * 64, key: str = "incoming/w/doc.md", n: int = 3, **kw: Any
) -> documents.DocumentToStore:
    chunks = [Chunk(i, "H", f"chunk {i}", i * 10, i * 10 + 7, 2) for i in range(n)]
    defaults: dict[str, Any] = {
        "world_id": "w",
        "s3_key": key,
        "title": "Doc",
        "media_type": "text/markdown",
        "content_sha256": sha,
        "size_bytes": 100,
        "embedding_model": MODEL,
        "chunks": chunks,
        "chunk_vectors": [_unit(i) for i in range(n)],
    }
    defaults.update(kw)
    return documents.DocumentToStore(**defaults)


def test_migrations_are_idempotent_and_versioned(database: Any) -> None:
    with database.schema_connection() as conn:
        assert apply_migrations(conn, embedding_model=MODEL, embedding_dimension=384) == []
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [m.version for m in available_migrations()]


def test_every_vector_column_has_an_hnsw_index_and_the_declared_dimension(database: Any) -> None:
    with database.transaction() as conn:
        columns = conn.execute(
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind = 'r' AND format_type(a.atttypid, a.atttypmod) LIKE 'vector%'"
        ).fetchall()
        indexes = {r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE indexdef LIKE '%hnsw%'")}
    assert len(columns) == 5
    for table, column, type_ in columns:
        assert type_ == "vector(384)"
        if table == "document_chunks_default":
            continue  # small worlds' shared partition: searched exactly, no graph (migration 0010)
        assert any(f"ON public.{table} USING hnsw ({column} vector_cosine_ops)" in d for d in indexes), table


def test_a_different_embedding_model_is_refused(database: Any) -> None:
    with database.schema_connection() as conn, pytest.raises(ConfigurationError, match="1024"):
        apply_migrations(conn, embedding_model="amazon.titan-embed-text-v2:0", embedding_dimension=1024)


def test_store_is_atomic_replace_and_unchanged_is_a_no_op(database: Any) -> None:
    with database.transaction() as conn:
        first = documents.store_document(conn, _doc())
    with database.transaction() as conn:
        again = documents.store_document(conn, _doc())
    with database.transaction() as conn:
        replaced = documents.store_document(conn, _doc(sha="b" * 64, n=5))
        rows = conn.execute("SELECT count(*), min(ordinal), max(ordinal) FROM document_chunks").fetchone()
    assert first.status == "ingested" and again.status == "unchanged"
    assert replaced.document_id == first.document_id and replaced.replaced_previous_version
    assert rows == (5, 0, 4)


def test_a_failed_store_leaves_nothing_behind(database: Any) -> None:
    bad = _doc(chunk_vectors=[_unit(0)] * 2)  # three chunks, two vectors
    with pytest.raises(ValueError), database.transaction() as conn:
        documents.store_document(conn, bad)
    with database.transaction() as conn:
        assert conn.execute("SELECT count(*) FROM narrative_documents").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM worlds").fetchone() == (0,)


def test_concepts_version_on_change_and_relationships_link_them(database: Any) -> None:
    concepts = [ConceptSpec("Ysolde", "character", "Queen"), ConceptSpec("Court", "faction", "Rulers")]
    rel = [RelationshipSpec("Ysolde", "Court", "rules")]
    with database.transaction() as conn:
        documents.store_document(
            conn, _doc(concepts=concepts, concept_vectors=[_unit(1), _unit(2)], relationships=rel)
        )
    exiled = [ConceptSpec("ysolde", "character", "Exiled queen"), ConceptSpec("Court", "faction", "Rulers")]
    with database.transaction() as conn:
        outcome = documents.store_document(
            conn,
            _doc(
                sha="c" * 64, key="incoming/w/later.md", concepts=exiled, concept_vectors=[_unit(3), _unit(2)]
            ),
        )
        versions = conn.execute(
            "SELECT v.version, v.description FROM concept_versions v JOIN narrative_concepts c USING (concept_id)"
            " WHERE c.name = 'Ysolde' ORDER BY version"
        ).fetchall()
        edges = conn.execute("SELECT relation_type FROM concept_relationships").fetchall()
    assert outcome.concepts_changed == ("ysolde",)
    assert versions == [(1, "Queen"), (2, "Exiled queen")]
    assert edges == [("rules",)]


def test_search_is_world_scoped_and_cites_offsets(database: Any) -> None:
    with database.transaction() as conn:
        documents.store_document(conn, _doc())
        documents.store_document(conn, _doc(key="incoming/other/x.md", world_id="other"))
        hits = search_chunks(conn, _unit(1), world_id="w", k=2)
    assert [h.world for h in hits] == ["w", "w"]
    assert hits[0].text == "chunk 1" and hits[0].score == pytest.approx(1.0)
    assert (hits[0].start, hits[0].end) == (10, 17)


def test_delete_and_quarantine_records(database: Any) -> None:
    with database.transaction() as conn:
        documents.store_document(conn, _doc())
        assert documents.delete_document(conn, "w", "incoming/w/doc.md") == 3
        assert documents.delete_document(conn, "w", "incoming/w/doc.md") is None
        for _ in range(2):  # the same event twice records once
            documents.record_quarantine(
                conn,
                world_id="w",
                s3_key="incoming/w/bad.md",
                quarantine_key="quarantine/w/bad.md",
                reason_code="empty",
                reason="empty",
                event_id="e1",
            )
        status = documents.world_status(conn)
    assert [(s.world_id, s.documents, s.quarantined) for s in status] == [("w", 0, 1)]


def test_the_migration_custom_resource_answers_cloudformation(database: Any) -> None:
    sent: list[tuple[str, bytes]] = []
    event = json.loads((REPO / "events" / "migrate-database-create.json").read_text())
    event["ResourceProperties"] |= {"EmbeddingDimension": "384", "EmbeddingModelId": MODEL}

    def migrate(properties: dict[str, Any]) -> dict[str, Any]:
        with database.schema_connection() as conn:
            applied = apply_migrations(
                conn,
                embedding_model=properties["EmbeddingModelId"],
                embedding_dimension=int(properties["EmbeddingDimension"]),
            )
        return {"Applied": applied}

    ok = run_custom_resource(
        event, migrate, physical_id="schema", send=lambda url, body: sent.append((url, body))
    )
    failed = run_custom_resource(
        {**event, "ResourceProperties": {"EmbeddingDimension": "1024", "EmbeddingModelId": "other"}},
        migrate,
        physical_id="schema",
        send=lambda url, body: sent.append((url, body)),
    )
    deleted = run_custom_resource(
        {**event, "RequestType": "Delete"},
        migrate,
        physical_id="schema",
        send=lambda url, body: sent.append((url, body)),
    )

    assert ok["Status"] == "SUCCESS" and failed["Status"] == "FAILED" and deleted["Status"] == "SUCCESS"
    assert "ConfigurationError" in failed["Reason"]
    assert [url for url, _ in sent] == [event["ResponseURL"]] * 3


def test_small_worlds_share_the_default_chunk_partition_without_a_graph(database: Any) -> None:
    with database.transaction() as conn:
        documents.store_document(conn, _doc())
        documents.store_document(conn, _doc(key="incoming/other/x.md", world_id="other"))
        homes = conn.execute(
            "SELECT DISTINCT world_id, tableoid::regclass::text FROM document_chunks ORDER BY 1"
        ).fetchall()
        indexes = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'document_chunks_default'"
            )
        }
    # Large worlds get a partition and graph of their own (tests/functional/test_world_partitions.py).
    assert homes == [("other", "document_chunks_default"), ("w", "document_chunks_default")]
    assert "document_chunks_default_world_idx" in indexes
    assert not any("hnsw" in definition for definition in indexes.values())


def test_migration_0003_moves_existing_chunks_into_world_partitions(
    postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from knowledge import schema
    from knowledge.adapters.postgres import migrations
    from knowledge.adapters.postgres.database import Database
    from local_runtime.postgres import start_embedded_postgres

    name = f"kb_test_upgrade_{id(monkeypatch)}"
    start_embedded_postgres(postgres.data_dir, name)
    database = Database(lambda: postgres.conninfo(name))
    everything = schema.available_migrations()
    monkeypatch.setattr(migrations, "available_migrations", lambda: [m for m in everything if m.version < 3])
    try:
        with database.schema_connection() as conn:
            migrations.apply_migrations(conn, embedding_model=MODEL, embedding_dimension=384)
        with database.transaction() as conn:
            # Rows as the code of schema version 2 wrote them (today's code writes columns added since).
            conn.execute("INSERT INTO worlds (world_id, name) VALUES ('w', 'w')")
            inserted = conn.execute(
                "INSERT INTO narrative_documents (world_id, s3_key, title, media_type, content_sha256,"
                " size_bytes, embedding_model) VALUES ('w', 'incoming/w/doc.md', 'Doc', 'text/markdown', %s,"
                " 100, %s) RETURNING document_id",
                ("a" * 64, MODEL),
            ).fetchone()
            assert inserted is not None
            document_id = inserted[0]
            for i in range(3):
                conn.execute(
                    "INSERT INTO document_chunks (document_id, world_id, ordinal, heading, content, token_count,"
                    " start_offset, end_offset, embedding) VALUES (%s, 'w', %s, 'H', %s, 2, %s, %s, %s)",
                    (document_id, i, f"chunk {i}", i * 10, i * 10 + 7, _unit(i)),
                )
            before = conn.execute("SELECT chunk_id, ordinal FROM document_chunks ORDER BY 1").fetchall()
        monkeypatch.setattr(migrations, "available_migrations", lambda: everything)
        with database.schema_connection() as conn:
            applied = migrations.apply_migrations(conn, embedding_model=MODEL, embedding_dimension=384)
            assert applied == [m.version for m in everything if m.version >= 3]
        database.close()  # pooled connections cached the old table's row type
        with database.transaction() as conn:
            after = conn.execute("SELECT chunk_id, ordinal FROM document_chunks ORDER BY 1").fetchall()
            homes = {r[0] for r in conn.execute("SELECT tableoid::regclass::text FROM document_chunks")}
            documents.store_document(conn, _doc(key="incoming/w/new.md"))
            newest = conn.execute("SELECT min(chunk_id) FROM document_chunks WHERE ordinal = 0 AND"
                                  " document_id <> (SELECT min(document_id) FROM narrative_documents)").fetchone()  # fmt: skip
            hits = search_chunks(conn, _unit(2), world_id="w", k=1)
        # 0003 gave the world its partition; 0010 moved its few chunks into the shared one.
        assert after == before and homes == {"document_chunks_default"}
        assert newest is not None and newest[0] > max(r[0] for r in before)
        assert hits[0].text == "chunk 2"
    finally:
        database.close()


def test_read_is_autocommit_read_only_and_survives_a_dropped_connection(database: Any) -> None:
    import psycopg

    first = database.read(lambda conn: conn.execute("SELECT pg_backend_pid()").fetchone()[0])
    with database.transaction() as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (first,))
    # The pool skips its check for a connection used moments ago: the query finds it dead and reruns.
    second = database.read(lambda conn: conn.execute("SELECT pg_backend_pid()").fetchone()[0])
    assert second != first
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        database.read(lambda conn: conn.execute("INSERT INTO worlds (world_id, name) VALUES ('x', 'X')"))


def test_search_reads_the_same_hits_with_or_without_a_transaction(database: Any) -> None:
    from knowledge.queries.search import search_by_vector

    with database.transaction() as conn:
        documents.store_document(conn, _doc(n=12))
        in_transaction = search_by_vector(conn, _unit(3), world_id="w", k=5, ef_search=40)
    for ef in (40, 40, 100):  # an autocommit session's settings follow ef_search
        read = database.read(
            lambda conn, ef=ef: search_by_vector(conn, _unit(3), world_id="w", k=5, ef_search=ef)
        )
        assert read == in_transaction
        settings = database.read(
            lambda conn: conn.execute(
                "SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan'),"
                " current_setting('transaction_read_only')"
            ).fetchone()
        )
        assert settings == (str(ef), "relaxed_order", "on")


def test_an_embedded_server_stops_even_after_a_restart(tmp_path: Path) -> None:
    # The session ends with stop_started_servers(), which stops each server this way.
    from local_runtime.postgres import start_embedded_postgres

    pg = start_embedded_postgres(tmp_path / "pg", "probe")
    pg.restart()  # a postmaster the server handle did not start
    assert (pg.data_dir / "postmaster.pid").exists()
    pg.stop()
    assert not (pg.data_dir / "postmaster.pid").exists()
    pg.stop()  # stopping a stopped server is a no-op


def test_a_block_stops_the_server_it_started_and_leaves_a_running_one_running(tmp_path: Path) -> None:
    # The benchmarks run inside embedded_postgres: a `kb serve` sharing their home keeps its server.
    from local_runtime.postgres import embedded_postgres, start_embedded_postgres, stop_started_server

    with embedded_postgres(tmp_path / "fresh", "probe") as pg:
        assert pg.conninfo("probe") and (tmp_path / "fresh" / "postmaster.pid").exists()
    assert not (tmp_path / "fresh" / "postmaster.pid").exists()

    start_embedded_postgres(tmp_path / "served", "probe")
    try:
        with embedded_postgres(tmp_path / "served", "probe"):
            pass
        assert (tmp_path / "served" / "postmaster.pid").exists()
    finally:
        stop_started_server(tmp_path / "served")
    assert not (tmp_path / "served" / "postmaster.pid").exists()
