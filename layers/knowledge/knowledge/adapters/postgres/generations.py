"""Embedding generations in PostgreSQL (migration 0011): begin, list, fill, switch, retire, abandon.

The DDL runs inside the schema's own functions (owner's rights), so the workflow's role needs no DDL
right of its own. Their SQLSTATEs (KBG01..KBG04) become the domain's errors here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from pgvector import Vector

from knowledge.errors import (
    ConfigurationError,
    GenerationIncompleteError,
    GenerationStateError,
)
from knowledge.model import embedding_text


@dataclass(frozen=True, slots=True)
class Generation:
    generation_id: int
    model_id: str
    dimension: int
    status: str


@dataclass(frozen=True, slots=True)
class _Kind:
    table: str
    key: str
    # What is embedded for a row, in SQL columns that `_text` turns into the text.
    select: str
    # Rows that need a vector of the new generation (some tables allow rows without any).
    needs_vector: str


def _concept_text(name: str, kind: str, description: str) -> str:
    # As ingestion embeds a concept (knowledge.ingestion.steps.concept_text).
    return f"{name} ({kind}): {description}".strip()


KINDS: dict[str, _Kind] = {
    "chunks": _Kind("document_chunks", "chunk_id", "t.heading, t.content", "true"),
    "concepts": _Kind(
        "narrative_concepts", "concept_id", "t.name, t.kind, t.description", "t.embedding IS NOT NULL"
    ),
    "concept_versions": _Kind(
        "concept_versions",
        "concept_version_id",
        "(SELECT c.name FROM narrative_concepts c WHERE c.concept_id = t.concept_id),"
        " (SELECT c.kind FROM narrative_concepts c WHERE c.concept_id = t.concept_id), t.description",
        "t.embedding IS NOT NULL",
    ),
    "story_events": _Kind("story_events", "event_id", "t.summary", "t.embedding IS NOT NULL"),
}


def _text(kind: str, row: Sequence[Any]) -> str:
    if kind == "chunks":
        return embedding_text(row[0] or "", row[1])
    if kind in ("concepts", "concept_versions"):
        return _concept_text(row[0] or "", row[1] or "concept", row[2] or "")
    return str(row[0])


def live_model(conn: psycopg.Connection[Any]) -> tuple[str, int]:
    """The model and dimension of the vectors searches read now."""
    row = conn.execute("SELECT embedding_model, embedding_dimension FROM kb_settings").fetchone()
    if row is None:
        raise ConfigurationError("the database has no embedding settings: it was never migrated")
    return str(row[0]), int(row[1])


def begin(conn: psycopg.Connection[Any], model_id: str, dimension: int) -> Generation:
    try:
        row = conn.execute("SELECT begin_embedding_generation(%s, %s)", (model_id, dimension)).fetchone()
    except psycopg.Error as exc:
        if exc.sqlstate in ("KBG01", "KBG02"):
            raise GenerationStateError(_message(exc)) from exc
        raise
    assert row is not None
    return Generation(int(row[0]), model_id, dimension, "building")


def get(conn: psycopg.Connection[Any], generation_id: int) -> Generation:
    row = conn.execute(
        "SELECT generation_id, embedding_model, embedding_dimension, status FROM embedding_generations"
        " WHERE generation_id = %s",
        (generation_id,),
    ).fetchone()
    if row is None:
        raise GenerationStateError(f"no embedding generation {generation_id}")
    return Generation(int(row[0]), str(row[1]), int(row[2]), str(row[3]))


def missing_ids(conn: psycopg.Connection[Any], kind: str) -> Iterator[Any]:
    """Keys of the rows of `kind` that still lack a vector of the generation being built."""
    spec = KINDS[kind]
    cursor = conn.execute(
        f"SELECT t.{spec.key} FROM {spec.table} t"  # nosec B608 - names from KINDS, never input
        f" WHERE t.embedding_next IS NULL AND {spec.needs_vector} ORDER BY t.{spec.key}"
    )
    for (key,) in cursor:
        yield key


def texts(conn: psycopg.Connection[Any], kind: str, ids: Sequence[Any]) -> dict[Any, str]:
    """What to embed for each row still present (a row deleted since it was listed is left out)."""
    spec = KINDS[kind]
    key_type = "text[]" if kind == "story_events" else "bigint[]"
    rows = conn.execute(
        f"SELECT t.{spec.key}, {spec.select} FROM {spec.table} t"  # nosec B608 - names from KINDS
        f" WHERE t.{spec.key} = ANY(%s::{key_type}) AND {spec.needs_vector}",
        (list(ids),),
    ).fetchall()
    return {row[0]: _text(kind, row[1:]) for row in rows}


def write_vectors(conn: psycopg.Connection[Any], kind: str, vectors: dict[Any, Sequence[float]]) -> int:
    """Store new-generation vectors; returns how many rows took one (a replaced row is skipped)."""
    spec = KINDS[kind]
    written = 0
    try:
        with conn.cursor() as cursor:
            for key, vector in vectors.items():
                cursor.execute(
                    f"UPDATE {spec.table} SET embedding_next = %s WHERE {spec.key} = %s",  # nosec B608
                    (Vector(list(vector)), key),
                )
                written += cursor.rowcount
    except psycopg.errors.UndefinedColumn as exc:
        raise GenerationStateError("no generation is being built (it was abandoned or switched)") from exc
    return written


def missing_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT embedding_generation_missing()").fetchone()
    return int(row[0]) if row else 0


def switch(conn: psycopg.Connection[Any], generation_id: int) -> None:
    """Make the generation live, in the caller's transaction (commit it to switch)."""
    try:
        conn.execute("SELECT switch_embedding_generation(%s)", (generation_id,))
    except psycopg.Error as exc:
        if exc.sqlstate == "KBG04":
            raise GenerationIncompleteError(_message(exc)) from exc
        if exc.sqlstate == "KBG03":
            raise GenerationStateError(_message(exc)) from exc
        raise


def retire(conn: psycopg.Connection[Any], generation_id: int) -> None:
    try:
        conn.execute("SELECT retire_embedding_generation(%s)", (generation_id,))
    except psycopg.Error as exc:
        if exc.sqlstate == "KBG03":
            raise GenerationStateError(_message(exc)) from exc
        raise


def abandon(conn: psycopg.Connection[Any], generation_id: int) -> None:
    conn.execute("SELECT abandon_embedding_generation(%s)", (generation_id,))


def _message(exc: psycopg.Error) -> str:
    return exc.diag.message_primary or str(exc)
