"""Catalog queries: the worlds the knowledge base holds and the concepts of one world, for listings."""

from __future__ import annotations

from typing import Any

import psycopg

from knowledge.adapters.postgres.worlds import require_world
from knowledge.queries.models import (
    MAX_WORLDS,
    ConceptList,
    ConceptListRequest,
    ConceptSummary,
    WorldList,
    WorldSummary,
)

__all__ = ["list_concepts", "list_worlds"]

_WORLDS_SQL = """
SELECT w.world_id, w.name,
       (SELECT count(*) FROM narrative_documents d WHERE d.world_id = w.world_id),
       (SELECT count(*) FROM narrative_concepts c WHERE c.world_id = w.world_id),
       (SELECT count(*) FROM story_events e WHERE e.world_id = w.world_id),
       w.parent_world_id
FROM worlds w ORDER BY w.world_id LIMIT %s
"""

# LIKE with the prefix's own wildcards escaped: a name holding '%' or '_' matches only itself.
_CONCEPTS_SQL = """
SELECT c.concept_id, c.name, c.kind, c.current_version,
       (SELECT count(*) FROM concept_relationships r
         WHERE r.world_id = c.world_id
           AND (r.source_concept_id = c.concept_id OR r.target_concept_id = c.concept_id))
FROM narrative_concepts c
WHERE c.world_id = %(world)s
  AND (%(prefix)s::text IS NULL OR lower(c.name) LIKE lower(%(prefix)s::text) || '%%' ESCAPE '\\')
ORDER BY lower(c.name), c.concept_id
LIMIT %(limit)s
"""


def list_worlds(conn: psycopg.Connection[Any]) -> WorldList:
    """Every world (at most MAX_WORLDS, by id) with its counts of documents, concepts and story events."""
    rows = conn.execute(_WORLDS_SQL, (MAX_WORLDS + 1,)).fetchall()
    return WorldList(
        worlds=[
            WorldSummary(world_id=r[0], name=r[1], documents=r[2], concepts=r[3], events=r[4], parent=r[5])
            for r in rows[:MAX_WORLDS]
        ],
        truncated=len(rows) > MAX_WORLDS,
    )


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_concepts(conn: psycopg.Connection[Any], request: ConceptListRequest) -> ConceptList:
    """The world's concepts by name (case-insensitively), at most `limit`. Raises UnknownWorldError."""
    require_world(conn, request.world_id)
    params = {
        "world": request.world_id,
        "prefix": _like_prefix(request.prefix) if request.prefix is not None else None,
        "limit": request.limit + 1,
    }
    rows = conn.execute(_CONCEPTS_SQL, params).fetchall()
    return ConceptList(
        world_id=request.world_id,
        concepts=[
            ConceptSummary(concept_id=r[0], name=r[1], kind=r[2], current_version=r[3], relationships=r[4])
            for r in rows[: request.limit]
        ],
        truncated=len(rows) > request.limit,
    )
