"""`kb backup` and `kb restore`: a real pg_dump / pg_restore of the embedded server. A world backed up and
restored into an empty $KB_HOME answers the same searches; a bad file or a refused restore loses nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.kb import main
from tests.functional.conftest import SAMPLES

QUERIES = ("how is the fire tithe collected", "who rules the Ember Court")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _searches(capsys: pytest.CaptureFixture[str]) -> list[Any]:
    results = []
    for query in QUERIES:
        code, out, _ = _run(capsys, "search", query, "--world", "emberfall", "--k", "5", "--json")
        assert code == 0
        results.append(json.loads(out))
    return results


@pytest.fixture
def backed_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, list[Any]]:
    """A home with an ingested world, its search results, and its backup file."""
    monkeypatch.setenv("KB_HOME", str(tmp_path / "original"))
    documents = [SAMPLES / "emberfall" / n for n in ("01-the-ember-court.md", "02-the-fire-tithe.md")]
    code, out, _ = _run(capsys, "ingest", *map(str, documents), "--world", "emberfall", "--json")
    assert code == 0 and {r["status"] for r in json.loads(out)} == {"ingested"}
    searches = _searches(capsys)
    assert all(searches)
    backup = tmp_path / "emberfall.dump"
    code, out, _ = _run(capsys, "backup", str(backup))
    assert code == 0 and "backed up" in out and backup.stat().st_size > 0
    return backup, searches


def test_a_restore_into_an_empty_home_answers_the_same_searches(
    backed_up: tuple[Path, list[Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backup, searches = backed_up
    monkeypatch.setenv("KB_HOME", str(tmp_path / "restored"))
    code, out, _ = _run(capsys, "status", "--json")
    assert code == 0 and json.loads(out) == []  # empty before

    code, out, _ = _run(capsys, "restore", str(backup))

    assert code == 0 and "restored" in out
    assert _searches(capsys) == searches
    code, out, _ = _run(capsys, "status", "--json")
    assert [(r["world"], r["documents"]) for r in json.loads(out)] == [("emberfall", 2)]


def test_a_file_that_is_not_a_dump_leaves_the_database_as_it_was(
    backed_up: tuple[Path, list[Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, searches = backed_up
    garbage = tmp_path / "notes.dump"
    garbage.write_bytes(b"PGDMP this is not really a dump\x00\x01")

    code, _, err = _run(capsys, "restore", str(garbage), "--replace")

    assert code == 1 and "not a dump written by `kb backup`" in err
    assert _searches(capsys) == searches


def test_a_truncated_dump_is_refused_and_the_database_kept(
    backed_up: tuple[Path, list[Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup, searches = backed_up
    truncated = tmp_path / "truncated.dump"
    truncated.write_bytes(backup.read_bytes()[: backup.stat().st_size // 2])

    code, _, err = _run(capsys, "restore", str(truncated), "--replace")

    assert code == 1 and ("unchanged" in err or "not a dump" in err)
    assert _searches(capsys) == searches


def test_restore_over_worlds_and_backup_over_a_file_need_to_be_asked_for(
    backed_up: tuple[Path, list[Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup, searches = backed_up
    before = backup.read_bytes()

    code, _, err = _run(capsys, "backup", str(backup))
    assert code == 2 and "--force" in err and backup.read_bytes() == before
    code, _, err = _run(capsys, "restore", str(backup))
    assert code == 2 and "--replace" in err
    code, _, err = _run(capsys, "restore", str(tmp_path / "missing.dump"))
    assert code == 2 and "no such file" in err
    code, _, err = _run(capsys, "backup", str(tmp_path / "no" / "such" / "dir.dump"))
    assert code == 2 and "no such directory" in err

    assert _run(capsys, "restore", str(backup), "--replace")[0] == 0
    assert _searches(capsys) == searches
    assert _run(capsys, "backup", str(backup), "--force")[0] == 0
