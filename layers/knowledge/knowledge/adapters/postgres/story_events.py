"""SQL of story events. Functions take an open connection (inside the caller's transaction)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import psycopg
from pgvector import Vector
from psycopg.types.json import Jsonb

from knowledge.adapters.postgres.documents import ConceptSource, upsert_concept
from knowledge.adapters.postgres.worlds import world_exists
from knowledge.model import ConceptSpec

if TYPE_CHECKING:
    from knowledge.story_events.model import StoryEvent

STORED: Final = "stored"
DUPLICATE: Final = "duplicate"
UNKNOWN_WORLD: Final = "unknown_world"


@dataclass(frozen=True, slots=True)
class EventWrite:
    status: str  # STORED | DUPLICATE | UNKNOWN_WORLD
    concept_ids: tuple[int, ...] = ()
    versioned: tuple[str, ...] = ()  # existing concepts the event gave a new version
    created: tuple[str, ...] = ()  # concepts the event introduced
    stale: tuple[str, ...] = ()  # changes older than the concept's latest event change: not applied


def insert_event(
    conn: psycopg.Connection,
    event: StoryEvent,
    *,
    embedding: Sequence[float],
    concept_embeddings: Mapping[str, Sequence[float]],
    payload: dict[str, Any],
) -> EventWrite:
    """Insert the event once (keyed on world and event id) and apply its concept changes and relations.

    Event ids are the game services' own, unique within a world: the same id in another world is another
    event."""
    if not world_exists(conn, event.world_id):
        return EventWrite(UNKNOWN_WORLD)
    # A concurrent insert of the same id waits here for the other transaction, then finds the conflict.
    inserted = conn.execute(
        "INSERT INTO story_events (event_id, world_id, occurred_at, kind, summary, payload, embedding)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (world_id, event_id) DO NOTHING RETURNING event_id",
        (
            event.event_id,
            event.world_id,
            event.occurred_at,
            event.kind,
            event.summary,
            Jsonb(payload),
            Vector(list(embedding)),
        ),
    ).fetchone()
    if inserted is None:
        return EventWrite(DUPLICATE)

    # Sorted locks per concept name: events touching the same concepts serialise without deadlocks, and two
    # events creating one concept cannot both insert it.
    for name in sorted({c.name.lower() for c in event.concepts}):
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"concept:{event.world_id}/{name}",)
        )
    concept_ids: list[int] = []
    versioned: list[str] = []
    created: list[str] = []
    stale: list[str] = []
    source = ConceptSource(event_id=event.event_id)
    for change in event.concepts:
        current = conn.execute(
            "SELECT c.kind, (SELECT max(e.occurred_at) FROM concept_versions v"
            "   JOIN story_events e ON e.world_id = c.world_id AND e.event_id = v.source_event_id"
            "   WHERE v.concept_id = c.concept_id)"
            " FROM narrative_concepts c WHERE c.world_id = %s AND lower(c.name) = lower(%s)",
            (event.world_id, change.name),
        ).fetchone()
        description = change.description
        if current is not None and description and current[1] is not None and current[1] > event.occurred_at:
            stale.append(change.name)
            description = ""
        vector = concept_embeddings.get(change.name.lower()) if description else None
        kind = (current[0] if current is not None else change.kind) or "concept"
        write = upsert_concept(
            conn,
            event.world_id,
            ConceptSpec(name=change.name, kind=kind, description=description),
            Vector(list(vector)) if vector is not None else None,
            source,
        )
        concept_ids.append(write.concept_id)
        if write.created:
            created.append(change.name)
        elif write.version is not None:
            versioned.append(change.name)

    for relation in event.relations:
        conn.execute(
            "INSERT INTO concept_relationships (world_id, source_concept_id, target_concept_id, relation_type,"
            " description)"
            " SELECT %(world)s, s.concept_id, t.concept_id, %(type)s, %(description)s"
            " FROM narrative_concepts s, narrative_concepts t"
            " WHERE s.world_id = %(world)s AND lower(s.name) = lower(%(source)s)"
            " AND t.world_id = %(world)s AND lower(t.name) = lower(%(target)s)"
            " ON CONFLICT (source_concept_id, target_concept_id, relation_type) DO UPDATE SET description ="
            " CASE WHEN EXCLUDED.description <> '' THEN EXCLUDED.description"
            " ELSE concept_relationships.description END",
            {
                "world": event.world_id,
                "type": relation.type,
                "description": relation.description,
                "source": relation.source,
                "target": relation.target,
            },
        )
    if concept_ids:
        conn.execute(
            "UPDATE story_events SET concept_ids = %s WHERE world_id = %s AND event_id = %s",
            (concept_ids, event.world_id, event.event_id),
        )
    return EventWrite(STORED, tuple(concept_ids), tuple(versioned), tuple(created), tuple(stale))
