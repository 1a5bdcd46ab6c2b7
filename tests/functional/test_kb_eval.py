"""`kb search --batch` and `kb eval` on a $KB_HOME of their own, with the real MiniLM embedder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.kb import main
from knowledge.adapters.postgres import documents
from knowledge.adapters.postgres.database import Database
from knowledge.adapters.postgres.migrations import apply_migrations
from knowledge.embedding.minilm import MINILM_MODEL_ID, MiniLmEmbedder
from knowledge.model import Chunk
from local_runtime.postgres import DATABASE, start_embedded_postgres

PASSAGES = {
    "tithe.md": "The fire tithe is collected at dawn by the Ember Court's wardens, one living ember per kiln.",
    "harbour.md": "Smugglers of Tidewatch trade salt for ash glass in the flooded harbour district.",
    "queen.md": "Queen Ysolde has ruled Emberfall for forty winters from the Obsidian Throne.",
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KB_NO_SERVER", "1")
    pg = start_embedded_postgres(tmp_path / "home" / "pg")
    database = Database(lambda: pg.conninfo(DATABASE))
    embedder = MiniLmEmbedder()
    with database.schema_connection() as conn:
        apply_migrations(conn, embedding_model=MINILM_MODEL_ID, embedding_dimension=384)
    with database.transaction() as conn:
        for i, (name, text) in enumerate(PASSAGES.items()):
            documents.store_document(
                conn,
                documents.DocumentToStore(
                    world_id="emberfall",
                    s3_key=f"incoming/emberfall/{name}",
                    title=name,
                    media_type="text/markdown",
                    content_sha256=f"{i:064x}",
                    size_bytes=len(text),
                    embedding_model=MINILM_MODEL_ID,
                    chunks=[Chunk(0, "", text, 0, len(text), 20)],
                    chunk_vectors=embedder.embed([text]),
                ),
            )
    database.close()
    return tmp_path


def _lines(path: Path, records: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def test_search_batch_writes_one_result_a_line_in_order(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = _lines(
        home / "batch.jsonl",
        [
            {"q": "who rules Emberfall", "world": "emberfall", "k": 2},
            {"q": "salt smugglers"},  # world from --world, k 10
            {"q": "anything", "world": "nowhere", "k": 1},
        ],
    )
    capsys.readouterr()
    assert main(["search", "--batch", batch, "--world", "emberfall"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["q"], r["world"], r["k"], len(r["hits"])) for r in out] == [
        ("who rules Emberfall", "emberfall", 2, 2),
        ("salt smugglers", "emberfall", 10, 3),
        ("anything", "nowhere", 1, 0),
    ]
    assert out[0]["hits"][0]["document"] == "incoming/emberfall/queen.md"
    assert out[1]["hits"][0]["document"] == "incoming/emberfall/harbour.md"
    assert set(out[0]["hits"][0]) == {
        "rank",
        "score",
        "document",
        "title",
        "heading",
        "text",
        "start",
        "end",
        "world",
    }


def test_eval_reports_hit_at_k_and_mrr(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    queries = _lines(
        home / "queries.jsonl",
        [
            {
                "q": "How is the fire tithe collected?",
                "world": "emberfall",
                "document": "tithe.md",
                "start": 0,
                "end": 40,
                "answers": ["at dawn"],
            },
            {
                "q": "Who sits on the Obsidian Throne?",
                "world": "emberfall",
                "document": "queen.md",
                "start": 0,
                "end": 20,
                "answers": ["Queen Ysolde"],
            },
            # Its answer is in no passage: never a hit.
            {
                "q": "What do the smugglers trade?",
                "world": "emberfall",
                "document": "harbour.md",
                "start": 0,
                "end": 80,
                "answers": ["gold"],
            },
        ],
    )
    capsys.readouterr()
    details = home / "details.jsonl"
    assert main(["eval", queries, "--json", "--details", str(details)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {
        "file": queries,
        "mode": "hybrid",
        "rerank": False,
        "k": 10,
        "queries": 3,
        "hit@1": pytest.approx(2 / 3, abs=1e-4),
        "hit@10": pytest.approx(2 / 3, abs=1e-4),
        "mrr@10": pytest.approx(2 / 3, abs=1e-4),
    }
    assert [json.loads(line)["first_hit"] for line in details.read_text().splitlines()] == [1, 1, None]
    assert main(["eval", queries, "--mode", "keyword"]) == 0
    assert "| hit@1 | hit@10 | MRR@10 |" in capsys.readouterr().out


def test_bad_query_files_are_refused_naming_the_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = home / "bad.jsonl"
    bad.write_text('{"q": "fine", "world": "emberfall"}\n{"q": "no world"\n', encoding="utf-8")
    assert main(["search", "--batch", str(bad)]) == 2
    assert "line 2: not JSON" in capsys.readouterr().err
    assert main(["eval", str(bad)]) == 2
    assert "line 1: 'start' must be a non-negative integer" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="a query and --world are required"):
        main(["search", "--world", "emberfall"])
    with pytest.raises(SystemExit, match="cannot read"):
        main(["eval", str(home / "missing.jsonl")])


def test_an_empty_kb_home_finds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KB_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("KB_NO_SERVER", "1")
    batch = _lines(tmp_path / "batch.jsonl", [{"q": "who rules", "world": "emberfall"}])
    capsys.readouterr()
    assert main(["search", "--batch", batch]) == 0
    assert json.loads(capsys.readouterr().out)["hits"] == []
