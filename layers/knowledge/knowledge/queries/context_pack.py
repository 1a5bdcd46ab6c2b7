"""Context packs: what a storyteller model should know about a situation, within a token budget.

A pack holds three kinds of items, each ranked by relevance:

* chunks: the passages nearest the situation (vector search in its world), with citations;
* concepts: the current state (latest version) of the concepts the situation or those passages name
  (phrase match on the name, stemmed), then of the concepts whose description is nearest the situation;
* events: story events involving those concepts first, then the most recent; returned oldest first.

A world with a parent (docs/worlds.md) packs chunks and concepts of its lineage, nearer worlds shadowing
farther ones; its events are its own only (story events are never inherited).

Tokens are counted with the embedder's own tokenizer (`Embedder.count_tokens`; wordpieces for MiniLM),
which approximates a generation model's count to within a few percent for English prose, except for
long words: WordPiece gives any word over 100 characters one [UNK], so a 300,000-character run of letters
would "cost" one token. A word over LONG_WORD_CHARS therefore costs at least a token per CHARS_PER_TOKEN
characters (`budget_tokens`, knowledge.token_budget), what a generation model's byte-pair tokenizer spends on it. The budget is
shared out: concepts up to 25 %, events up to 15 %, chunks the rest; what a kind leaves unused goes to
the others (chunks first). Items are never cut: one that does not fit is skipped for smaller ones.

Chunks are deduplicated before packing: the same text twice (after folding case and whitespace), or a
chunk overlapping an already chosen chunk of the same document by half of the shorter one or more (the
chunker repeats a little text between neighbours; half means mostly the same passage).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from knowledge.adapters.postgres.context import concepts_for_context, events_for_context
from knowledge.adapters.postgres.search import search_in_lineage
from knowledge.embedding.live import bind_live
from knowledge.ports import Embedder
from knowledge.queries.models import (
    ContextChunk,
    ContextPack,
    ContextRequest,
    SearchHit,
)
from knowledge.token_budget import CHARS_PER_TOKEN, LONG_WORD_CHARS
from knowledge.token_budget import count_long_words as budget_tokens

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "CHARS_PER_TOKEN",
    "CONCEPT_SHARE",
    "EVENT_SHARE",
    "LONG_WORD_CHARS",
    "budget_tokens",
    "build_context_pack",
    "deduplicate",
]

CONCEPT_SHARE = 0.25
EVENT_SHARE = 0.15
_OVERLAP_TO_DROP = 0.5


def build_context_pack(
    conn: psycopg.Connection[Any], embedder: Embedder, request: ContextRequest
) -> ContextPack:
    """Raises UnknownWorldError."""
    vector = bind_live(conn, embedder).embed([request.situation])[0]
    # Twice as many candidates as can be packed: deduplication and the budget both drop some.
    # Hybrid, as every search: the situation's names and terms count as well as its meaning.
    # The worlds the search read are those the concepts are read from (docs/worlds.md).
    hits, lineage = search_in_lineage(
        conn, vector, world_id=request.world_id, k=2 * request.max_chunks, keywords=request.situation
    )
    unique, dropped = deduplicate(hits)
    unique = unique[: request.max_chunks]
    count_tokens = budget_tokens(embedder.count_tokens)
    chunks = [
        ContextChunk(
            chunk_id=h.chunk_id,
            similarity=h.similarity,
            tokens=count_tokens(h.text),
            text=h.text,
            citation=h.citation,
        )
        for h in unique
    ]
    concepts = concepts_for_context(conn, request, vector, [h.text for h in unique], count_tokens, lineage)
    events = events_for_context(conn, request, [c.concept_id for c in concepts], count_tokens)

    chosen = _pack(
        request.token_budget,
        [
            (chunks, 1.0 - CONCEPT_SHARE - EVENT_SHARE),
            (concepts, CONCEPT_SHARE),
            (events, EVENT_SHARE),
        ],
    )
    packed_chunks = [c for c in chunks if id(c) in chosen]
    packed_concepts = [c for c in concepts if id(c) in chosen]
    packed_events = sorted((e for e in events if id(e) in chosen), key=lambda e: (e.occurred_at, e.event_id))
    used = sum(c.tokens for c in packed_chunks) + sum(c.tokens for c in packed_concepts)
    used += sum(e.tokens for e in packed_events)
    return ContextPack(
        world_id=request.world_id,
        token_budget=request.token_budget,
        tokens_used=used,
        tokenizer=embedder.model_id,
        chunks=packed_chunks,
        concepts=packed_concepts,
        events=packed_events,
        dropped_duplicates=dropped,
    )


def deduplicate(hits: Sequence[SearchHit]) -> tuple[list[SearchHit], int]:
    """Hits in rank order without repeated text or mostly overlapping passages; and how many were dropped."""
    kept: list[SearchHit] = []
    seen_text: set[str] = set()
    spans: dict[str, list[tuple[int, int]]] = {}
    for hit in hits:
        key = " ".join(hit.text.casefold().split())
        start, end = hit.citation.start, hit.citation.end
        document_spans = spans.setdefault(hit.citation.document_key, [])
        repeated = key in seen_text or any(_mostly_overlaps(start, end, s, e) for s, e in document_spans)
        # A dropped passage's text counts as seen: its copies are as redundant as it is.
        seen_text.add(key)
        if repeated:
            continue
        document_spans.append((start, end))
        kept.append(hit)
    return kept, len(hits) - len(kept)


def _mostly_overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    overlap = min(a_end, b_end) - max(a_start, b_start)
    shorter = min(a_end - a_start, b_end - b_start)
    return overlap > 0 and overlap >= _OVERLAP_TO_DROP * max(shorter, 1)


def _pack(budget: int, groups: Sequence[tuple[Sequence[Any], float]]) -> set[int]:
    """ids of the items packed: each group up to its share first, then leftovers in group order."""
    chosen: set[int] = set()
    used = 0
    for capped in (True, False):
        for items, share in groups:
            group_used = sum(i.tokens for i in items if id(i) in chosen)
            cap = int(budget * share) if capped else budget
            for item in items:
                if id(item) in chosen:
                    continue
                if item.tokens <= cap - group_used and item.tokens <= budget - used:
                    chosen.add(id(item))
                    group_used += item.tokens
                    used += item.tokens
    return chosen
