from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knowledge.ingestion.chunking import approximate_token_count, chunk_sections
from knowledge.model import Chunk, Section
from knowledge.pii import scrub_sections
from knowledge.token_budget import CHARS_PER_TOKEN


def section_of(source: str, heading: str = "") -> Section:
    return Section(heading, source, 0, len(source))


def check_invariants(
    source: str,
    sections: Sequence[Section],
    chunks: Sequence[Chunk],
    *,
    max_tokens: int,
    count: Callable[[str], int] = approximate_token_count,
) -> None:
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.token_count == count(chunk.text) <= max_tokens
        assert chunk.text == chunk.text.strip() != ""
        assert 0 <= chunk.start < chunk.end <= len(source)
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    assert [c.end for c in chunks] == sorted(c.end for c in chunks)
    for section in sections:
        own = [c for c in chunks if section.start <= c.start and c.end <= section.end]
        assert all(c.heading == section.heading for c in own)
        assert all(c.text in section.text for c in own)
        covered: set[int] = set()
        for c in own:
            covered.update(range(c.start, c.end))
        for pos in range(section.start, section.end):
            assert source[pos].isspace() or pos in covered, f"offset {pos} not covered"


# --- token estimate ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("", 0),
        ("   \n", 0),
        ("the", 1),
        ("court", 1),
        ("centuries", 2),  # 9 letters: two pieces
        ("1247", 2),
        ("Hello, world!", 4),
        ("élan", 2),  # é counts alone, "lan" is one piece
        ("王国", 2),
        ("HP 1200/1500", 6),
    ],
)
def test_approximate_token_count(text: str, tokens: int) -> None:
    assert approximate_token_count(text) == tokens


@given(st.lists(st.text(max_size=10), max_size=8))
def test_approximate_token_count_is_additive_over_words(words: list[str]) -> None:
    pieces = [w for word in words for w in word.split()]
    assert approximate_token_count(" ".join(pieces)) == sum(approximate_token_count(w) for w in pieces)


# --- behaviour --------------------------------------------------------------------------------------------


def test_short_section_is_one_chunk() -> None:
    source = "  The Ember Court ruled for nine centuries.  "
    sections = [Section("Court", source.strip(), 2, len(source) - 2)]
    [chunk] = chunk_sections(sections)
    assert (chunk.heading, chunk.text, chunk.start, chunk.end) == (
        "Court",
        source.strip(),
        2,
        len(source) - 2,
    )
    assert chunk.token_count == approximate_token_count(chunk.text)


def test_blank_sections_give_no_chunks() -> None:
    assert chunk_sections([Section("A", "", 0, 0), Section("B", " \n ", 0, 3)]) == []


def test_chunks_never_span_sections_and_ordinals_run_over_the_document() -> None:
    source = "# A\nAlpha beta gamma.\n# B\nDelta epsilon."
    a = Section("A", "Alpha beta gamma.", 4, 21)
    b = Section("B", "Delta epsilon.", 26, 40)
    chunks = chunk_sections([a, b], max_tokens=50, overlap_tokens=4)
    assert [(c.ordinal, c.heading, c.text) for c in chunks] == [
        (0, "A", "Alpha beta gamma."),
        (1, "B", "Delta epsilon."),
    ]
    for c in chunks:
        assert source[c.start : c.end] == c.text


def test_prefers_paragraph_then_sentence_boundaries() -> None:
    first = "The court rose. " * 5  # 20 tokens of four-token sentences
    second = "Fire chose the queens. " * 5
    source = first.strip() + "\n\n" + second.strip()
    chunks = chunk_sections([section_of(source)], max_tokens=30, overlap_tokens=0)
    assert chunks[0].text == first.strip()  # stops at the paragraph break, not mid-paragraph
    assert all(c.text.endswith(".") for c in chunks)


def test_overlap_repeats_the_tail_of_the_previous_chunk() -> None:
    source = " ".join(f"word{i}" for i in range(200))  # two tokens per word
    chunks = chunk_sections([section_of(source)], max_tokens=40, overlap_tokens=10)
    assert len(chunks) > 5
    for prev, nxt in itertools.pairwise(chunks):
        shared = source[nxt.start : prev.end]
        assert nxt.start < prev.end
        assert approximate_token_count(shared) == 10


def test_overlap_starts_at_a_sentence_when_one_is_near() -> None:
    source = " ".join(["Alpha beta gamma delta epsilon zeta eta theta."] * 10)  # 9 tokens per sentence
    chunks = chunk_sections([section_of(source)], max_tokens=30, overlap_tokens=12)
    for chunk in chunks:
        assert chunk.text.startswith("Alpha")


