"""`kb` usage errors: the API's own rules and messages, exit 2 before any work; help on every option."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pydantic
import pytest

from cli import kb_validation as valid
from cli import kb_warm
from cli.kb import build_parser, main
from cli.kb_site import StaticSite
from knowledge.queries.models import ContextRequest, SearchRequest

WORLD_RULE = "^[a-z0-9][a-z0-9-]{0,62}$"


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _api_message(model: type[pydantic.BaseModel], **fields: object) -> str:
    with pytest.raises(pydantic.ValidationError) as caught:
        model.model_validate(fields)
    return str(caught.value.errors()[0]["msg"])


def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "field", "model", "body"),
    [
        ("0", "k", SearchRequest, {"query": "q", "world_id": "emberfall", "k": 0}),
        ("51", "k", SearchRequest, {"query": "q", "world_id": "emberfall", "k": 51}),
        ("63", "budget", ContextRequest, {"situation": "s", "world_id": "emberfall", "token_budget": 63}),
    ],
)
def test_numbers_have_the_api_limits_and_messages(
    value: str, field: str, model: type[pydantic.BaseModel], body: dict[str, object]
) -> None:
    check = valid.k if field == "k" else valid.budget
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        check(value)
    assert str(caught.value) == _api_message(model, **body)


def test_k_allows_what_the_api_allows() -> None:
    assert valid.k("1") == 1 and valid.k("50") == valid.MAX_K == 50
    assert SearchRequest(query="q", world_id="emberfall", k=50).k == 50


def test_a_bad_world_is_a_usage_error_with_the_api_message_and_its_brackets(
    capsys: pytest.CaptureFixture[str], _home: Path
) -> None:
    err = _usage_error(capsys, "ingest", "samples/emberfall", "--world", "Bad World!")
    assert _api_message(SearchRequest, query="q", world_id="Bad World!") in err
    assert WORLD_RULE in err  # printed as is: no markup eats the brackets
    assert not (_home / "pg").exists()  # refused before anything started

    err = _usage_error(capsys, "context", "a scene", "--world", "x" * 64)
    assert WORLD_RULE in err


def test_k_out_of_range_names_the_limit_not_a_list_of_choices(capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(capsys, "search", "fire", "--world", "emberfall", "--k", "0")
    assert "Input should be greater than or equal to 1" in err and "choose from" not in err
    err = _usage_error(capsys, "search", "fire", "--world", "emberfall", "--k", "100")
    assert "less than or equal to 50" in err


def test_an_empty_query_is_a_usage_error_as_the_api_answers_422(capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(capsys, "search", "   ", "--world", "emberfall")
    assert _api_message(SearchRequest, query="   ", world_id="emberfall") in err


@pytest.mark.parametrize("name", ["../../etc/passwd", "..", "a/b.md", "a\\b.md", ""])
def test_delete_takes_one_file_name_only(capsys: pytest.CaptureFixture[str], name: str) -> None:
    assert "one file name" in _usage_error(capsys, "delete", name, "--world", "emberfall")


def test_ingest_of_an_empty_folder_or_a_missing_path_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], _home: Path
) -> None:
    (tmp_path / "empty").mkdir()
    assert "no files to ingest" in _usage_error(
        capsys, "ingest", str(tmp_path / "empty"), "--world", "emberfall"
    )
    assert "no such file" in _usage_error(capsys, "ingest", str(tmp_path / "missing"), "--world", "emberfall")
    assert not (_home / "pg").exists()


def test_a_timeline_since_needs_a_time_zone(capsys: pytest.CaptureFixture[str]) -> None:
    assert "timezone" in _usage_error(capsys, "events", "--world", "emberfall", "--since", "2026-01-01T00:00")


def test_every_option_has_help_and_the_top_level_help_names_kb_home() -> None:
    parser = build_parser()
    assert "$KB_HOME" in parser.format_help() and "kb stop" in parser.format_help()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    pending = list(subparsers.choices.items())
    while pending:
        name, sub = pending.pop()
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend((f"{name} {n}", p) for n, p in action.choices.items())
            elif not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


@pytest.mark.parametrize("command", ["ingest", "delete", "status", "search", "context", "history", "events"])
def test_commands_with_an_aws_meaning_take_target_aws(command: str) -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    target = next(a for a in sub.choices[command]._actions if "--target" in a.option_strings)
    assert target.choices == ("local", "aws")


def test_target_aws_without_a_stack_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["worlds", "--target", "aws"])
    assert "--stack-name" in str(exited.value.code)


def test_kb_stop_with_nothing_running(capsys: pytest.CaptureFixture[str], _home: Path) -> None:
    assert main(["stop"]) == 0
    assert "nothing runs" in capsys.readouterr().out


def test_the_server_record_names_a_live_server_only(_home: Path) -> None:
    _home.mkdir(parents=True)
    assert kb_warm.running_server(home=_home) is None
    kb_warm.record_server("http://127.0.0.1:9/v1", home=_home)
    record = json.loads((_home / kb_warm.SERVE_FILE).read_text())
    assert record == {"pid": os.getpid(), "url": "http://127.0.0.1:9/v1"}
    assert kb_warm.running_server(home=_home) is None  # this process lives, but nothing listens there
    kb_warm.clear_server(home=_home)
    assert not (_home / kb_warm.SERVE_FILE).exists()

    # A pid above the kernel's pid_max (at most 2**22): no such process, as after a killed server.
    (_home / kb_warm.SERVE_FILE).write_text(json.dumps({"pid": 2**22 + 1, "url": "http://127.0.0.1:9/v1"}))
    assert kb_warm.running_server(home=_home) is None
    assert not (_home / kb_warm.SERVE_FILE).exists()  # a stale record is removed


def test_the_explorer_files_are_served_beside_the_api_and_nothing_else(tmp_path: Path) -> None:
    site = StaticSite()
    index = site("/")
    assert index is not None and index[0] == 200 and b"Lore explorer" in index[2]
    assert index[1]["Content-Type"].startswith("text/html")
    script = site("/explorer.js?v=1")
    assert script is not None and script[1]["Content-Type"].startswith("text/javascript")
    assert site("/v1/worlds") is None and site("/v1") is None
    assert site("/../kb.py") is None and site("/%2e%2e/kb.py") is None and site("/missing.html") is None
