"""Concept queries: a concept's versions over time, and the relationship graph around a concept."""

from __future__ import annotations

from typing import Any

import psycopg

from knowledge.adapters.postgres.worlds import world_lineage
from knowledge.errors import ConceptNotFoundError
from knowledge.queries.models import (
    ConceptEdge,
    ConceptGraph,
    ConceptHistory,
    ConceptHistoryRequest,
    ConceptNode,
    ConceptVersion,
    RelationshipsRequest,
)

__all__ = ["concept_graph", "concept_history"]

# Walk rows kept at most; depth <= 3 and fan-out <= 100 bound the walk, this bounds it far below that.
_MAX_WALK_ROWS = 20_000


def concept_history(conn: psycopg.Connection[Any], request: ConceptHistoryRequest) -> ConceptHistory:
    """Every version of the named concept (case-insensitive), oldest first, with the document that set it.

    A concept the world does not hold is looked for in its ancestors, nearest first (docs/worlds.md): a
    world's own concept shadows theirs. Raises UnknownWorldError or ConceptNotFoundError.
    """
    row = conn.execute(
        "SELECT concept_id, name, kind, current_version FROM narrative_concepts"
        " WHERE world_id = %s AND lower(name) = lower(%s)",
        (request.world_id, request.name),
    ).fetchone()
    if row is None:
        ancestors = world_lineage(conn, request.world_id)[1:]  # UnknownWorldError
        if ancestors:
            row = conn.execute(
                "SELECT concept_id, name, kind, current_version FROM narrative_concepts"
                " WHERE world_id = ANY(%(worlds)s::text[]) AND lower(name) = lower(%(name)s)"
                " ORDER BY array_position(%(worlds)s::text[], world_id) LIMIT 1",
                {"worlds": ancestors, "name": request.name},
            ).fetchone()
    if row is None:
        raise ConceptNotFoundError(request.world_id, request.name)
    concept_id, name, kind, current_version = row
    versions = conn.execute(
        # The stored key outlives the document (source_document_id is set NULL on delete); the title does not.
        "SELECT v.version, v.description, v.created_at, coalesce(d.s3_key, v.source_s3_key), d.title,"
        " v.source_event_id FROM concept_versions v"
        " LEFT JOIN narrative_documents d ON d.document_id = v.source_document_id"
        " WHERE v.concept_id = %s ORDER BY v.version",
        (concept_id,),
    ).fetchall()
    return ConceptHistory(
        concept_id=concept_id,
        world_id=request.world_id,
        name=name,
        kind=kind,
        current_version=current_version,
        versions=[
            ConceptVersion(
                version=v[0],
                description=v[1],
                created_at=v[2],
                source_document_key=v[3],
                source_document_title=v[4],
                source_event_id=v[5],
            )
            for v in versions
        ],
    )


# One step from each concept of the frontier: at most fan_out edges, oldest first, in the asked directions.
# CYCLE stops a walk from re-expanding a concept already on its own path but still reports the edge that
# closes the cycle; depth and fan_out bound the rest.
_WALK_SQL = """
WITH RECURSIVE walk (concept_id, relationship_id, depth) AS (
    SELECT %(root)s::bigint, NULL::bigint, 0
    UNION ALL
    SELECT e.next_id, e.relationship_id, w.depth + 1
    FROM walk w
    CROSS JOIN LATERAL (
        SELECT r.relationship_id,
               CASE WHEN r.source_concept_id = w.concept_id THEN r.target_concept_id
                    ELSE r.source_concept_id END AS next_id
        FROM concept_relationships r
        WHERE r.world_id = %(world)s
          AND (%(type)s::text IS NULL OR r.relation_type = %(type)s::text)
          AND ((%(out)s AND r.source_concept_id = w.concept_id) OR (%(in)s AND r.target_concept_id = w.concept_id))
        ORDER BY r.relationship_id
        LIMIT %(fan_out)s
    ) e
    WHERE w.depth < %(depth)s
) CYCLE concept_id SET is_cycle USING path
SELECT concept_id, relationship_id, depth FROM walk LIMIT %(max_rows)s
"""


