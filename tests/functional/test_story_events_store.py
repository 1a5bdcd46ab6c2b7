"""`processing.store` on the embedded PostgreSQL: idempotent inserts, concept history, world checks."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from knowledge.embedding.hashing import HashEmbedder
from knowledge.embedding.minilm import MiniLmEmbedder
from knowledge.story_events import processing
from knowledge.story_events.model import ConceptChange, InvalidStoryEventError, StoryEvent

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def event(event_id: str, *concepts: ConceptChange, at: datetime = T0, summary: str = "") -> StoryEvent:
    return StoryEvent(
        event_id=event_id,
        world_id="emberfall",
        occurred_at=at,
        kind="story_beat",
        summary=summary or f"Something happened ({event_id}).",
        concepts=concepts,
    )


@pytest.fixture
def db(database: Any) -> Any:
    with database.transaction() as conn:
        conn.execute("INSERT INTO worlds (world_id, name) VALUES ('emberfall', 'Emberfall')")
    return database


def rows(db: Any, sql: str) -> list[tuple[Any, ...]]:
    with db.transaction() as conn:
        return list(conn.execute(sql).fetchall())


def test_the_same_event_stored_concurrently_is_written_once(db: Any) -> None:
    beat = event("e-1", ConceptChange("Ravel", "character", "A smuggler."))
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def store() -> None:
        barrier.wait()
        outcomes.append(processing.store(beat, database=db, embedder=HashEmbedder())["status"])

    threads = [threading.Thread(target=store) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["duplicate", "stored"]
    assert rows(db, "SELECT count(*) FROM story_events") == [(1,)]
    assert rows(db, "SELECT count(*) FROM narrative_concepts") == [(1,)]
    assert rows(db, "SELECT count(*) FROM concept_versions") == [(1,)]


def test_an_older_change_arriving_late_does_not_rewind_the_concept(db: Any) -> None:
    embedder = HashEmbedder()
    processing.store(
        event("e-1", ConceptChange("Ravel", "character", "A smuggler.")), database=db, embedder=embedder
    )
    later = event(
        "e-3", ConceptChange("Ravel", description="A pardoned smuggler."), at=T0 + timedelta(days=2)
    )
    earlier = event(
        "e-2", ConceptChange("Ravel", description="A jailed smuggler."), at=T0 + timedelta(days=1)
    )

    assert processing.store(later, database=db, embedder=embedder)["concepts_versioned"] == ["Ravel"]
    outcome = processing.store(earlier, database=db, embedder=embedder)

    assert outcome["status"] == "stored" and outcome["stale_changes"] == ["Ravel"]
    assert rows(db, "SELECT description, current_version, kind FROM narrative_concepts") == [
        ("A pardoned smuggler.", 2, "character")
    ]
    assert rows(db, "SELECT source_event_id FROM concept_versions ORDER BY version") == [("e-1",), ("e-3",)]
    # The late event is still part of the story, and still involves the concept.
    assert rows(db, "SELECT concept_ids FROM story_events WHERE event_id = 'e-2'") == [([1],)]


def test_an_event_that_only_involves_a_concept_leaves_it_unchanged(db: Any) -> None:
    embedder = HashEmbedder()
    processing.store(
        event("e-1", ConceptChange("Ravel", "character", "A smuggler.")), database=db, embedder=embedder
    )

    outcome = processing.store(event("e-2", ConceptChange("ravel")), database=db, embedder=embedder)

    assert outcome["concepts_versioned"] == [] and outcome["concepts_created"] == []
    assert rows(db, "SELECT count(*) FROM concept_versions") == [(1,)]


def test_an_unknown_world_is_poison_and_writes_nothing(db: Any) -> None:
    stray = StoryEvent("e-9", "glass-reach", T0, "story_beat", "Nobody knows this world.")

    with pytest.raises(InvalidStoryEventError) as caught:
        processing.store(stray, database=db, embedder=HashEmbedder())

    assert caught.value.reason_code == "unknown_world"
    assert rows(db, "SELECT count(*) FROM story_events") == [(0,)]


@pytest.mark.slow
def test_events_are_found_by_meaning_with_the_real_model(db: Any) -> None:
    embedder = MiniLmEmbedder()
    beats = {
        "fire": "A dragon set the harbour warehouses ablaze and the docks burned through the night.",
        "wedding": "The twin heirs of House Varr were married in the Glass Cathedral.",
        "trade": "Merchants of the Reach agreed a new tariff on imported silk.",
    }
    for event_id, summary in beats.items():
        processing.store(event(event_id, summary=summary), database=db, embedder=embedder)
    (query,) = embedder.embed(["flames destroyed the port"])

    with db.transaction() as conn:
        nearest = conn.execute(
            "SELECT event_id FROM story_events ORDER BY embedding <=> %s::vector LIMIT 1", (str(query),)
        ).fetchone()

    assert nearest == ("fire",)


def test_the_same_event_id_in_two_worlds_is_two_events(db: Any) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO worlds (world_id, name) VALUES ('tidewatch', 'Tidewatch')")
    ember = event("quests:7", ConceptChange("Ravel", "character", "A smuggler."))
    tide = replace(ember, world_id="tidewatch", summary="Meanwhile, in Tidewatch.")

    outcomes = [
        processing.store(e, database=db, embedder=HashEmbedder())["status"] for e in (ember, tide, tide)
    ]

    assert outcomes == ["stored", "stored", "duplicate"]
    assert rows(db, "SELECT world_id, summary FROM story_events ORDER BY world_id") == [
        ("emberfall", "Something happened (quests:7)."),
        ("tidewatch", "Meanwhile, in Tidewatch."),
    ]
    # Each world's concept got its own version, sourced from its own world's event.
    assert rows(db, "SELECT c.world_id, v.source_event_id FROM concept_versions v JOIN narrative_concepts c"
                    " USING (concept_id) ORDER BY 1") == [("emberfall", "quests:7"), ("tidewatch", "quests:7")]  # fmt: skip
