"""The catalog queries behind GET /worlds and GET /worlds/{world_id}/concepts, on the embedded PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from knowledge.adapters.postgres.catalog import list_concepts, list_worlds
from knowledge.errors import UnknownWorldError
from knowledge.queries.models import ConceptListRequest


def _seed(conn: Any) -> None:
    conn.execute("INSERT INTO worlds (world_id, name) VALUES ('emberfall', 'Emberfall'), ('empty', 'Empty')")
    for name, kind in [("Queen Ysolde Varr", "character"), ("Ember Court", "faction"), ("100% Ash", "item")]:
        conn.execute(
            "INSERT INTO narrative_concepts (world_id, name, kind) VALUES ('emberfall', %s, %s)", (name, kind)
        )
    conn.execute(
        "INSERT INTO concept_relationships (world_id, source_concept_id, target_concept_id, relation_type)"
        " SELECT 'emberfall', q.concept_id, c.concept_id, 'rules' FROM narrative_concepts q, narrative_concepts c"
        " WHERE q.name = 'Queen Ysolde Varr' AND c.name = 'Ember Court'"
    )


def test_worlds_with_their_counts(database: Any) -> None:
    with database.transaction() as conn:
        _seed(conn)
        listing = list_worlds(conn)
    assert [(w.world_id, w.name, w.documents, w.concepts, w.events) for w in listing.worlds] == [
        ("emberfall", "Emberfall", 0, 3, 0),
        ("empty", "Empty", 0, 0, 0),
    ]
    assert listing.truncated is False


def test_concepts_by_name_with_a_literal_prefix_and_a_limit(database: Any) -> None:
    with database.transaction() as conn:
        _seed(conn)
        every = list_concepts(conn, ConceptListRequest(world_id="emberfall"))
        assert [(c.name, c.relationships) for c in every.concepts] == [
            ("100% Ash", 0),
            ("Ember Court", 1),
            ("Queen Ysolde Varr", 1),
        ]
        assert [
            c.name
            for c in list_concepts(conn, ConceptListRequest(world_id="emberfall", prefix="qUEEN")).concepts
        ] == ["Queen Ysolde Varr"]
        # '%' and '_' in a prefix are the characters themselves, not LIKE wildcards.
        assert [
            c.name
            for c in list_concepts(conn, ConceptListRequest(world_id="emberfall", prefix="100%")).concepts
        ] == ["100% Ash"]
        assert list_concepts(conn, ConceptListRequest(world_id="emberfall", prefix="%")).concepts == []
        first = list_concepts(conn, ConceptListRequest(world_id="emberfall", limit=2))
        assert len(first.concepts) == 2 and first.truncated is True
        assert list_concepts(conn, ConceptListRequest(world_id="empty")).concepts == []


def test_concepts_of_an_unknown_world(database: Any) -> None:
    with database.transaction() as conn, pytest.raises(UnknownWorldError):
        list_concepts(conn, ConceptListRequest(world_id="nowhere"))