def concept_graph(conn: psycopg.Connection[Any], request: RelationshipsRequest) -> ConceptGraph:
    """The concepts and typed edges within `depth` hops of a concept.

    The concept may belong to the world or, when the world does not shadow it with a concept of the same
    name, to an ancestor (concept history hands out such ids, docs/worlds.md). A document's relationships
    only join concepts it declares, so every edge lies in one world and the walk stays in the concept's.
    Raises UnknownWorldError or ConceptNotFoundError (also for a concept of an unrelated world).
    """
    root = conn.execute(
        "SELECT concept_id, name, kind FROM narrative_concepts WHERE concept_id = %s AND world_id = %s",
        (request.concept_id, request.world_id),
    ).fetchone()
    walk_world = request.world_id
    if root is None:
        root, walk_world = _inherited_root(conn, request)
    params = {
        "root": request.concept_id,
        "world": walk_world,
        "type": request.type,
        "out": request.direction in ("out", "both"),
        "in": request.direction in ("in", "both"),
        "fan_out": request.fan_out,
        "depth": request.depth,
        "max_rows": _MAX_WALK_ROWS,
    }
    steps = conn.execute(_WALK_SQL, params).fetchall()
    truncated = len(steps) >= _MAX_WALK_ROWS

    node_depth: dict[int, int] = {}
    edge_depth: dict[int, int] = {}
    for concept_id, relationship_id, depth in steps:
        node_depth[concept_id] = min(node_depth.get(concept_id, depth), depth)
        if relationship_id is not None:
            edge_depth[relationship_id] = min(edge_depth.get(relationship_id, depth), depth)
    kept_edges = sorted(edge_depth, key=lambda rid: (edge_depth[rid], rid))
    if len(kept_edges) > request.max_edges:
        kept_edges, truncated = kept_edges[: request.max_edges], True

    edge_rows = conn.execute(
        "SELECT relationship_id, source_concept_id, target_concept_id, relation_type, description"
        " FROM concept_relationships WHERE relationship_id = ANY(%s)",
        (kept_edges,),
    ).fetchall()
    edges = sorted(
        (
            ConceptEdge(
                relationship_id=r[0],
                source_concept_id=r[1],
                target_concept_id=r[2],
                type=r[3],
                description=r[4],
                depth=edge_depth[r[0]],
            )
            for r in edge_rows
        ),
        key=lambda e: (e.depth, e.relationship_id),
    )
    # Nodes are the root and the ends of the kept edges, so a cut answer never shows dangling concepts.
    wanted = (
        {request.concept_id} | {e.source_concept_id for e in edges} | {e.target_concept_id for e in edges}
    )
    node_rows = conn.execute(
        "SELECT concept_id, name, kind FROM narrative_concepts WHERE concept_id = ANY(%s)", (list(wanted),)
    ).fetchall()
    nodes = sorted(
        (
            ConceptNode(concept_id=r[0], name=r[1], kind=r[2], depth=node_depth.get(r[0], 0))
            for r in node_rows
        ),
        key=lambda n: (n.depth, n.concept_id),
    )
    if not truncated:
        expanded = [c for c, d in node_depth.items() if d < request.depth]
        truncated = _fan_out_exceeded(conn, request, walk_world, expanded)
    return ConceptGraph(
        root=ConceptNode(concept_id=root[0], name=root[1], kind=root[2], depth=0),
        nodes=nodes,
        edges=edges,
        truncated=truncated,
    )


def _inherited_root(conn: psycopg.Connection[Any], request: RelationshipsRequest) -> tuple[Any, str]:
    """The ancestor's concept `request.concept_id` as the world sees it, and the ancestor's id."""
    lineage = world_lineage(conn, request.world_id)  # UnknownWorldError
    row = conn.execute(
        "SELECT c.concept_id, c.name, c.kind, c.world_id FROM narrative_concepts c"
        " WHERE c.concept_id = %(id)s AND c.world_id = ANY(%(ancestors)s::text[])"
        # A nearer world's concept of the same name hides this one, as it does in concept history.
        " AND NOT EXISTS (SELECT 1 FROM narrative_concepts n WHERE lower(n.name) = lower(c.name)"
        "  AND n.world_id = ANY(%(lineage)s::text[])"
        "  AND array_position(%(lineage)s::text[], n.world_id) < array_position(%(lineage)s::text[], c.world_id))",
        {"id": request.concept_id, "ancestors": lineage[1:], "lineage": lineage},
    ).fetchone()
    if row is None:
        raise ConceptNotFoundError(request.world_id, request.concept_id)
    return row[:3], row[3]


def _fan_out_exceeded(
    conn: psycopg.Connection[Any], request: RelationshipsRequest, world: str, expanded: list[int]
) -> bool:
    """Whether any expanded concept has more matching edges than the walk followed."""
    row = conn.execute(
        "SELECT 1 FROM concept_relationships r, unnest(%(ids)s::bigint[]) AS n(id)"
        " WHERE r.world_id = %(world)s AND (%(type)s::text IS NULL OR r.relation_type = %(type)s::text)"
        " AND ((%(out)s AND r.source_concept_id = n.id) OR (%(in)s AND r.target_concept_id = n.id))"
        " GROUP BY n.id HAVING count(*) > %(fan_out)s LIMIT 1",
        {
            "ids": expanded,
            "world": world,
            "type": request.type,
            "out": request.direction in ("out", "both"),
            "in": request.direction in ("in", "both"),
            "fan_out": request.fan_out,
        },
    ).fetchone()
    return row is not None
