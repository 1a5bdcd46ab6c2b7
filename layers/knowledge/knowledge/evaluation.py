"""Retrieval evaluation: hit@k and MRR of ranked search results against expected passages.

A query names its world, the document its answer is in (the object's file name or key), the character
span of the expected passage in that document's source text and the answers it contains. A returned
chunk is a hit when it comes from that document, overlaps the span and contains one of the answers
(compared case-insensitively, whitespace collapsed); a query without answers needs only the overlap.
Pure: searching is the caller's (`kb eval`, bench/bench_retrieval.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from knowledge.errors import InvalidQueryFileError

__all__ = [
    "BatchQuery",
    "EvalQuery",
    "Metrics",
    "RankedPassage",
    "evaluate",
    "first_hit",
    "parse_batch_line",
    "parse_eval_line",
]

MAX_K = 50  # as the API (knowledge.queries.models.MAX_K)


class RankedPassage(Protocol):
    """What a search result must tell to be judged (knowledge.queries.search.SearchRow has it)."""

    @property
    def document(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...


@dataclass(frozen=True, slots=True)
class BatchQuery:
    q: str
    world: str
    k: int = 10


@dataclass(frozen=True, slots=True)
class EvalQuery:
    q: str
    world: str
    document: str
    start: int
    end: int
    answers: tuple[str, ...] = ()
    id: str = ""

    def is_hit(self, passage: RankedPassage) -> bool:
        if not _same_document(passage.document, self.document):
            return False
        if passage.end <= self.start or passage.start >= self.end:
            return False
        if not self.answers:
            return True
        text = _normal(passage.text)
        return any(_normal(a) in text for a in self.answers)


@dataclass(frozen=True, slots=True)
class Metrics:
    queries: int
    hit_at_1: float
    hit_at_10: float
    mrr_at_10: float

    def to_json(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "hit@1": round(self.hit_at_1, 4),
            "hit@10": round(self.hit_at_10, 4),
            "mrr@10": round(self.mrr_at_10, 4),
        }


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def _same_document(returned: str, expected: str) -> bool:
    return returned == expected or returned.endswith("/" + expected.lstrip("/"))


def first_hit(query: EvalQuery, ranked: Sequence[RankedPassage]) -> int | None:
    """The 1-based rank of the first hit, None when there is none."""
    for rank, passage in enumerate(ranked, start=1):
        if query.is_hit(passage):
            return rank
    return None


def evaluate(queries: Sequence[EvalQuery], rankings: Iterable[Sequence[RankedPassage]]) -> Metrics:
    """hit@1, hit@10 and MRR@10 over `queries`, `rankings` in the same order (one list per query)."""
    ranks = [first_hit(q, r) for q, r in zip(queries, rankings, strict=True)]
    n = len(ranks)
    if n == 0:
        return Metrics(0, 0.0, 0.0, 0.0)
    return Metrics(
        queries=n,
        hit_at_1=sum(r == 1 for r in ranks) / n,
        hit_at_10=sum(r is not None and r <= 10 for r in ranks) / n,
        mrr_at_10=sum(1 / r for r in ranks if r is not None and r <= 10) / n,
    )


def _object(line: str, number: int) -> Mapping[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidQueryFileError(f"line {number}: not JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise InvalidQueryFileError(f"line {number}: expected a JSON object")
    return value


def _text(value: Mapping[str, Any], name: str, number: int) -> str:
    text = value.get(name)
    if not isinstance(text, str) or not text.strip():
        raise InvalidQueryFileError(f"line {number}: {name!r} must be a non-empty string")
    return text


def _int(value: Mapping[str, Any], name: str, number: int, default: int | None = None) -> int:
    raw = value.get(name, default)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise InvalidQueryFileError(f"line {number}: {name!r} must be a non-negative integer")
    return raw


def parse_batch_line(line: str, number: int, *, default_world: str | None = None) -> BatchQuery:
    """One `kb search --batch` line: {"q", "world", "k"} ("world" may default, "k" defaults to 10)."""
    value = _object(line, number)
    if default_world is not None and "world" not in value:
        value = {**value, "world": default_world}
    k = _int(value, "k", number, 10)
    if not 1 <= k <= MAX_K:
        raise InvalidQueryFileError(f"line {number}: 'k' must be 1-{MAX_K}")
    return BatchQuery(q=_text(value, "q", number), world=_text(value, "world", number), k=k)


def parse_eval_line(line: str, number: int) -> EvalQuery:
    """One `kb eval` line: {"q", "world", "document", "start", "end", "answers"?, "id"?}."""
    value = _object(line, number)
    start, end = _int(value, "start", number), _int(value, "end", number)
    if end <= start:
        raise InvalidQueryFileError(f"line {number}: 'end' must be greater than 'start'")
    answers = value.get("answers", [])
    if not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
        raise InvalidQueryFileError(f"line {number}: 'answers' must be a list of non-empty strings")
    return EvalQuery(
        q=_text(value, "q", number),
        world=_text(value, "world", number),
        document=_text(value, "document", number),
        start=start,
        end=end,
        answers=tuple(answers),
        id=str(value.get("id", "")),
    )
