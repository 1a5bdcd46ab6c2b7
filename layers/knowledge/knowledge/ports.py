"""What the knowledge domain needs from the outside world, as protocols; adapters/ and embedding/ implement them.

Domain modules take these as arguments (built by `knowledge.services`), so a test hands in a fake or a real
local implementation (the numpy MiniLM model, the embedded PostgreSQL server) instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol, runtime_checkable


@runtime_checkable
class Embedder(Protocol):
    """Anything that maps texts to unit-normalised vectors of a fixed dimension."""

    model_id: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text, in input order."""
        ...

    def count_tokens(self, text: str) -> int:
        """How many model tokens `text` costs (used to size chunks)."""
        ...


@runtime_checkable
class Reranker(Protocol):
    """Scores texts against a query for search's second stage (knowledge.reranking)."""

    @property
    def model_id(self) -> str: ...

    @property
    def weight(self) -> float:
        """How much its score counts against the first stage's, 0-1 (1: its order alone)."""
        ...

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        """One relevance score per text, in input order; higher is more relevant."""
        ...


def reject_bare_string(texts: Sequence[str]) -> None:
    """Every embedder's first check: a str is a Sequence[str], and embedding it would embed each character."""
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of texts, not a single string")


class DeadLetters(Protocol):
    """Where a message that can never be processed goes, with the reason as attributes."""

    def send(self, body: str, attributes: Mapping[str, str]) -> str:
        """Put `body` on the dead-letter queue with string `attributes`; returns the new message id."""
        ...


# The time the current invocation has left (a Lambda context's remaining milliseconds), for adapters whose
# calls are slow enough to run a function out of time: they start no call that could outlast it.
_TIME_LEFT: ContextVar[Callable[[], float] | None] = ContextVar("knowledge_time_left", default=None)


@contextmanager
def time_limit(remaining_ms: Callable[[], int] | None, *, reserve_s: float = 0.0) -> Iterator[None]:
    """Within this block, `seconds_left()` is what `remaining_ms` reports less `reserve_s` (kept for what
    the caller does afterwards); with None, there is no limit."""
    if remaining_ms is None:
        yield
        return
    token = _TIME_LEFT.set(lambda: remaining_ms() / 1000.0 - reserve_s)
    try:
        yield
    finally:
        _TIME_LEFT.reset(token)


def seconds_left() -> float | None:
    """Seconds the enclosing `time_limit` leaves on this thread, or None outside any."""
    left = _TIME_LEFT.get()
    return None if left is None else left()
