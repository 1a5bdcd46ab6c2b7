"""Deleting (or replacing) a document takes back exactly what it contributed, on the embedded PostgreSQL:
concepts, concept versions and relationships only it declared go; what other documents or story events
also declared stays, handed to them."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from knowledge.adapters.postgres import documents
from knowledge.model import ConceptSpec, RelationshipSpec

WORLD = "emberfall"


def _store(
    database: Any,
    key: str,
    concepts: Sequence[ConceptSpec],
    relationships: Sequence[RelationshipSpec] = (),
    *,
    content: str = "",
) -> int:
    doc = documents.DocumentToStore(
        world_id=WORLD,
        s3_key=f"incoming/{WORLD}/{key}",
        title=key,
        media_type="text/markdown",
        content_sha256=hashlib.sha256(f"{key}:{content}:{concepts}".encode()).hexdigest(),
        size_bytes=1,
        embedding_model="test",
        chunks=[],
        chunk_vectors=[],
        concepts=concepts,
        relationships=relationships,
    )
    with database.transaction() as conn:
        return documents.store_document(conn, doc).document_id


def _delete(database: Any, key: str) -> int | None:
    with database.transaction() as conn:
        return documents.delete_document(conn, WORLD, f"incoming/{WORLD}/{key}")


def _rows(database: Any, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with database.transaction() as conn:
        return list(conn.execute(sql, params).fetchall())


def _concepts(database: Any) -> dict[str, tuple[str, int]]:
    return {
        name: (description, version)
        for name, description, version in _rows(
            database, "SELECT name, description, current_version FROM narrative_concepts"
        )
    }


def _versions(database: Any, name: str) -> list[tuple[int, str, str | None]]:
    return _rows(
        database,
        "SELECT v.version, v.description, v.source_s3_key FROM concept_versions v"
        " JOIN narrative_concepts c USING (concept_id) WHERE c.name = %s ORDER BY v.version",
        name,
    )


def _relationships(database: Any) -> dict[tuple[str, str, str], tuple[str, str | None]]:
    rows = _rows(
        database,
        "SELECT s.name, t.name, r.relation_type, r.description, d.s3_key FROM concept_relationships r"
        " JOIN narrative_concepts s ON s.concept_id = r.source_concept_id"
        " JOIN narrative_concepts t ON t.concept_id = r.target_concept_id"
        " LEFT JOIN narrative_documents d ON d.document_id = r.source_document_id",
    )
    return {(s, t, kind): (description, key) for s, t, kind, description, key in rows}


KILN = ConceptSpec("Great Kiln", "place", "The everburning furnace beneath Kharos Keep.")
TITHE = ConceptSpec("Fire Tithe", "concept", "The levy of living embers owed to the Great Kiln.")
CENSER = ConceptSpec("Tithe Censer", "item", "A lidded brass vessel for tithe embers.")
WARDENS = ConceptSpec("Tithe-Wardens", "faction", "Sworn collectors in grey leather.")


def test_a_deleted_document_takes_only_what_it_alone_contributed(database: Any) -> None:
    _store(
        database,
        "tithe.md",
        [KILN, TITHE, CENSER],
        [
            RelationshipSpec("Fire Tithe", "Great Kiln", "feeds", "poured in at each new moon"),
            RelationshipSpec("Tithe Censer", "Fire Tithe", "carries"),
        ],
    )
    _store(
        database,
        "wardens.md",
        [KILN, TITHE, WARDENS],
        [
            RelationshipSpec("Fire Tithe", "Great Kiln", "feeds", "the Kiln's only fuel"),
            RelationshipSpec("Tithe-Wardens", "Fire Tithe", "collects"),
        ],
    )

    assert _delete(database, "tithe.md") == 0

    # Only tithe.md declared the censer: it goes, with its relationship and its version.
    assert set(_concepts(database)) == {"Great Kiln", "Fire Tithe", "Tithe-Wardens"}
    assert _rows(
        database,
        "SELECT count(*) FROM concept_versions v WHERE NOT EXISTS"
        " (SELECT 1 FROM narrative_concepts c WHERE c.concept_id = v.concept_id)",
    ) == [(0,)]
    # Both declared the kiln with the same description: its version is now wardens.md's.
    assert _versions(database, "Great Kiln") == [(1, KILN.description, f"incoming/{WORLD}/wardens.md")]
    # Both declared "feeds": it stays, with wardens.md's description and source.
    assert _relationships(database) == {
        ("Fire Tithe", "Great Kiln", "feeds"): ("the Kiln's only fuel", f"incoming/{WORLD}/wardens.md"),
        ("Tithe-Wardens", "Fire Tithe", "collects"): ("", f"incoming/{WORLD}/wardens.md"),
    }

    _delete(database, "wardens.md")

    assert _concepts(database) == {}
    assert _relationships(database) == {}
    assert _rows(database, "SELECT count(*) FROM concept_sources") == [(0,)]


def test_a_version_set_by_a_deleted_document_is_taken_back(database: Any) -> None:
    _store(database, "court.md", [KILN])
    revised = ConceptSpec("Great Kiln", "place", "The Kiln went cold on the Night of Falling Ash.")
    _store(database, "night.md", [revised])
    assert _concepts(database)["Great Kiln"] == (revised.description, 2)

    _delete(database, "night.md")

    # The kiln is court.md's again: its current text is the version court.md set.
    assert _concepts(database)["Great Kiln"] == (KILN.description, 1)
    assert _versions(database, "Great Kiln") == [(1, KILN.description, f"incoming/{WORLD}/court.md")]


def test_a_concept_a_story_event_touched_outlives_the_document(database: Any) -> None:
    _store(database, "court.md", [KILN, CENSER])
    (kiln_id,) = _rows(database, "SELECT concept_id FROM narrative_concepts WHERE name = %s", KILN.name)[0]
    with database.transaction() as conn:
        conn.execute(
            "INSERT INTO story_events (event_id, world_id, occurred_at, kind, summary, concept_ids)"
            " VALUES ('ev-1', %s, now(), 'quest', 'The heroes relit the Kiln.', %s)",
            (WORLD, [kiln_id]),
        )

    _delete(database, "court.md")

    # The event still names the kiln; nothing of the document's text is left on it.
    assert _concepts(database) == {"Great Kiln": ("", 1)}


def test_a_new_version_that_drops_a_concept_withdraws_it(database: Any) -> None:
    _store(database, "court.md", [KILN, CENSER], [RelationshipSpec("Tithe Censer", "Great Kiln", "feeds")])
    _store(database, "court.md", [KILN], content="second version")

    assert set(_concepts(database)) == {"Great Kiln"}
    assert _relationships(database) == {}
    assert _rows(database, "SELECT version FROM narrative_documents") == [(2,)]


def test_deleting_an_absent_document_changes_nothing(database: Any) -> None:
    _store(database, "court.md", [KILN])

    assert _delete(database, "missing.md") is None
    assert set(_concepts(database)) == {"Great Kiln"}
