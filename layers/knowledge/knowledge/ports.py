"""What the knowledge domain needs from the outside world, as protocols; adapters/ and embedding/ implement them.

Domain modules take these as arguments (built by `knowledge.services`), so a test hands in a fake or a real
local implementation (the numpy MiniLM model, the embedded PostgreSQL server) instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def reject_bare_string(texts: Sequence[str]) -> None:
    """Every embedder's first check: a str is a Sequence[str], and embedding it would embed each character."""
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of texts, not a single string")


class DeadLetters(Protocol):
    """Where a message that can never be processed goes, with the reason as attributes."""

    def send(self, body: str, attributes: Mapping[str, str]) -> str:
        """Put `body` on the dead-letter queue with string `attributes`; returns the new message id."""
        ...
