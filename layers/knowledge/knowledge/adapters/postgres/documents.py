"""SQL of the ingestion workflow. Functions take an open connection (inside the caller's transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from pgvector import Vector
from psycopg.types.json import Jsonb

from knowledge.adapters.postgres.worlds import ensure_world
from knowledge.errors import ChunkVectorsGoneError
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
    # None: the vector of the stored chunk with the same content hash (and model) is kept.
    chunk_vectors: Sequence[Sequence[float] | None]
    concepts: Sequence[ConceptSpec] = ()
    concept_vectors: Sequence[Sequence[float]] = ()
    relationships: Sequence[RelationshipSpec] = ()
    pii_redactions: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    # The front matter's `parent`: set when the document creates its world (migration 0009).
    parent_world_id: str | None = None


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


def chunk_hashes(conn: psycopg.Connection, world_id: str, s3_key: str) -> tuple[str, list[str]] | None:
    """The embedding model and chunk content hashes of the stored document, None when there is none."""
    row = conn.execute(
        "SELECT d.embedding_model, coalesce(array_agg(DISTINCT c.content_hash)"
        "  FILTER (WHERE c.content_hash IS NOT NULL), '{}')"
        " FROM narrative_documents d LEFT JOIN document_chunks c"
        "  ON c.world_id = d.world_id AND c.document_id = d.document_id"
        " WHERE d.world_id = %s AND d.s3_key = %s GROUP BY d.document_id, d.embedding_model",
        (world_id, s3_key),
    ).fetchone()
    return (row[0], sorted(row[1])) if row else None


def _reused_vectors(
    conn: psycopg.Connection, document_id: int | None, doc: DocumentToStore
) -> dict[str, Any]:
    """The stored vectors the new version keeps, by content hash. Raises ChunkVectorsGoneError."""
    wanted = sorted({c.content_hash for c, v in zip(doc.chunks, doc.chunk_vectors, strict=True) if v is None})
    if not wanted:
        return {}
    found: dict[str, Any] = {}
    if document_id is not None:
        found = dict(
            conn.execute(
                "SELECT DISTINCT ON (c.content_hash) c.content_hash, c.embedding FROM document_chunks c"
                " JOIN narrative_documents d ON d.document_id = c.document_id"
                " WHERE c.world_id = %s AND c.document_id = %s AND c.content_hash = ANY(%s)"
                " AND d.embedding_model = %s",
                (doc.world_id, document_id, wanted, doc.embedding_model),
            ).fetchall()
        )
    missing = len(wanted) - len(found)
    if missing:
        raise ChunkVectorsGoneError(
            f"{missing} chunk vector(s) to keep are no longer stored for {doc.s3_key!r}"
            " (the document changed meanwhile); upload it again to embed them"
        )
    return found


def _lock_document(conn: psycopg.Connection, world_id: str, s3_key: str) -> None:
    # Serialises concurrent executions for one object (duplicate or overlapping events) until commit.
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{world_id}/{s3_key}",))


def store_document(conn: psycopg.Connection, doc: DocumentToStore) -> StoreOutcome:
    """Insert or atomically replace a document with its chunks, concepts and relationships."""
    _lock_document(conn, doc.world_id, doc.s3_key)
    ensure_world(conn, doc.world_id, doc.parent_world_id)  # WorldParentError: nothing written
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
    declared_before: tuple[list[int], list[int]] = ([], [])
    # Before the old chunks go: the vectors of unchanged chunks are kept (re-uploads embed only changes).
    reused = _reused_vectors(conn, existing[0] if existing else None, doc)
    if existing:
        document_id = existing[0]
        conn.execute(
            "UPDATE narrative_documents SET title = %s, media_type = %s, content_sha256 = %s, size_bytes = %s,"
            " chunk_count = %s, token_count = %s, pii_redactions = %s, metadata = %s, embedding_model = %s,"
            " version = version + 1, updated_at = now() WHERE document_id = %s",
            (*values, document_id),
        )
        conn.execute("DELETE FROM document_chunks WHERE document_id = %s", (document_id,))
        declared_before = _declarations(conn, document_id)
        # The new version declares afresh; what it no longer declares is withdrawn below.
        conn.execute("DELETE FROM concept_sources WHERE document_id = %s", (document_id,))
        conn.execute("DELETE FROM relationship_sources WHERE document_id = %s", (document_id,))
    else:
        row = conn.execute(
            "INSERT INTO narrative_documents (title, media_type, content_sha256, size_bytes, chunk_count,"
            " token_count, pii_redactions, metadata, embedding_model, world_id, s3_key)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING document_id",
            (*values, doc.world_id, doc.s3_key),
        ).fetchone()
        assert row is not None
        document_id = row[0]

    _copy_chunks(conn, document_id, doc, reused)
    conn.execute(
        "UPDATE narrative_documents SET embedding = (SELECT l2_normalize(avg(embedding)) FROM document_chunks"
        " WHERE document_id = %s) WHERE document_id = %s",
        (document_id, document_id),
    )
    changed, declared_concepts = _upsert_concepts(conn, document_id, doc)
    declared_relationships = _upsert_relationships(conn, document_id, doc)
    if existing:
        concepts_before, relationships_before = declared_before
        _withdraw(
            conn,
            document_id,
            concept_ids=sorted(set(concepts_before) - set(declared_concepts)),
            relationship_ids=sorted(set(relationships_before) - set(declared_relationships)),
        )
    return StoreOutcome(
        document_id=document_id,
        status="ingested",
        chunk_count=len(doc.chunks),
        replaced_previous_version=existing is not None,
        concepts_changed=tuple(changed),
    )


def _vector(value: Any) -> Vector:
    return value if isinstance(value, Vector) else Vector(value)


def _copy_chunks(
    conn: psycopg.Connection, document_id: int, doc: DocumentToStore, reused: dict[str, Any]
) -> None:
    # Binary COPY: one round trip for all rows, no per-row parse/plan (see bench/bench_store.py).
    with conn.cursor().copy(
        "COPY document_chunks (document_id, world_id, ordinal, heading, content, token_count,"
        " start_offset, end_offset, embedding, content_hash) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "text", "int4", "text", "text", "int4", "int4", "int4", "vector", "text"])
        for chunk, vector in zip(doc.chunks, doc.chunk_vectors, strict=True):
            content_hash = chunk.content_hash
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
                    _vector(reused[content_hash]) if vector is None else Vector(list(vector)),
                    content_hash,
                )
            )


def _upsert_concepts(
    conn: psycopg.Connection, document_id: int, doc: DocumentToStore
) -> tuple[list[str], list[int]]:
    """Create concepts; a changed description appends a concept_versions row. Each concept is recorded as
    declared by the document. Returns the changed names and the declared concept ids."""
    changed: list[str] = []
    declared: list[int] = []
    vectors: list[Sequence[float] | None] = list(doc.concept_vectors) or [None] * len(doc.concepts)
    source = ConceptSource(document_id=document_id, s3_key=doc.s3_key)
    for concept, vector in zip(doc.concepts, vectors, strict=True):
        embedding = Vector(list(vector)) if vector is not None else None
        write = upsert_concept(conn, doc.world_id, concept, embedding, source)
        conn.execute(
            "INSERT INTO concept_sources (concept_id, document_id, description) VALUES (%s, %s, %s)"
            " ON CONFLICT (concept_id, document_id) DO UPDATE SET description = EXCLUDED.description",
            (write.concept_id, document_id, concept.description),
        )
        declared.append(write.concept_id)
        if write.version is not None and not write.created:
            changed.append(concept.name)
    return changed, declared


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


def _upsert_relationships(conn: psycopg.Connection, document_id: int, doc: DocumentToStore) -> list[int]:
    """Create or update the document's relationships, each recorded as declared by it; returns their ids."""
    declared: list[int] = []
    for rel in doc.relationships:
        row = conn.execute(
            "INSERT INTO concept_relationships (world_id, source_concept_id, target_concept_id, relation_type,"
            " description, source_document_id)"
            " SELECT %(world)s, s.concept_id, t.concept_id, %(type)s, %(description)s, %(document)s"
            " FROM narrative_concepts s, narrative_concepts t"
            " WHERE s.world_id = %(world)s AND lower(s.name) = lower(%(source)s)"
            " AND t.world_id = %(world)s AND lower(t.name) = lower(%(target)s)"
            " ON CONFLICT (source_concept_id, target_concept_id, relation_type)"
            " DO UPDATE SET description = EXCLUDED.description, source_document_id = EXCLUDED.source_document_id"
            " RETURNING relationship_id",
            {
                "world": doc.world_id,
                "type": rel.type,
                "description": rel.description,
                "document": document_id,
                "source": rel.source,
                "target": rel.target,
            },
        ).fetchone()
        if row is None:
            continue
        conn.execute(
            "INSERT INTO relationship_sources (relationship_id, document_id, description) VALUES (%s, %s, %s)"
            " ON CONFLICT (relationship_id, document_id) DO UPDATE SET description = EXCLUDED.description",
            (row[0], document_id, rel.description),
        )
        declared.append(row[0])
    return declared


