"""Split sections into overlapping, token-bounded chunks for embedding.

A chunk never spans two sections and carries its section's heading, and never spans a paragraph break
either, so a short fact keeps a chunk of its own instead of being diluted by a long neighbour: only a
run of short paragraphs (list items, dialogue lines; together at most a quarter of the budget) shares a
chunk. Inside a paragraph the text is cut into words (runs of non-whitespace); chunks are runs of whole
words, so chunk text is always a verbatim slice of the section text. A paragraph that fits is one chunk;
a longer one is cut into chunks that hold as many words as fit `max_tokens`, then back off to the last
sentence end, else word, provided that keeps at least half the budget. The next chunk starts far enough
back to repeat about `overlap_tokens` tokens (at a sentence start when one is near). A single word
longer than the budget is cut into pieces that each fit.

A word longer than LONG_WORD_CHARS counts at least one token per CHARS_PER_TOKEN characters, whatever
`count_tokens` says: WordPiece turns such a word into one [UNK], so a 300,000-character token would
otherwise "fit" any budget (and be invisible to the model, and overflow a real tokenizer's limits).

Cost is linear in the text: every distinct word is counted once (`count_tokens` must be a pure function
of its argument) and budgets are found on prefix sums of the word counts. Real tokenizers are not
additive over words (special tokens, rounding, merges across spaces), so each chunk's text is counted
once more to confirm it fits (shrinking and recounting the rare chunk that does not), and the ratio of
summed word counts to real counts seen so far scales the next budgets, keeping chunks near `max_tokens`.
`approximate_token_count` is exactly additive, so with it no chunk is recounted.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import Final

from knowledge.model import Chunk, Section
from knowledge.token_budget import count_long_words

_WORD: Final = re.compile(r"\S+")
_PIECE: Final = re.compile(r"([A-Za-z]+)|([0-9]+)|\S")
# Terminators (also the ellipsis and CJK full stops) and the closing quotes or brackets after them.
_SENTENCE_END: Final = re.compile(r"[.!?\u2026\u3002\uff01\uff1f][\"'\u201d\u2019\u00bb)\]]*(?=\s)")
_LINE_BREAK: Final = re.compile(r"\r\n?|\n")
_PARAGRAPH_BREAK: Final = re.compile(r"(?:\r\n?|\n)[^\S\r\n]*(?:\r\n?|\n)")

_CACHE_LIMIT: Final = 1_000_000  # distinct words remembered across sections
_MAX_RATIO: Final = 16.0  # bound on the learnt summed-words-per-token ratio

# Boundary strength after a word, from "cut inside a word" to "paragraph break".
_NONE, _WORD_BREAK, _SENTENCE, _PARAGRAPH = 0, 1, 2, 3


def approximate_token_count(text: str) -> int:
    """Cheap upper-leaning estimate of a WordPiece/BPE token count, without a vocabulary.

    ASCII letter runs count one token per started 6 letters (common words are one token, long or rare
    words split), digit runs one per started 3 digits (tokenizers split long numbers), other letters
    (accented, CJK...) one each, and every punctuation mark or symbol one. It is additive over
    whitespace-separated words, which lets the chunker count each word once.
    """
    total = 0
    for m in _PIECE.finditer(text):
        kind = m.lastindex
        if kind == 1:
            total += (m.end() - m.start() + 5) // 6
        elif kind == 2:
            total += (m.end() - m.start() + 2) // 3
        else:
            total += 1
    return total


def chunk_sections(
    sections: Sequence[Section],
    *,
    max_tokens: int = 200,
    overlap_tokens: int = 32,
    count_tokens: Callable[[str], int] = approximate_token_count,
) -> list[Chunk]:
    """Chunks of all `sections` in order, with ordinals 0..n-1 over the document.

    Chunk `text` is (scrubbed) section text; `start`/`end` are offsets into the original source text,
    mapped through `Section.source_offset`. Every chunk has `count_tokens(text) <= max_tokens`.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError("overlap_tokens must be at least 0 and less than max_tokens")
    chunker = _Chunker(max_tokens, overlap_tokens, count_tokens)
    chunks: list[Chunk] = []
    for section in sections:
        for start, end, tokens in chunker.section_spans(section.text):
            chunks.append(
                Chunk(
                    ordinal=len(chunks),
                    heading=section.heading,
                    text=section.text[start:end],
                    start=section.source_offset(start),
                    end=section.source_offset(end),
                    token_count=tokens,
                )
            )
    return chunks


