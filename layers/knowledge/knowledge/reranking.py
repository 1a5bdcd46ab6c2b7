"""Search's optional second stage (`rerank: true`): the first stage's top k reordered by a reranker.

(Hybrid search has a sentence stage of its own, always on and in SQL: knowledge.adapters.postgres.search.
This one embeds sentences per search, or calls Bedrock.)

The final order mixes the reranker's score with the first stage's, each min-max scaled over the
candidates, by the reranker's `weight` (1.0: its order alone). Locally `SentenceReranker` scores a chunk
by its best single sentence against the query, with the configured embedder, so a one-sentence fact inside
a long chunk counts at full strength; in AWS a Bedrock rerank model scores each pair
(knowledge.adapters.aws.bedrock_rerank). Measured on bench/retrieval in docs/benchmarks.md, section 8.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

import numpy as np

from knowledge.ports import Embedder, Reranker
from knowledge.queries.models import SearchHit

__all__ = ["SENTENCE_RERANK_WEIGHT", "SentenceReranker", "rerank_hits", "split_sentences"]

# Chosen on the retrieval set (0.2, 0.3 and 0.5 all gained there; 0.3 the most): read it as tuned on it.
SENTENCE_RERANK_WEIGHT: Final = 0.3
# A sentence ends at . ! ? or an ellipsis, with any closing quotes or brackets, before white space.
_SENTENCE_END: Final = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*(?=\s)")


def split_sentences(text: str) -> list[str]:
    """`text`'s sentences, stripped; the whole text when it has no sentence break."""
    pieces, start = [], 0
    for end in _SENTENCE_END.finditer(text):
        pieces.append(text[start : end.end()].strip())
        start = end.end()
    pieces.append(text[start:].strip())
    return [p for p in pieces if p] or [text]


class SentenceReranker:
    """Scores each text by the best cosine between the query and one of its sentences (one embedding batch)."""

    weight = SENTENCE_RERANK_WEIGHT

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    @property
    def model_id(self) -> str:
        return f"sentences:{self._embedder.model_id}"

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        pieces = [split_sentences(t) for t in texts]
        vectors = np.asarray(
            self._embedder.embed([query, *(p for ps in pieces for p in ps)]), dtype=np.float32
        )
        similarities = vectors[1:] @ vectors[0]
        out, at = [], 0
        for ps in pieces:
            out.append(float(similarities[at : at + len(ps)].max()))
            at += len(ps)
        return out


def _scaled(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    spread = float(x.max() - x.min())
    return (x - x.min()) / spread if spread > 0 else np.zeros_like(x)


def rerank_hits(hits: Sequence[SearchHit], reranker: Reranker, query: str) -> list[SearchHit]:
    """`hits` reordered by `reranker` mixed with their first-stage scores; ranks renumbered from 1, and each
    hit's score becomes the mixed score (0-1). Ties keep the first stage's order."""
    if len(hits) < 2:
        return list(hits)
    scores = reranker.scores(query, [h.text for h in hits])
    if len(scores) != len(hits):
        raise ValueError(f"the reranker scored {len(scores)} of {len(hits)} texts")
    w = reranker.weight
    mixed = (1 - w) * _scaled([h.score for h in hits]) + w * _scaled(scores)
    order = np.argsort(-mixed, kind="stable")
    return [
        hits[i].model_copy(update={"rank": rank, "score": round(float(mixed[i]), 6)})
        for rank, i in enumerate(order, start=1)
    ]
