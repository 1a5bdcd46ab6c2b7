"""SQL of context packs: the concepts and story events a situation involves (knowledge.queries.context_pack)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from pgvector import Vector

from knowledge.queries.models import ConceptState, ContextRequest, StoryEvent

_CONCEPTS_SQL = """
WITH texts AS (
    SELECT to_tsvector('english', %(situation)s) AS situation, to_tsvector('english', %(passages)s) AS passages
),
nearest AS (
    SELECT concept_id FROM narrative_concepts
    WHERE world_id = %(world)s AND embedding IS NOT NULL
    ORDER BY embedding <=> %(q)b LIMIT %(limit)s
)
SELECT c.concept_id, c.name, c.kind, c.description, c.current_version, c.updated_at,
       coalesce(d.s3_key, v.source_s3_key)
FROM narrative_concepts c
CROSS JOIN texts t
CROSS JOIN LATERAL (SELECT phraseto_tsquery('english', c.name) AS q) name
LEFT JOIN concept_versions v ON v.concept_id = c.concept_id AND v.version = c.current_version
LEFT JOIN narrative_documents d ON d.document_id = v.source_document_id
WHERE c.world_id = %(world)s
  AND (t.situation @@ name.q OR t.passages @@ name.q OR c.concept_id IN (SELECT concept_id FROM nearest))
ORDER BY t.situation @@ name.q DESC, t.passages @@ name.q DESC,
         c.embedding <=> %(q)b NULLS LAST, c.concept_id
LIMIT %(limit)s
"""

# A world with ancestors (migration 0009): the concepts of its lineage %(worlds)s, less those a nearer
# world holds under the same name (case-insensitive, as concepts are keyed).
_VISIBLE = (
    "NOT EXISTS (SELECT 1 FROM narrative_concepts s"
    " WHERE s.world_id = ANY((%(worlds)s::text[])[1:array_position(%(worlds)s::text[], c.world_id) - 1])"
    " AND lower(s.name) = lower(c.name))"
)
_LINEAGE_CONCEPTS_SQL = _CONCEPTS_SQL.replace(
    "SELECT concept_id FROM narrative_concepts\n    WHERE world_id = %(world)s AND embedding IS NOT NULL\n"
    "    ORDER BY embedding <=> %(q)b",
    "SELECT c.concept_id FROM narrative_concepts c\n"
    f"    WHERE c.world_id = ANY(%(worlds)s::text[]) AND c.embedding IS NOT NULL AND {_VISIBLE}\n"
    "    ORDER BY c.embedding <=> %(q)b",
).replace("WHERE c.world_id = %(world)s\n", f"WHERE c.world_id = ANY(%(worlds)s::text[]) AND {_VISIBLE}\n")


def concepts_for_context(
    conn: psycopg.Connection[Any],
    request: ContextRequest,
    vector: Sequence[float],
    passages: Sequence[str],
    count_tokens: Callable[[str], int],
    lineage: Sequence[str] = (),
) -> list[ConceptState]:
    """`lineage`: the world and its ancestors (`world_lineage`); a child's concept shadows its parent's."""
    if request.max_concepts == 0:
        return []
    # The nearest-concepts scan relies on the iterative-scan setting search_by_vector made for this
    # transaction, so a world with few of the concepts still yields max_concepts of them.
    many = len(lineage) > 1
    rows = conn.execute(
        _LINEAGE_CONCEPTS_SQL if many else _CONCEPTS_SQL,
        {
            "worlds": list(lineage),
            "situation": request.situation,
            "passages": "\n".join(passages),
            "world": request.world_id,
            "q": Vector(list(vector)),
            "limit": request.max_concepts,
        },
    ).fetchall()
    return [
        ConceptState(
            concept_id=r[0],
            name=r[1],
            kind=r[2],
            description=r[3],
            version=r[4],
            updated_at=r[5],
            source_document_key=r[6],
            tokens=count_tokens(f"{r[1]} ({r[2]}): {r[3]}"),
        )
        for r in rows
    ]


def events_for_context(
    conn: psycopg.Connection[Any],
    request: ContextRequest,
    concept_ids: list[int],
    count_tokens: Callable[[str], int],
) -> list[StoryEvent]:
    if request.max_events == 0:
        return []
    rows = conn.execute(
        "SELECT event_id, occurred_at, kind, summary, concept_ids, payload FROM story_events"
        " WHERE world_id = %(world)s ORDER BY concept_ids && %(ids)s::bigint[] DESC, occurred_at DESC, event_id"
        " LIMIT %(limit)s",
        {"world": request.world_id, "ids": concept_ids, "limit": request.max_events},
    ).fetchall()
    return [
        StoryEvent(
            event_id=r[0],
            occurred_at=r[1],
            kind=r[2],
            summary=r[3],
            concept_ids=list(r[4]),
            payload=r[5],
            tokens=count_tokens(f"{r[2]}: {r[3]}"),
        )
        for r in rows
    ]