class _Chunker:
    def __init__(self, max_tokens: int, overlap_tokens: int, count_tokens: Callable[[str], int]) -> None:
        self._max = max_tokens
        self._overlap = overlap_tokens
        # approximate_token_count is exactly additive over words: chunk counts come from prefix sums.
        # (It already counts a long word by its length.)
        self._additive = count_tokens is approximate_token_count
        self._count_tokens = count_tokens if self._additive else count_long_words(count_tokens)
        self._cache: dict[str, int] = {}
        # Other counters are not: per-word counts may carry special tokens or rounding. Learn how many
        # summed-word units a real token is worth, from the chunks counted so far.
        self._ratio = 1.0
        self._estimated = 0
        self._counted = 0

    def _units(self, text: str) -> tuple[list[int], list[int], list[int], list[int]]:
        """Starts, ends, token counts and following-boundary strengths of the words of `text`."""
        matches = list(_WORD.finditer(text))
        starts = list(map(re.Match.start, matches))
        ends = list(map(re.Match.end, matches))
        words = text.split()  # the same words as the matches: str.split and \s agree on whitespace
        cache = self._cache
        for word in set(words).difference(cache):
            cache[word] = self._count_tokens(word)
        tokens = list(map(cache.__getitem__, words))
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        strengths = [_WORD_BREAK] * len(words)
        if tokens and max(tokens) > self._max:
            starts, ends, tokens, strengths = self._split_long_words(text, starts, ends, tokens)
        # Upgrade breaks found by whole-text scans (few compared to words), weakest first.
        for pattern, strength in (
            (_SENTENCE_END, _SENTENCE),
            (_LINE_BREAK, _SENTENCE),
            (_PARAGRAPH_BREAK, _PARAGRAPH),
        ):
            for m in pattern.finditer(text):
                k = bisect_right(starts, m.start()) - 1  # the word the break follows (or ends)
                if k >= 0 and strengths[k] != _NONE:
                    strengths[k] = strength
        return starts, ends, tokens, strengths

    def _split_long_words(
        self, text: str, starts: list[int], ends: list[int], tokens: list[int]
    ) -> tuple[list[int], list[int], list[int], list[int]]:
        new_starts: list[int] = []
        new_ends: list[int] = []
        new_tokens: list[int] = []
        strengths: list[int] = []
        for a, b, n in zip(starts, ends, tokens, strict=True):
            if n <= self._max:
                new_starts.append(a)
                new_ends.append(b)
                new_tokens.append(n)
                strengths.append(_WORD_BREAK)
                continue
            for pa, pb, pn in self._pieces(text, a, b, n):
                new_starts.append(pa)
                new_ends.append(pb)
                new_tokens.append(pn)
                strengths.append(_NONE)
            strengths[-1] = _WORD_BREAK
        return new_starts, new_ends, new_tokens, strengths

    def _pieces(self, text: str, a: int, b: int, total: int) -> list[tuple[int, int, int]]:
        """Cut the over-long word `text[a:b]` (`total` tokens) into pieces that each fit the budget.

        Each piece is the longest prefix that fits, found by galloping from the running estimate and then
        bisecting (to within an eighth), so a piece costs a few counts of about its own length.
        """
        pieces: list[tuple[int, int, int]] = []
        size = max(1, (b - a) * self._max // max(1, total))
        while a < b:
            fits, fits_tokens = 0, 0  # longest length known to fit
            too_long: int | None = None  # shortest length known not to fit
            probe = min(b - a, size)
            while True:
                n = self._count_tokens(text[a : a + probe])
                if n <= self._max:
                    fits, fits_tokens = probe, n
                    if probe == b - a:
                        break
                else:
                    too_long = probe
                if too_long is not None and too_long - fits <= max(1, fits // 8):
                    break
                probe = min(b - a, probe * 2) if too_long is None else (fits + too_long) // 2
            if fits == 0:
                raise ValueError(f"max_tokens={self._max} is too small: {text[a]!r} alone counts {n} tokens")
            pieces.append((a, a + fits, fits_tokens))
            a += fits
            size = fits
        return pieces

    def section_spans(self, text: str) -> list[tuple[int, int, int]]:
        """(start, end, token count) of the chunks of one section: paragraph by paragraph, short
        paragraphs grouped (see the module docstring)."""
        out: list[tuple[int, int, int]] = []
        group_start: int | None = None
        group_end = group_tokens = 0
        for start, end in _paragraphs(text):
            tokens = self._estimate(text[start:end])
            if group_start is not None and group_tokens + tokens <= self._max // 4:
                group_end, group_tokens = end, group_tokens + tokens
                continue
            if group_start is not None:
                out.extend(self._offset(group_start, self.spans(text[group_start:group_end])))
            group_start, group_end, group_tokens = start, end, tokens
        if group_start is not None:
            out.extend(self._offset(group_start, self.spans(text[group_start:group_end])))
        return out

    @staticmethod
    def _offset(base: int, spans: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        return [(base + a, base + b, n) for a, b, n in spans]

    def _estimate(self, text: str) -> int:
        """Summed word counts of `text` (cached per word), in real tokens by the ratio learnt so far."""
        cache = self._cache
        total = 0
        for word in text.split():
            n = cache.get(word)
            if n is None:
                n = cache[word] = self._count_tokens(word)
            total += n
        return math.ceil(total / self._ratio)

    def spans(self, text: str) -> list[tuple[int, int, int]]:
        """(start, end, token count) of the chunks of one section's text."""
        starts, ends, tokens, strengths = self._units(text)
        n = len(starts)
        if n == 0:
            return []
        prefix = [0] * (n + 1)
        for i, t in enumerate(tokens):
            prefix[i + 1] = prefix[i] + t

        out: list[tuple[int, int, int]] = []
        i = 0
        previous_end = -1  # last word of the previous chunk
        while i < n:
            # Budgets are in summed-word units; the ratio learnt so far converts from real tokens.
            budget = max(1, int(self._max * self._ratio))
            overlap = int(self._overlap * self._ratio)
            highest = n - 1
            while True:
                # Last word j with tokens(i..j) <= budget; at least word i itself.
                j = min(highest, max(i, bisect_right(prefix, prefix[i] + budget) - 2))
                j = self._prefer_boundary(i, j, n, prefix, strengths, budget, previous_end + 1)
                estimate = prefix[j + 1] - prefix[i]
                if j == i or self._additive:
                    actual = estimate
                else:
                    actual = self._count_tokens(text[starts[i] : ends[j]])
                    self._learn(estimate, actual)
                if actual <= self._max or j == i:
                    break
                # Too many real tokens: end earlier, shrinking the budget by about the excess.
                highest = j - 1
                budget = min(budget, estimate) - max(1, int((actual - self._max) * self._ratio))
            out.append((starts[i], ends[j], actual))
            if j == n - 1:
                break
            previous_end = j
            i = self._next_start(i, j, prefix, strengths, budget, overlap)
        return out

    def _learn(self, estimate: int, actual: int) -> None:
        self._estimated += estimate
        self._counted += actual
        self._ratio = min(_MAX_RATIO, max(1 / _MAX_RATIO, self._estimated / max(1, self._counted)))

    def _prefer_boundary(
        self, i: int, j: int, n: int, prefix: list[int], strengths: list[int], budget: int, min_end: int
    ) -> int:
        """The end word for a chunk from word i that may reach word j: the last strongest boundary that
        keeps at least half the budget and gets past the previous chunk's end (`min_end`)."""
        if j == n - 1:
            return j
        lowest = max(i, min_end, bisect_left(prefix, prefix[i] + budget // 2) - 1)
        for strength in (_PARAGRAPH, _SENTENCE, _WORD_BREAK):
            for k in range(j, lowest - 1, -1):
                if strengths[k] >= strength:
                    return k
        return j

    def _next_start(
        self, i: int, j: int, prefix: list[int], strengths: list[int], budget: int, overlap: int
    ) -> int:
        if self._overlap == 0:
            return j + 1
        # Earliest word such that words k..j hold at most the overlap; at least the last word overlaps.
        k = min(j, bisect_left(prefix, prefix[j + 1] - overlap))
        # Prefer a sentence start that keeps at least half the overlap.
        limit = min(j, bisect_right(prefix, prefix[j + 1] - (overlap + 1) // 2) - 1)
        for s in range(k, limit + 1):
            if s > 0 and strengths[s - 1] >= _SENTENCE:
                k = s
                break
        # Start late enough that the next chunk can reach word j + 1, and always move on.
        reach = bisect_left(prefix, prefix[j + 2] - budget)
        return max(i + 1, k, reach)


def _paragraphs(text: str) -> list[tuple[int, int]]:
    """(start, end) of the non-blank paragraphs of `text`, split at blank lines."""
    out: list[tuple[int, int]] = []
    position = 0
    for m in _PARAGRAPH_BREAK.finditer(text):
        if text[position : m.start()].strip():
            out.append((position, m.start()))
        position = m.end()
    if text[position:].strip():
        out.append((position, len(text)))
    return out
