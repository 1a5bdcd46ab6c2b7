"""The context pack's token budget: long words cost their length, not the one [UNK] WordPiece gives them."""

from __future__ import annotations

import math
from typing import Any

import pytest

import knowledge.queries.context_pack as context_pack
from knowledge.queries.context_pack import CHARS_PER_TOKEN, LONG_WORD_CHARS, budget_tokens
from knowledge.queries.models import Citation, ContextRequest, SearchHit


def wordpiece_like(text: str) -> int:
    """Whitespace words as WordPiece counts them: a word over 100 characters is one [UNK]."""
    return sum(
        1 if len(word) > LONG_WORD_CHARS else max(1, math.ceil(len(word) / 6)) for word in text.split()
    )


class FakeEmbedder:
    model_id = "wordpiece-like"

    def embed(self, texts: Any) -> list[list[float]]:
        return [[1.0, 0.0] for _ in texts]

    def count_tokens(self, text: str) -> int:
        return wordpiece_like(text)


def hit(chunk_id: int, text: str) -> SearchHit:
    citation = Citation(
        document_key=f"incoming/emberfall/{chunk_id}.md", title="t", heading="h", start=0, end=len(text)
    )
    return SearchHit(
        rank=chunk_id, chunk_id=chunk_id, score=0.9, similarity=0.9, text=text, citation=citation
    )


def test_a_long_word_costs_a_token_per_four_characters() -> None:
    count = budget_tokens(wordpiece_like)
    assert wordpiece_like("a" * 300_000) == 1  # what the pack used to believe
    assert count("a" * 300_000) == 300_000 // CHARS_PER_TOKEN
    assert count("x" * LONG_WORD_CHARS) == wordpiece_like("x" * LONG_WORD_CHARS)  # at the limit: unchanged
    assert count("x" * (LONG_WORD_CHARS + 1)) == math.ceil((LONG_WORD_CHARS + 1) / CHARS_PER_TOKEN)
    prose = "the Hearth-Lords tithe fire each winter"
    assert count(prose) == wordpiece_like(prose)
    assert count(f"{prose} {'z' * 4000} {prose}") == 2 * wordpiece_like(prose) + 1000
    # Never less than the tokenizer's own count: a long run it already splits finely keeps its count.
    assert count("城" * 400) == max(wordpiece_like("城" * 400), 100)


@pytest.mark.parametrize("unit", ["a©", "a€", "a\u0301", "a_", "a-"])
def test_a_long_word_of_symbols_or_combining_marks_costs_as_much(unit: str) -> None:
    # Any run of non-whitespace, as the chunker counts it: WordPiece's one [UNK] is no cheaper for these.
    word = unit * 150_000
    assert budget_tokens(wordpiece_like)(word) == len(word) // CHARS_PER_TOKEN


def test_a_300000_character_chunk_does_not_fit_a_200_token_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    huge = hit(1, "a" * 300_000)
    small = hit(2, "Queen Ysolde rules the Ember Court from Kharos Keep")
    monkeypatch.setattr(
        context_pack, "search_in_lineage", lambda conn, vector, **kw: ([huge, small], ["emberfall"])
    )
    monkeypatch.setattr(context_pack, "concepts_for_context", lambda *a: [])
    monkeypatch.setattr(context_pack, "events_for_context", lambda *a: [])
    request = ContextRequest(world_id="emberfall", situation="who rules", token_budget=200)

    pack = context_pack.build_context_pack(object(), FakeEmbedder(), request)  # type: ignore[arg-type]

    assert [c.chunk_id for c in pack.chunks] == [2]
    assert pack.tokens_used <= 200


def test_concepts_and_events_are_counted_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    counted: list[int] = []

    def concepts(
        conn: Any, request: Any, vector: Any, texts: Any, count_tokens: Any, lineage: Any
    ) -> list[Any]:
        counted.append(count_tokens("b" * 8000))
        return []

    monkeypatch.setattr(context_pack, "search_in_lineage", lambda conn, vector, **kw: ([], ["emberfall"]))
    monkeypatch.setattr(context_pack, "concepts_for_context", concepts)
    monkeypatch.setattr(context_pack, "events_for_context", lambda conn, request, ids, count_tokens: [])
    request = ContextRequest(world_id="emberfall", situation="who rules", token_budget=200)
    context_pack.build_context_pack(object(), FakeEmbedder(), request)  # type: ignore[arg-type]
    assert counted == [2000]
