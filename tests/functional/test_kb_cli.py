"""`kb` end to end on a fresh $KB_HOME: ingest, search, status, delete, reset, and state kept between commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.kb import main
from tests.functional.conftest import BAD, SAMPLES


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
    assert _json(capsys, "search", "fire tithe", "--world", "tidewatch", "--json") == []

    status = _json(capsys, "status", "--json")
    assert status == [{"world": "emberfall", "documents": 2, "chunks": status[0]["chunks"], "quarantined": 1}]

    capsys.readouterr()
    assert main(["delete", "01-the-ember-court.md", "--world", "emberfall"]) == 0
    assert "deleted" in capsys.readouterr().out
    assert _json(capsys, "status", "--json")[0]["documents"] == 1
    assert (tmp_path / "home" / "s3" / "quarantine" / "emberfall" / "invalid-utf8.md").exists()

    assert main(["reset"]) == 0
    assert _json(capsys, "status", "--json") == []
