"""SQL of a player's erasure: the story events that carry the player's id and the text derived from them.

One function, run inside the caller's transaction, so an erasure is applied whole or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import psycopg

__all__ = ["PLAYER_ID_ATTRIBUTE", "ErasedRows", "erase_player_rows"]

# The StoryEvent attribute that names the player an event is about (docs/privacy.md).
PLAYER_ID_ATTRIBUTE: Final = "player_id"


@dataclass(frozen=True, slots=True)
class ErasedRows:
    events: int  # story_events rows deleted (summary, attributes, embedding)
    concept_versions: int  # concept descriptions the events set, deleted from the history
    concepts_reverted: int  # concepts whose current description went back to their latest remaining version
    concepts_removed: int  # concepts only those events had introduced (their relationships go with them)


def erase_player_rows(conn: psycopg.Connection[Any], world_id: str, player_id: str) -> ErasedRows:
    """Delete the world's events whose `player_id` attribute is `player_id`, and what they wrote."""
    event_ids = [
        row[0]
        for row in conn.execute(
            # The attribute's name is written out so that the expression index of migration 0006 serves it.
            "SELECT event_id FROM story_events WHERE world_id = %s"
            " AND payload -> 'attributes' ->> 'player_id' = %s ORDER BY event_id FOR UPDATE",
            (world_id, player_id),
        ).fetchall()
    ]
    if not event_ids:
        return ErasedRows(0, 0, 0, 0)
    # The concepts those events versioned, locked the way a story event's insert locks them (sorted names),
    # so a concurrent event cannot version a concept between the history's rewrite and its current row's.
    names = conn.execute(
        "SELECT DISTINCT lower(c.name) FROM concept_versions v JOIN narrative_concepts c USING (concept_id)"
        " WHERE c.world_id = %s AND v.source_event_id = ANY(%s) ORDER BY 1",
        (world_id, event_ids),
    ).fetchall()
    for (name,) in names:
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"concept:{world_id}/{name}",))
    deleted = conn.execute(
        "DELETE FROM concept_versions v USING narrative_concepts c"
        " WHERE v.concept_id = c.concept_id AND c.world_id = %s AND v.source_event_id = ANY(%s)"
        " RETURNING v.concept_id",
        (world_id, event_ids),
    ).fetchall()
    touched = sorted({row[0] for row in deleted})
    events = conn.execute(
        "DELETE FROM story_events WHERE world_id = %s AND event_id = ANY(%s)", (world_id, event_ids)
    ).rowcount
    reverted = removed = 0
    for concept_id in touched:
        latest = conn.execute(
            "SELECT version, description, embedding FROM concept_versions WHERE concept_id = %s"
            " ORDER BY version DESC LIMIT 1",
            (concept_id,),
        ).fetchone()
        if latest is not None:
            conn.execute(
                "UPDATE narrative_concepts SET current_version = %s, description = %s, embedding = %s,"
                " updated_at = now() WHERE concept_id = %s",
                (latest[0], latest[1], latest[2], concept_id),
            )
            reverted += 1
            continue
        # No description of the concept is left. Kept (emptied) while another event still involves it,
        # else it existed only through the erased events and goes, its relationships with it (cascade).
        involved = conn.execute(
            "SELECT 1 FROM story_events WHERE world_id = %s AND %s = ANY(concept_ids) LIMIT 1",
            (world_id, concept_id),
        ).fetchone()
        if involved is not None:
            conn.execute(
                "UPDATE narrative_concepts SET description = '', embedding = NULL, updated_at = now()"
                " WHERE concept_id = %s",
                (concept_id,),
            )
            reverted += 1
        else:
            conn.execute("DELETE FROM narrative_concepts WHERE concept_id = %s", (concept_id,))
            removed += 1
    return ErasedRows(events, len(deleted), reverted, removed)