def test_overlong_word_is_cut_into_fitting_pieces() -> None:
    blob = "x" * 3000  # 500 tokens in one word
    source = f"Before the blob. {blob} After it."
    chunks = chunk_sections([section_of(source)], max_tokens=100, overlap_tokens=10)
    check_invariants(source, [section_of(source)], chunks, max_tokens=100)
    pieces = [c.text for c in chunks if set(c.text) == {"x"}]
    assert "".join(pieces) == blob
    assert len(pieces) == 5


def test_non_additive_tokenizer_still_respects_the_bound() -> None:
    def with_specials(text: str) -> int:
        return approximate_token_count(text) + 2  # [CLS] and [SEP]

    source = " ".join(f"Sentence number {i} of the chronicle." for i in range(100))
    chunks = chunk_sections([section_of(source)], max_tokens=32, overlap_tokens=8, count_tokens=with_specials)
    check_invariants(source, [section_of(source)], chunks, max_tokens=32, count=with_specials)


@pytest.mark.parametrize(
    "counter",
    [
        lambda t: approximate_token_count(t) + 2,  # [CLS] and [SEP] on every call
        lambda t: max(-(-len(t.split()) * 4 // 3), -(-len(t) // 4)) if t else 0,  # rounds up per call
    ],
    ids=["special-tokens", "rounding"],
)
def test_chunks_stay_near_the_budget_with_a_non_additive_counter(counter: Callable[[str], int]) -> None:
    source = " ".join(f"Sentence {i} of the chronicle tells of fire and ash." for i in range(400))
    chunks = chunk_sections([section_of(source)], max_tokens=100, overlap_tokens=10, count_tokens=counter)
    check_invariants(source, [section_of(source)], chunks, max_tokens=100, count=counter)
    sizes = [c.token_count for c in chunks[2:-1]]  # after the first chunks have calibrated the budget
    assert sum(sizes) / len(sizes) >= 80


def test_scrubbed_sections_cite_the_original_text() -> None:
    source = "Write to mira@court.example or call +44 20 7946 0958. " * 20
    sections, _ = scrub_sections([section_of(source.strip(), "Contacts")])
    chunks = chunk_sections(sections, max_tokens=40, overlap_tokens=8)
    assert len(chunks) > 3
    for chunk in chunks:
        assert "@" not in chunk.text
        original = source[chunk.start : chunk.end]
        assert original.count("mira@court.example") == chunk.text.count("[EMAIL]")
        assert original.count("+44 20 7946 0958") == chunk.text.count("[PHONE]")
        assert original.startswith(chunk.text[:5])
    check_invariants(source, sections, chunks, max_tokens=40)


@pytest.mark.parametrize("max_tokens, overlap_tokens", [(0, 0), (10, 10), (10, -1)])
def test_rejects_bad_bounds(max_tokens: int, overlap_tokens: int) -> None:
    with pytest.raises(ValueError):
        chunk_sections([section_of("text")], max_tokens=max_tokens, overlap_tokens=overlap_tokens)


def test_large_document_is_chunked_with_linear_work() -> None:
    # Behaviour, not wall-clock: the text handed to the token counter stays proportional to the document.
    rng = random.Random(1247)
    vocabulary = ["the", "ember", "court", "fell", "in", "year", "1247", "when", "dragons", "came", "from"]
    paragraphs = []
    size = 0
    while size < 2_000_000:
        sentences = [" ".join(rng.choices(vocabulary, k=rng.randint(5, 25))) + "." for _ in range(5)]
        paragraphs.append(" ".join(sentences))
        size += len(paragraphs[-1]) + 2
    source = "\n\n".join(paragraphs)
    counted = 0

    def counting(text: str) -> int:
        nonlocal counted
        counted += len(text)
        return approximate_token_count(text)

    chunks = chunk_sections([section_of(source)], count_tokens=counting)
    assert chunks[-1].end == len(source)
    assert all(c.token_count <= 200 for c in chunks)
    assert counted <= 6 * len(source), f"counted {counted / len(source):.1f}x the document"


# --- properties -------------------------------------------------------------------------------------------

_words = st.sampled_from(
    [
        "the",
        "Ember",
        "Court",
        "fell",
        "in",
        "1247",
        "when",
        "dragons",
        "came.",
        "Why?",
        "fire!",
        "HP",
        "1200/1500",
    ]
)
_separators = st.sampled_from([" ", " ", " ", "  ", "\n", "\n\n", "\t"])
_section_text = st.lists(st.tuples(_words, _separators), min_size=1, max_size=120).map(
    lambda pairs: "".join(w + s for w, s in pairs).strip()
)


@st.composite
def _documents(draw: st.DrawFn) -> tuple[str, list[Section]]:
    texts = draw(st.lists(_section_text, min_size=1, max_size=4))
    source = ""
    sections = []
    for i, text in enumerate(texts):
        source += f"# H{i}\n"
        sections.append(Section(f"H{i}", text, len(source), len(source) + len(text)))
        source += text + "\n"
    return source, sections


@settings(max_examples=150, deadline=None)
@given(_documents(), st.integers(8, 60), st.data())
def test_chunking_properties(
    document: tuple[str, list[Section]], max_tokens: int, data: st.DataObject
) -> None:
    source, sections = document
    overlap = data.draw(st.integers(0, max_tokens // 2))
    chunks = chunk_sections(sections, max_tokens=max_tokens, overlap_tokens=overlap)
    check_invariants(source, sections, chunks, max_tokens=max_tokens)
    for chunk in chunks:
        assert source[chunk.start : chunk.end] == chunk.text
    for prev, nxt in itertools.pairwise(chunks):
        if prev.heading != nxt.heading:
            assert prev.end <= nxt.start
            continue
        assert nxt.end > prev.end  # progress
        if nxt.start >= prev.end and re.search(r"\n[^\S\n]*\n", source[prev.end : nxt.start]):
            continue  # a paragraph break between them: chunks never span one, nor overlap across it
        if overlap and len(prev.text.split()) > 1 and max_tokens >= 10:
            # Words are at most 5 tokens here ("1200/1500"), so two always fit together: the overlap is at
            # least a word, and at most overlap_tokens unless that one word is longer.
            assert nxt.start < prev.end
            assert approximate_token_count(source[nxt.start : prev.end]) <= max(overlap, 5)
        elif not overlap:
            assert nxt.start >= prev.end


_pii_words = st.sampled_from(["mira@court.example", "10.0.0.1", "415-555-0132", "lore", "fire.", "1247"])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.one_of(_words, _pii_words), _separators), min_size=1, max_size=80))
def test_chunking_scrubbed_sections_properties(pairs: list[tuple[str, str]]) -> None:
    source = "".join(w + s for w, s in pairs).strip()
    sections, _ = scrub_sections([section_of(source, "S")])
    chunks = chunk_sections(sections, max_tokens=20, overlap_tokens=5)
    check_invariants(source, sections, chunks, max_tokens=20)
    for chunk in chunks:
        if "[" not in chunk.text:
            assert source[chunk.start : chunk.end] == chunk.text


@settings(max_examples=60, deadline=None)
@given(_section_text, st.integers(6, 40))
def test_chunking_with_a_non_additive_counter(text: str, max_tokens: int) -> None:
    def by_characters(t: str) -> int:
        return len(t) // 4 + 1  # spaces count, so the sum over words underestimates

    chunks = chunk_sections(
        [section_of(text)], max_tokens=max_tokens, overlap_tokens=2, count_tokens=by_characters
    )
    check_invariants(text, [section_of(text)], chunks, max_tokens=max_tokens, count=by_characters)


def test_a_chunk_never_spans_a_paragraph_break_but_short_paragraphs_share_one() -> None:
    fact = "The lantern guild meets at dusk."
    long_para = " ".join(["The harbour court rules the tide markets and the salt roads."] * 6)
    text = f"{long_para}\n\n{fact}\n\n- ember\n\n- ash\n\n- salt\n\n{long_para}"
    chunks = chunk_sections([section_of(text)], max_tokens=200, overlap_tokens=32)
    texts = [c.text for c in chunks]
    assert texts == [long_para, f"{fact}\n\n- ember\n\n- ash\n\n- salt", long_para]


def test_a_long_word_counts_by_its_length_whatever_the_tokenizer_says() -> None:
    def wordpiece_like(t: str) -> int:  # a word over 100 characters is one [UNK], as in WordPiece
        return sum(1 if len(w) > 100 else approximate_token_count(w) for w in t.split())

    word = "x" * 300_000
    chunks = chunk_sections(
        [section_of(f"before {word} after")], max_tokens=200, overlap_tokens=0, count_tokens=wordpiece_like
    )
    assert "".join(c.text for c in chunks).replace(" ", "") == f"before{word}after"
    assert all(len(c.text) <= 200 * CHARS_PER_TOKEN + 20 for c in chunks)
    assert len(chunks) >= 300_000 // (200 * CHARS_PER_TOKEN)
