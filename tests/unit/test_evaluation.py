"""knowledge.evaluation: the hit definition, the metrics and the query-file lines it accepts."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from knowledge.errors import InvalidQueryFileError
from knowledge.evaluation import EvalQuery, evaluate, first_hit, parse_batch_line, parse_eval_line


@dataclass(frozen=True)
class P:
    document: str
    text: str
    start: int
    end: int


Q = EvalQuery(q="who?", world="w", document="a.md", start=100, end=200, answers=("Queen  Ysolde",))
GOLD = P("incoming/w/a.md", "It was queen ysolde who ruled.", 150, 260)


def test_a_hit_overlaps_the_gold_passage_of_the_same_document_and_holds_an_answer() -> None:
    assert Q.is_hit(GOLD)  # case and whitespace do not matter
    assert not Q.is_hit(P("incoming/w/b.md", GOLD.text, 150, 260))  # another document
    assert not Q.is_hit(P("incoming/w/xa.md", GOLD.text, 150, 260))  # a name that only ends the same
    assert not Q.is_hit(P(GOLD.document, GOLD.text, 200, 260))  # touches, does not overlap
    assert not Q.is_hit(P(GOLD.document, "Nobody ruled.", 150, 260))  # no answer in it
    assert EvalQuery(q="x", world="w", document="a.md", start=0, end=10).is_hit(P("a.md", "anything", 5, 6))


def test_metrics_are_hit_at_1_hit_at_10_and_mrr_at_10() -> None:
    miss = P("incoming/w/b.md", "", 0, 1)
    rankings = [[GOLD], [miss, GOLD], [miss] * 10 + [GOLD], []]
    metrics = evaluate([Q] * 4, rankings)
    assert (metrics.queries, metrics.hit_at_1, metrics.hit_at_10) == (4, 0.25, 0.5)
    assert metrics.mrr_at_10 == pytest.approx((1 + 0.5) / 4)
    assert first_hit(Q, rankings[2]) == 11
    assert evaluate([], []).queries == 0
    with pytest.raises(ValueError):
        evaluate([Q], [])


def test_query_lines_are_checked_and_bad_ones_named() -> None:
    line = {"q": "who?", "world": "w", "document": "a.md", "start": 1, "end": 5, "answers": ["x"], "id": 7}
    assert parse_eval_line(json.dumps(line), 1) == EvalQuery("who?", "w", "a.md", 1, 5, ("x",), "7")
    assert parse_batch_line('{"q": "who?"}', 1, default_world="w") == parse_batch_line(
        '{"q": "who?", "world": "w", "k": 10}', 1
    )
    bad = [
        ("not json", "line 3: not JSON"),
        ("[1]", "expected a JSON object"),
        (json.dumps({**line, "q": " "}), "'q' must be a non-empty string"),
        (json.dumps({**line, "end": 1}), "'end' must be greater"),
        (json.dumps({**line, "start": True}), "'start' must be a non-negative integer"),
        (json.dumps({**line, "answers": "x"}), "'answers' must be a list"),
    ]
    for text, message in bad:
        with pytest.raises(InvalidQueryFileError, match=message):
            parse_eval_line(text, 3)
    for text, message in [
        ('{"q": "a"}', "'world'"),
        ('{"q": "a", "world": "w", "k": 51}', "'k' must be 1-50"),
    ]:
        with pytest.raises(InvalidQueryFileError, match=message):
            parse_batch_line(text, 2)