def _declarations(conn: psycopg.Connection, document_id: int) -> tuple[list[int], list[int]]:
    """The concepts and relationships a document declared or set (ids), as recorded before a change."""
    concepts = [
        r[0]
        for r in conn.execute(
            "SELECT concept_id FROM concept_sources WHERE document_id = %(d)s"
            " UNION SELECT concept_id FROM concept_versions WHERE source_document_id = %(d)s",
            {"d": document_id},
        )
    ]
    relationships = [
        r[0]
        for r in conn.execute(
            "SELECT relationship_id FROM relationship_sources WHERE document_id = %(d)s"
            " UNION SELECT relationship_id FROM concept_relationships WHERE source_document_id = %(d)s",
            {"d": document_id},
        )
    ]
    return concepts, relationships


def _withdraw(
    conn: psycopg.Connection, document_id: int, *, concept_ids: Sequence[int], relationship_ids: Sequence[int]
) -> None:
    """Take back what the document contributed to these concepts and relationships.

    What another document also declares stays, handed to that declaration (its description, its source);
    concept versions the document set go unless another document declares the same description; a concept
    that no document, story event or remaining version speaks for goes (its relationships with it), and
    a kept concept whose current version went falls back to its latest remaining one.
    """
    params = {"d": document_id, "concepts": list(concept_ids), "relationships": list(relationship_ids)}
    conn.execute(
        "DELETE FROM relationship_sources WHERE document_id = %(d)s AND relationship_id = ANY(%(relationships)s)",
        params,
    )
    conn.execute(
        "DELETE FROM concept_relationships r WHERE r.relationship_id = ANY(%(relationships)s)"
        " AND NOT EXISTS (SELECT 1 FROM relationship_sources s WHERE s.relationship_id = r.relationship_id)",
        params,
    )
    conn.execute(
        "UPDATE concept_relationships r SET source_document_id = s.document_id, description = s.description"
        " FROM (SELECT DISTINCT ON (relationship_id) relationship_id, document_id, description"
        "   FROM relationship_sources WHERE relationship_id = ANY(%(relationships)s)"
        "   ORDER BY relationship_id, document_id DESC) s"
        " WHERE r.relationship_id = s.relationship_id AND r.source_document_id = %(d)s",
        params,
    )
    conn.execute(
        "DELETE FROM concept_sources WHERE document_id = %(d)s AND concept_id = ANY(%(concepts)s)", params
    )
    conn.execute(
        "UPDATE concept_versions v SET source_document_id = s.document_id, source_s3_key = d.s3_key"
        " FROM concept_sources s JOIN narrative_documents d USING (document_id)"
        " WHERE v.source_document_id = %(d)s AND v.concept_id = ANY(%(concepts)s)"
        " AND s.concept_id = v.concept_id AND s.description = v.description",
        params,
    )
    conn.execute(
        "DELETE FROM concept_versions WHERE source_document_id = %(d)s AND concept_id = ANY(%(concepts)s)",
        params,
    )
    conn.execute(
        "DELETE FROM narrative_concepts c WHERE c.concept_id = ANY(%(concepts)s)"
        " AND NOT EXISTS (SELECT 1 FROM concept_sources s WHERE s.concept_id = c.concept_id)"
        " AND NOT EXISTS (SELECT 1 FROM story_events e"
        "   WHERE e.world_id = c.world_id AND e.concept_ids @> ARRAY[c.concept_id])"
        " AND NOT EXISTS (SELECT 1 FROM concept_versions v WHERE v.concept_id = c.concept_id"
        "   AND (v.source_document_id IS NOT NULL OR v.source_event_id IS NOT NULL))",
        params,
    )
    conn.execute(
        "UPDATE narrative_concepts c SET description = v.description, embedding = v.embedding,"
        " current_version = v.version, updated_at = now()"
        " FROM (SELECT DISTINCT ON (concept_id) concept_id, version, description, embedding"
        "   FROM concept_versions WHERE concept_id = ANY(%(concepts)s) ORDER BY concept_id, version DESC) v"
        " WHERE c.concept_id = v.concept_id AND c.current_version <> v.version",
        params,
    )
    conn.execute(
        "UPDATE narrative_concepts c SET description = '', embedding = NULL, updated_at = now()"
        " WHERE c.concept_id = ANY(%(concepts)s)"
        " AND NOT EXISTS (SELECT 1 FROM concept_versions v WHERE v.concept_id = c.concept_id)",
        params,
    )


def delete_document(conn: psycopg.Connection, world_id: str, s3_key: str) -> int | None:
    """Remove a document, its chunks and what only it contributed (concepts, concept versions,
    relationships); what other documents or story events also contributed stays. Returns the chunk count
    removed, None if absent."""
    _lock_document(conn, world_id, s3_key)
    row = conn.execute(
        "SELECT document_id, chunk_count FROM narrative_documents WHERE world_id = %s AND s3_key = %s FOR UPDATE",
        (world_id, s3_key),
    ).fetchone()
    if row is None:
        return None
    document_id, chunk_count = row
    concept_ids, relationship_ids = _declarations(conn, document_id)
    _withdraw(conn, document_id, concept_ids=concept_ids, relationship_ids=relationship_ids)
    conn.execute("DELETE FROM narrative_documents WHERE document_id = %s", (document_id,))
    return int(chunk_count)


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
