"""A player's erasure on the embedded PostgreSQL: the player's story events and what they wrote go, the rest
of the world stays; the API route and `kb erase-player` audit it without personal data."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from knowledge.embedding.hashing import HashEmbedder
from knowledge.errors import UnknownWorldError
from knowledge.queries import api
from knowledge.reranking import SentenceReranker
from knowledge.story_events import processing
from knowledge.story_events.erasure import erase_player, player_ref
from knowledge.story_events.erasure_model import PlayerErasureRequest
from knowledge.story_events.model import ConceptChange, StoryEvent

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PLAYER = "player-7f3c2a91"  # what a game service's account ids look like
OTHER = "player-0b11d4e2"


def event(
    event_id: str, *concepts: ConceptChange, player: str | None = None, at: datetime = T0
) -> StoryEvent:
    return StoryEvent(
        event_id=event_id,
        world_id="emberfall",
        occurred_at=at,
        kind="story_beat",
        summary=f"Something happened ({event_id}).",
        attributes={"player_id": player, "quest": "q-7"} if player else {"quest": "q-7"},
        concepts=concepts,
    )


@pytest.fixture
def db(database: Any) -> Any:
    with database.transaction() as conn:
        conn.execute("INSERT INTO worlds (world_id, name) VALUES ('emberfall', 'Emberfall')")
    embedder = HashEmbedder()
    for beat in (
        # Lore the world had before the player: a concept another player's event introduced.
        event("e-1", ConceptChange("Ravel", "character", "A smuggler of the lower docks."), player=OTHER),
        # The player renames the smuggler's nickname after themselves, and introduces a companion.
        event(
            "e-2",
            ConceptChange("Ravel", description="Ravel, sworn to Kestrel the Bold, a smuggler."),
            ConceptChange("Kestrel's Hound", "creature", "The hound that follows Kestrel."),
            player=PLAYER,
            at=T0 + timedelta(hours=1),
        ),
        event("e-3", player=PLAYER, at=T0 + timedelta(hours=2)),
        event("e-4", at=T0 + timedelta(hours=3)),  # no player at all
    ):
        assert processing.store(beat, database=database, embedder=embedder)["status"] == "stored"
    return database


def rows(db: Any, sql: str) -> list[tuple[Any, ...]]:
    with db.transaction() as conn:
        return list(conn.execute(sql).fetchall())


def _erase(db: Any, player: str = PLAYER, world: str = "emberfall") -> tuple[Any, list[Any]]:
    records: list[Any] = []
    result = erase_player(
        db.transaction,
        PlayerErasureRequest(world_id=world, player_id=player),
        requested_by="arn:aws:iam::123456789012:role/support",
        audit=lambda message, record: records.append((message, record)),
    )
    return result, records


def test_the_players_events_and_what_they_wrote_are_erased_and_nothing_else(db: Any) -> None:
    result, records = _erase(db)

    assert (result.events_erased, result.concept_versions_erased) == (2, 2)
    assert (result.concepts_reverted, result.concepts_removed) == (1, 1)
    assert rows(db, "SELECT event_id FROM story_events ORDER BY event_id") == [("e-1",), ("e-4",)]
    # Ravel is back at what the other player's event said; the hound only the player had introduced.
    assert rows(db, "SELECT name, description, current_version FROM narrative_concepts") == [
        ("Ravel", "A smuggler of the lower docks.", 1)
    ]
    assert rows(db, "SELECT source_event_id FROM concept_versions") == [("e-1",)]
    tables = ("story_events", "concept_versions", "narrative_concepts")
    everything = json.dumps([rows(db, f"SELECT * FROM {t}") for t in tables], default=str)
    assert PLAYER not in everything and "Kestrel" not in everything

    ((message, record),) = records
    assert message == "player data erased"
    assert record["requested_by"] == "arn:aws:iam::123456789012:role/support"
    assert record["events_erased"] == 2 and record["erased_at"]
    assert record["player_ref"] == player_ref("emberfall", PLAYER)
    assert PLAYER not in json.dumps(record)  # the audit trail names a digest, never the id


def test_erasing_again_or_an_unknown_player_erases_nothing(db: Any) -> None:
    _erase(db)
    again, records = _erase(db)
    assert (again.events_erased, again.concept_versions_erased, again.concepts_removed) == (0, 0, 0)
    assert len(records) == 1  # still audited: the request was made
    nobody, _ = _erase(db, player="player-unknown")
    assert nobody.events_erased == 0
    assert rows(db, "SELECT count(*) FROM story_events") == [(2,)]


def test_an_unknown_world_is_refused_and_nothing_is_audited(db: Any) -> None:
    with pytest.raises(UnknownWorldError):
        _erase(db, world="tidewatch")
    assert rows(db, "SELECT count(*) FROM story_events") == [(4,)]


@pytest.mark.parametrize("player", ["", " ", "a" * 129, "ann@example.com\n", "-starts-with-dash", "a/b"])
def test_a_malformed_player_id_is_refused(player: str) -> None:
    with pytest.raises(ValueError):
        PlayerErasureRequest(world_id="emberfall", player_id=player)


class _Services:
    def __init__(self, database: Any) -> None:
        self.database = database
        self.embedder = HashEmbedder()
        self.reranker = SentenceReranker(self.embedder)


def _delete(app: Any, path: str, user_arn: str = "arn:aws:iam::123456789012:user/support") -> dict[str, Any]:
    event = {
        "httpMethod": "DELETE",
        "path": path,
        "resource": "/worlds/{world_id}/players/{player_id}",
        "headers": {},
        "requestContext": {"identity": {"userArn": user_arn, "caller": "AIDAEXAMPLE"}, "stage": "v1"},
        "body": None,
        "isBase64Encoded": False,
    }
    return api.handle(app, event, None)


def test_the_api_route_erases_and_audits_with_the_callers_identity(
    db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    app = api.build_app(_Services(db))
    response = _delete(app, f"/worlds/emberfall/players/{PLAYER}")
    assert response["statusCode"] == 200, response["body"]
    body = json.loads(response["body"])
    assert body["events_erased"] == 2 and body["world_id"] == "emberfall"
    (audit,) = [r for r in caplog.records if r.getMessage() == "player data erased"]
    record = audit.__dict__["audit"]
    assert record["requested_by"] == "arn:aws:iam::123456789012:user/support"
    assert record["events_erased"] == 2 and PLAYER not in json.dumps(record)

    assert _delete(app, f"/worlds/tidewatch/players/{PLAYER}")["statusCode"] == 404
    invalid = _delete(app, "/worlds/emberfall/players/%0Abad")
    assert invalid["statusCode"] == 422 and "path" in invalid["body"]
    assert rows(db, "SELECT count(*) FROM story_events") == [(2,)]


def test_kb_erase_player_writes_an_audit_line_under_kb_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], db: Any
) -> None:
    from cli import kb

    monkeypatch.setenv("KB_HOME", str(tmp_path))
    monkeypatch.setattr(kb, "_open_database", lambda: _Unclosed(db))
    assert kb.main(["erase-player", "--world", "emberfall", "--player", PLAYER, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["events_erased"] == 2
    (line,) = (tmp_path / "audit.log").read_text().splitlines()
    record = json.loads(line)
    assert record["message"] == "player data erased" and record["requested_by"].startswith("local:")
    assert PLAYER not in line

    assert kb.main(["erase-player", "--world", "tidewatch", "--player", PLAYER]) == 1
    assert "no world 'tidewatch'" in capsys.readouterr().err
    assert kb.main(["erase-player", "--world", "emberfall", "--player", "bad id"]) == 2
    assert len((tmp_path / "audit.log").read_text().splitlines()) == 1


class _Unclosed:
    """The test's database, handed to the command without letting it close the fixture's pool."""

    def __init__(self, database: Any) -> None:
        self.transaction = database.transaction

    def close(self) -> None:
        pass


def test_the_story_events_role_may_erase_and_the_reader_role_may_not(
    db: Any, postgres: Any, database_name: str
) -> None:
    import psycopg

    from knowledge.adapters.postgres.database import Database

    def as_role(role: str) -> Any:
        return Database(lambda: f"host={postgres.socket_dir} dbname={database_name} user={role}", max_size=1)

    reader, writer = as_role("kb_reader"), as_role("kb_story_events")
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _erase(reader)
        result, _ = _erase(writer)  # what KnowledgeApiErasureFunction connects as
        assert (result.events_erased, result.concepts_removed) == (2, 1)
    finally:
        reader.close()
        writer.close()
