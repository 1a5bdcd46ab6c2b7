"""`kb` end to end on a fresh $KB_HOME: ingest, search, status, delete, reset, and state kept between commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli import kb_warm
from cli.kb import main
from tests.functional.conftest import BAD, SAMPLES
from tests.functional.sample_worlds import start_server, stop_server


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_kb_commands_share_persistent_local_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KB_HOME", str(tmp_path / "home"))
    tithe = SAMPLES / "emberfall" / "02-the-fire-tithe.md"
    court = SAMPLES / "emberfall" / "01-the-ember-court.md"

    ingested = _json(
        capsys,
        "ingest",
        str(court),
        str(tithe),
        str(BAD / "invalid-utf8.md"),
        "--world",
        "emberfall",
        "--json",
    )
    assert [(r["key"], r["status"]) for r in ingested] == [
        ("incoming/emberfall/01-the-ember-court.md", "ingested"),
        ("incoming/emberfall/02-the-fire-tithe.md", "ingested"),
        ("incoming/emberfall/invalid-utf8.md", "quarantined"),
    ]
    assert set(ingested[0]) == {"path", "key", "status", "chunks", "reason"}
    assert "byte 41" in ingested[2]["reason"]

    again = _json(capsys, "ingest", str(court), "--world", "emberfall", "--json")
    assert again[0]["status"] == "unchanged"

    hits = _json(
        capsys, "search", "how is the fire tithe collected", "--world", "emberfall", "--k", "3", "--json"
    )
    assert len(hits) == 3
    top = hits[0]
    assert set(top) == {"rank", "score", "document", "title", "heading", "text", "start", "end", "world"}
    assert top["document"] == "incoming/emberfall/02-the-fire-tithe.md"
    assert "Collected" in top["heading"] or "collect" in top["text"].lower()
    source = tithe.read_text(encoding="utf-8")
    assert source[top["start"] : top["end"]].split()[:5] == top["text"].split()[:5]
    capsys.readouterr()
    assert main(["search", "fire tithe", "--world", "tidewatch", "--json"]) == 1  # a world it never held
    assert "no world 'tidewatch'" in capsys.readouterr().err

    status = _json(capsys, "status", "--json")
    assert status == [{"world": "emberfall", "documents": 2, "chunks": status[0]["chunks"], "quarantined": 1}]

    capsys.readouterr()
    assert main(["delete", "01-the-ember-court.md", "--world", "emberfall"]) == 0
    assert "deleted" in capsys.readouterr().out
    assert main(["delete", "01-the-ember-court.md", "--world", "emberfall"]) == 0
    assert "absent" in capsys.readouterr().out  # from the object store's mirror, no stack started
    assert _json(capsys, "status", "--json")[0]["documents"] == 1
    assert (tmp_path / "home" / "s3" / "quarantine" / "emberfall" / "invalid-utf8.md").exists()

    assert main(["reset"]) == 0
    assert _json(capsys, "status", "--json") == []


# ---------------------------------------------------------------- reading a world: local, then warm


def test_history_relationships_events_and_worlds_read_the_sample_worlds(
    sample_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KB_HOME", str(sample_home))
    monkeypatch.setenv("KB_NO_SERVER", "1")
    worlds = _json(capsys, "worlds", "--json")["worlds"]
    assert [(w["world_id"], w["documents"], w["events"]) for w in worlds] == [
        ("emberfall", 7, 2),
        ("tidewatch", 6, 0),
    ]

    history = _json(capsys, "history", "queen ysolde varr", "--world", "emberfall", "--json")
    assert history["name"] == "Queen Ysolde Varr" and history["current_version"] == 2
    assert history["versions"][0]["source_document_key"] == "incoming/emberfall/01-the-ember-court.md"
    assert history["versions"][-1]["source_event_id"] == "court:ash-2"

    graph = _json(capsys, "relationships", "Ember Court", "--world", "emberfall", "--json")
    names = {n["concept_id"]: n["name"] for n in graph["nodes"]}
    edges = {
        (names[e["source_concept_id"]], e["type"], names[e["target_concept_id"]]) for e in graph["edges"]
    }
    assert ("Queen Ysolde Varr", "rules", "Ember Court") in edges
    only_rules = _json(
        capsys, "relationships", "Ember Court", "--world", "emberfall", "--type", "rules", "--json"
    )
    assert {e["type"] for e in only_rules["edges"]} == {"rules"}

    timeline = _json(capsys, "events", "--world", "emberfall", "--json")
    assert [e["event_id"] for e in timeline["events"]] == ["quests:ash-1", "court:ash-2"]
    later = _json(capsys, "events", "--world", "emberfall", "--since", "2026-03-02T00:00:00Z", "--json")
    assert [e["event_id"] for e in later["events"]] == ["court:ash-2"]

    capsys.readouterr()
    assert main(["history", "Queen Ysolde Varr", "--world", "emberfall"]) == 0
    text = capsys.readouterr().out
    assert "v1" in text and "v2" in text and "story event court:ash-2" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["history", "Nobody", "--world", "emberfall"], "no concept 'Nobody' in world 'emberfall'"),
        (["history", "Nobody", "--world", "nowhere"], "no world 'nowhere'"),
        (["relationships", "Nobody", "--world", "emberfall"], "no concept 'Nobody'"),
        (["events", "--world", "nowhere"], "no world 'nowhere'"),
        (["search", "fire", "--world", "nowhere"], "no world 'nowhere'"),
        (["context", "a scene", "--world", "nowhere"], "no world 'nowhere'"),
    ],
)
def test_an_unknown_world_or_concept_fails_with_exit_1(
    sample_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("KB_HOME", str(sample_home))
    monkeypatch.setenv("KB_NO_SERVER", "1")
    capsys.readouterr()
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_a_running_kb_serve_answers_the_read_commands_then_kb_stop_stops_it(
    sample_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from local_runtime import postgres

    monkeypatch.setenv("KB_HOME", str(sample_home))
    monkeypatch.delenv("KB_NO_SERVER", raising=False)
    # This process holds no server of the sample home while `kb serve` answers (the session's others run on).
    postgres.stop_started_server(sample_home / "pg")
    served = start_server(sample_home)
    try:
        assert kb_warm.running_server() == {"pid": served.process.pid, "url": served.url}
        hits = _json(capsys, "search", "how is the fire tithe collected", "--world", "emberfall", "--json")
        assert hits[0]["document"] == "incoming/emberfall/02-the-fire-tithe.md"
        assert (
            _json(capsys, "history", "Queen Ysolde Varr", "--world", "emberfall", "--json")["current_version"]
            == 2
        )
        assert len(_json(capsys, "events", "--world", "emberfall", "--json")["events"]) == 2
        assert [w["world_id"] for w in _json(capsys, "worlds", "--json")["worlds"]] == [
            "emberfall",
            "tidewatch",
        ]
        pack = _json(capsys, "context", "the fire tithe", "--world", "emberfall", "--budget", "400", "--json")
        assert 0 < pack["tokens_used"] <= 400
        capsys.readouterr()
        assert main(["search", "fire", "--world", "nowhere"]) == 1  # the API's 404, as locally
        assert "no world 'nowhere'" in capsys.readouterr().err
        assert not postgres.started_here(sample_home / "pg")  # every answer came over HTTP

        assert main(["stop", "--timeout", "300"]) == 0
        assert "kb serve" in capsys.readouterr().out
        assert served.process.wait(timeout=60) == 0
        assert kb_warm.running_server() is None
        assert not (sample_home / "pg" / "postmaster.pid").exists()  # and the embedded PostgreSQL
    finally:
        stop_server(served)
