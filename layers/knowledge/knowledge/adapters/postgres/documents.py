"""SQL of the ingestion workflow. Functions take an open connection (inside the caller's transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from pgvector import Vector
from psycopg.types.json import Jsonb

from knowledge.model import Chunk, ConceptSpec, RelationshipSpec


@dataclass(frozen=True, slots=True)
class StoredDocument:
    document_id: int
    content_sha256: str
    chunk_count: int


@dataclass(frozen=True, slots=True)
class DocumentToStore:
    world_id: str
    s3_key: str
    title: str
    media_type: str
    content_sha256: str
    size_bytes: int
    embedding_model: str
    chunks: Sequence[Chunk]
    chunk_vectors: Sequence[Sequence[float]]
    concepts: Sequence[ConceptSpec] = ()
    concept_vectors: Sequence[Sequence[float]] = ()
    relationships: Sequence[RelationshipSpec] = ()
    pii_redactions: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    document_id: int
    status: str  # "ingested" | "unchanged"
    chunk_count: int
    replaced_previous_version: bool = False
    concepts_changed: tuple[str, ...] = ()


def find_document(conn: psycopg.Connection, world_id: str, s3_key: str) -> StoredDocument | None:
    row = conn.execute(
        "SELECT document_id, content_sha256, chunk_count FROM narrative_documents"
        " WHERE world_id = %s AND s3_key = %s",
        (world_id, s3_key),
    ).fetchone()
    return StoredDocument(*row) if row else None


def _lock_document(conn: psycopg.Connection, world_id: str, s3_key: str) -> None:
    # Serialises concurrent executions for one object (duplicate or overlapping events) until commit.
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{world_id}/{s3_key}",))


def store_document(conn: psycopg.Connection, doc: DocumentToStore) -> StoreOutcome:
    """Insert or atomically replace a document with its chunks, concepts and relationships."""
    _lock_document(conn, doc.world_id, doc.s3_key)
    conn.execute(
        "INSERT INTO worlds (world_id, name) VALUES (%s, %s) ON CONFLICT (world_id) DO NOTHING",
        (doc.world_id, doc.world_id.replace("-", " ").title()),
    )
    existing = conn.execute(
        "SELECT document_id, content_sha256, chunk_count FROM narrative_documents"
        " WHERE world_id = %s AND s3_key = %s FOR UPDATE",
        (doc.world_id, doc.s3_key),
    ).fetchone()
    if existing and existing[1] == doc.content_sha256:
        return StoreOutcome(document_id=existing[0], status="unchanged", chunk_count=existing[2])

    token_count = sum(c.token_count for c in doc.chunks)
    values = (
        doc.title,
        doc.media_type,
        doc.content_sha256,
        doc.size_bytes,
        len(doc.chunks),
        token_count,
        Jsonb(doc.pii_redactions),
        Jsonb(doc.metadata),
        doc.embedding_model,
    )
    if existing:
        document_id = existing[0]
        conn.execute(
            "UPDATE narrative_documents SET title = %s, media_type = %s, content_sha256 = %s, size_bytes = %s,"
            " chunk_count = %s, token_count = %s, pii_redactions = %s, metadata = %s, embedding_model = %s,"
            " version = version + 1, updated_at = now() WHERE document_id = %s",
            (*values, document_id),
        )
        conn.execute("DELETE FROM document_chunks WHERE document_id = %s", (document_id,))
    else:
        row = conn.execute(
            "INSERT INTO narrative_documents (title, media_type, content_sha256, size_bytes, chunk_count,"
            " token_count, pii_redactions, metadata, embedding_model, world_id, s3_key)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING document_id",
            (*values, doc.world_id, doc.s3_key),
        ).fetchone()
        assert row is not None
        document_id = row[0]

    _copy_chunks(conn, document_id, doc)
    conn.execute(
        "UPDATE narrative_documents SET embedding = (SELECT l2_normalize(avg(embedding)) FROM document_chunks"
        " WHERE document_id = %s) WHERE document_id = %s",
        (document_id, document_id),
    )
    changed = _upsert_concepts(conn, document_id, doc)
    _upsert_relationships(conn, document_id, doc)
    return StoreOutcome(
        document_id=document_id,
        status="ingested",
        chunk_count=len(doc.chunks),
        replaced_previous_version=existing is not None,
        concepts_changed=tuple(changed),
    )


def _copy_chunks(conn: psycopg.Connection, document_id: int, doc: DocumentToStore) -> None:
    # Binary COPY: one round trip for all rows, no per-row parse/plan (see bench/bench_store.py).
    with conn.cursor().copy(
        "COPY document_chunks (document_id, world_id, ordinal, heading, content, token_count,"
        " start_offset, end_offset, embedding) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "text", "int4", "text", "text", "int4", "int4", "int4", "vector"])
        for chunk, vector in zip(doc.chunks, doc.chunk_vectors, strict=True):
            copy.write_row(
                (
                    document_id,
                    doc.world_id,
                    chunk.ordinal,
                    chunk.heading,
                    chunk.text,
                    chunk.token_count,
                    chunk.start,
                    chunk.end,
                    Vector(list(vector)),
                )
            )


def _upsert_concepts(conn: psycopg.Connection, document_id: int, doc: DocumentToStore) -> list[str]:
    """Create concepts; a changed description appends a concept_versions row. Returns the changed names."""
    changed: list[str] = []
    vectors: list[Sequence[float] | None] = list(doc.concept_vectors) or [None] * len(doc.concepts)
    source = ConceptSource(document_id=document_id, s3_key=doc.s3_key)
    for concept, vector in zip(doc.concepts, vectors, strict=True):
        embedding = Vector(list(vector)) if vector is not None else None
        write = upsert_concept(conn, doc.world_id, concept, embedding, source)
        if write.version is not None and not write.created:
            changed.append(concept.name)
    return changed


@dataclass(frozen=True, slots=True)
class ConceptSource:
    """What a concept version came from: a document (ingestion) or a story event."""

    document_id: int | None = None
    s3_key: str | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConceptWrite:
    concept_id: int
    version: int | None  # the version appended, None when the concept was left as it was
    created: bool = False


def upsert_concept(
    conn: psycopg.Connection,
    world_id: str,
    concept: ConceptSpec,
    embedding: Vector | None,
    source: ConceptSource,
) -> ConceptWrite:
    """Create the concept, or give it a new version when its description changed (an empty description
    changes nothing); either way a concept_versions row records the description and its source."""
    row = conn.execute(
        "SELECT concept_id, description, current_version FROM narrative_concepts"
        " WHERE world_id = %s AND lower(name) = lower(%s) FOR UPDATE",
        (world_id, concept.name),
    ).fetchone()
    created = row is None
    if row is None:
        inserted = conn.execute(
            "INSERT INTO narrative_concepts (world_id, name, kind, description, embedding)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING concept_id",
            (world_id, concept.name, concept.kind, concept.description, embedding),
        ).fetchone()
        assert inserted is not None
        concept_id, version = inserted[0], 1
    elif concept.description and row[1] != concept.description:
        concept_id, version = row[0], row[2] + 1
        conn.execute(
            "UPDATE narrative_concepts SET description = %s, kind = %s, embedding = %s,"
            " current_version = %s, updated_at = now() WHERE concept_id = %s",
            (concept.description, concept.kind, embedding, version, concept_id),
        )
    else:
        return ConceptWrite(concept_id=row[0], version=None)
    conn.execute(
        "INSERT INTO concept_versions (concept_id, version, description, embedding, source_document_id,"
        " source_s3_key, source_event_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            concept_id,
            version,
            concept.description,
            embedding,
            source.document_id,
            source.s3_key,
            source.event_id,
        ),
    )
    return ConceptWrite(concept_id=concept_id, version=version, created=created)


def _upsert_relationships(conn: psycopg.Connection, document_id: int, doc: DocumentToStore) -> None:
    for rel in doc.relationships:
        conn.execute(
            "INSERT INTO concept_relationships (world_id, source_concept_id, target_concept_id, relation_type,"
            " description, source_document_id)"
            " SELECT %(world)s, s.concept_id, t.concept_id, %(type)s, %(description)s, %(document)s"
            " FROM narrative_concepts s, narrative_concepts t"
            " WHERE s.world_id = %(world)s AND lower(s.name) = lower(%(source)s)"
            " AND t.world_id = %(world)s AND lower(t.name) = lower(%(target)s)"
            " ON CONFLICT (source_concept_id, target_concept_id, relation_type)"
            " DO UPDATE SET description = EXCLUDED.description, source_document_id = EXCLUDED.source_document_id",
            {
                "world": doc.world_id,
                "type": rel.type,
                "description": rel.description,
                "document": document_id,
                "source": rel.source,
                "target": rel.target,
            },
        )


def delete_document(conn: psycopg.Connection, world_id: str, s3_key: str) -> int | None:
    """Remove a document and (by cascade) its chunks; returns the chunk count removed, None if absent."""
    _lock_document(conn, world_id, s3_key)
    row = conn.execute(
        "DELETE FROM narrative_documents WHERE world_id = %s AND s3_key = %s RETURNING chunk_count",
        (world_id, s3_key),
    ).fetchone()
    return int(row[0]) if row else None


def record_quarantine(
    conn: psycopg.Connection,
    *,
    world_id: str | None,
    s3_key: str,
    quarantine_key: str,
    reason_code: str,
    reason: str,
    event_id: str,
    content_sha256: str | None = None,
    size_bytes: int | None = None,
) -> None:
    conn.execute(
        "INSERT INTO quarantined_uploads (world_id, s3_key, quarantine_key, reason_code, reason, event_id,"
        " content_sha256, size_bytes) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (s3_key, event_id) DO NOTHING",
        (world_id, s3_key, quarantine_key, reason_code, reason, event_id, content_sha256, size_bytes),
    )


@dataclass(frozen=True, slots=True)
class WorldStatus:
    world_id: str
    documents: int
    chunks: int
    quarantined: int


def world_status(conn: psycopg.Connection) -> list[WorldStatus]:
    rows = conn.execute(
        "WITH docs AS (SELECT world_id, count(*) AS documents, coalesce(sum(chunk_count), 0) AS chunks"
        "   FROM narrative_documents GROUP BY world_id),"
        " quarantine AS (SELECT coalesce(world_id, '(none)') AS world_id, count(*) AS quarantined"
        "   FROM quarantined_uploads GROUP BY 1)"
        " SELECT coalesce(d.world_id, q.world_id), coalesce(d.documents, 0), coalesce(d.chunks, 0),"
        "  coalesce(q.quarantined, 0)"
        " FROM docs d FULL OUTER JOIN quarantine q ON q.world_id = d.world_id ORDER BY 1"
    ).fetchall()
    return [WorldStatus(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]
