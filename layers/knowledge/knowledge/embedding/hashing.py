"""A deterministic feature-hashing embedder, for plumbing unit tests only (never the demo or benchmarks)."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

from knowledge.errors import ConfigurationError
from knowledge.ports import reject_bare_string

_WORD = re.compile(r"\w+", re.UNICODE)


class HashEmbedder:
    """Deterministic feature-hashing embedder for plumbing unit tests ONLY.

    It has no notion of meaning beyond shared words: never use it for the demo or benchmarks. Each
    lower-cased word adds +-1 to one hashed coordinate (blake2b, so stable across processes, unlike
    `hash()`); the sum is L2-normalised. A text without words maps to the first basis vector.
    """

    def __init__(self, dimension: int = 384) -> None:
        if dimension < 1:
            raise ConfigurationError(f"dimension must be positive, not {dimension}")
        self.model_id = f"feature-hash-{dimension}"
        self.dimension = dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        reject_bare_string(texts)
        return [self._embed_one(text) for text in texts]

    def count_tokens(self, text: str) -> int:
        return len(_WORD.findall(text))

    def _embed_one(self, text: str) -> list[float]:
        vector = [0.0] * self.dimension
        for word in _WORD.findall(text.lower()):
            digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
            value = int.from_bytes(digest, "big")
            vector[(value >> 1) % self.dimension] += 1.0 if value & 1 else -1.0
        norm = math.sqrt(math.fsum(v * v for v in vector))
        if norm == 0.0:
            vector[0] = 1.0
            return vector
        return [v / norm for v in vector]
