from __future__ import annotations

import io

import pypdf
import pytest

from knowledge.errors import InvalidDocumentError
from knowledge.ingestion.parsing import PAGE_SEPARATOR, parse_document, validate_upload
from knowledge.model import ConceptSpec, ParsedDocument, RelationshipSpec
from tests.unit.pdf_factory import build_text_pdf


def reason(data: bytes, key: str, *, max_bytes: int = 1 << 20) -> InvalidDocumentError:
    with pytest.raises(InvalidDocumentError) as info:
        parse_document(data, key, max_bytes=max_bytes)
    return info.value


def assert_offsets(doc: ParsedDocument) -> None:
    for section in doc.sections:
        assert doc.source_text[section.start : section.end] == section.text
        assert section.text == section.text.strip() != ""


# --- validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, media_type",
    [
        ("lore/court.md", "text/markdown"),
        ("lore/court.MARKDOWN", "text/markdown"),
        ("notes.txt", "text/plain"),
        ("page.html", "text/html"),
        ("page.HTM", "text/html"),
    ],
)
def test_validate_upload_returns_media_type(key: str, media_type: str) -> None:
    assert validate_upload(b"Some lore.", key, max_bytes=100) == media_type


def test_validate_upload_accepts_pdf_signature() -> None:
    assert validate_upload(build_text_pdf(["x"]), "book.pdf", max_bytes=1 << 20) == "application/pdf"


@pytest.mark.parametrize("key", ["image.png", "archive.tar.gz", "README", "lore.docx"])
def test_unsupported_type(key: str) -> None:
    error = reason(b"text", key)
    assert error.reason_code == "unsupported_type"


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf \n"])
def test_empty(data: bytes) -> None:
    assert reason(data, "a.md").reason_code == "empty"


def test_unicode_whitespace_only_is_empty() -> None:
    assert reason("\u00a0\u3000\n".encode(), "a.txt").reason_code == "empty"


def test_too_large_names_size_and_limit() -> None:
    error = reason(b"x" * 101, "a.md", max_bytes=100)
    assert error.reason_code == "too_large"
    assert "101" in error.message
    assert "100" in error.message


def test_at_the_limit_is_fine() -> None:
    assert validate_upload(b"x" * 100, "a.md", max_bytes=100) == "text/markdown"


@pytest.mark.parametrize(
    "data, key",
    [
        (b"lore\x00more lore", "a.md"),
        (bytes(range(1, 9)) * 10 + b"some text", "a.txt"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "a.html"),
        ("The Ember Court".encode("utf-16"), "a.md"),
        (b"Not a PDF at all", "a.pdf"),
    ],
)
def test_binary(data: bytes, key: str) -> None:
    assert reason(data, key).reason_code == "binary"


def test_a_few_control_characters_are_tolerated() -> None:
    text = "A bell \x07 rings once in a long passage of lore. " * 3
    assert parse_document(text.encode(), "a.txt").sections[0].text == text.strip()


def test_invalid_utf8_names_the_byte_offset() -> None:
    data = "Ember Court — ".encode() + b"caf\xe9 au lait"
    error = reason(data, "a.md")
    assert error.reason_code == "invalid_utf8"
    assert f"invalid UTF-8 at byte {data.index(b'\xe9')}" in error.message


def test_invalid_utf8_offset_counts_the_bom() -> None:
    data = b"\xef\xbb\xbfabc\xff"
    error = reason(data, "a.txt")
    assert "invalid UTF-8 at byte 6" in error.message


def test_truncated_utf8_sequence_at_the_end() -> None:
    data = b"fire " + "🔥".encode()[:2]
    assert "invalid UTF-8 at byte 5" in reason(data, "a.md").message


def test_bom_is_stripped_and_offsets_count_after_it() -> None:
    doc = parse_document(b"\xef\xbb\xbf# Court\nBody text.", "a.md")
    assert doc.source_text == "# Court\nBody text."
    assert doc.title == "Court"
    assert [(s.heading, s.text, s.start) for s in doc.sections] == [("Court", "Body text.", 8)]


# --- Markdown ---------------------------------------------------------------------------------------------

LORE = """\
---
title: The Ember Court
world: ember-realms
concepts:
  - name: Ember Court
    kind: faction
    description: Fire-chosen rulers.
  - Queen Ilsa
relationships:
  - source: Queen Ilsa
    target: Ember Court
    type: rules
    description: since 1201
tags: [lore, faction]
updated: 2024-05-01
---
Intro text before any heading.

# The Ember Court

Founded in year 12.

## History

```python
# not a heading
```
The court fell in 1247.

## Members
### Queen Ilsa ###
She is chosen by fire.

# Empty Heading

# Appendix
Last words.
"""


def test_markdown_front_matter_and_sections() -> None:
    doc = parse_document(LORE.encode(), "worlds/ember/court.md")
    assert doc.media_type == "text/markdown"
    assert doc.source_text == LORE
    assert doc.title == "The Ember Court"
    assert doc.world == "ember-realms"
    assert doc.concepts == (
        ConceptSpec("Ember Court", "faction", "Fire-chosen rulers."),
        ConceptSpec("Queen Ilsa"),
    )
    assert doc.relationships == (RelationshipSpec("Queen Ilsa", "Ember Court", "rules", "since 1201"),)
    assert doc.metadata == {"tags": ["lore", "faction"], "updated": "2024-05-01"}
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("", "Intro text before any heading."),
        ("The Ember Court", "Founded in year 12."),
        ("The Ember Court > History", "```python\n# not a heading\n```\nThe court fell in 1247."),
        ("The Ember Court > Members > Queen Ilsa", "She is chosen by fire."),
        ("Appendix", "Last words."),
    ]
    assert_offsets(doc)
    # Offsets index the file as uploaded, front matter included.
    assert doc.sections[0].start == LORE.index("Intro text")


def test_markdown_title_falls_back_to_first_h1_then_stem() -> None:
    assert parse_document(b"Intro\n## Minor\ntext\n# Major\nbody", "a.md").title == "Major"
    assert parse_document(b"Just text, no heading.", "lore/the-ember-court.md").title == "the-ember-court"
    assert parse_document(b"---\nworld: w\n---\n# Heading\nx", "a.md").title == "Heading"


def test_markdown_crlf_and_headings_with_closing_hashes() -> None:
    source = "# A #\r\n\r\nalpha\r\n## B\r\nbeta\r\n"
    doc = parse_document(source.encode(), "a.md")
    assert [(s.heading, s.text) for s in doc.sections] == [("A", "alpha"), ("A > B", "beta")]
    assert_offsets(doc)


def test_markdown_heading_levels_pop_correctly() -> None:
    source = "# A\n### C\nc\n## B\nb\n# D\nd\n#NotAHeading\n    # indented code, not a heading\n"
    doc = parse_document(source.encode(), "a.md")
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("A > C", "c"),
        ("A > B", "b"),
        ("D", "d\n#NotAHeading\n    # indented code, not a heading"),
    ]


def test_markdown_unclosed_fence_swallows_headings() -> None:
    source = "# A\n~~~~\n# inside\n~~~\n# still inside\n"
    doc = parse_document(source.encode(), "a.md")
    assert [s.heading for s in doc.sections] == ["A"]
    assert doc.sections[0].text == "~~~~\n# inside\n~~~\n# still inside"


def test_markdown_only_headings_is_empty() -> None:
    assert reason(b"# A\n## B\n", "a.md").reason_code == "empty"


def test_markdown_empty_front_matter() -> None:
    doc = parse_document(b"---\n---\nBody", "a.md")
    assert doc.sections[0].text == "Body"
    assert doc.metadata == {}


def test_markdown_front_matter_is_not_a_section() -> None:
    assert reason(b"---\ntitle: T\n---\n", "a.md").reason_code == "empty"


def test_markdown_hr_later_in_the_file_is_not_front_matter() -> None:
    doc = parse_document(b"Intro\n\n---\nmore", "a.md")
    assert doc.sections[0].text == "Intro\n\n---\nmore"
    # Right under a line of text the same '---' underlines a setext heading, still not front matter.
    doc = parse_document(b"Intro\n---\nmore", "a.md")
    assert doc.metadata == {} and [(s.heading, s.text) for s in doc.sections] == [("Intro", "more")]


@pytest.mark.parametrize(
    "front, line, words",
    [
        ("title: [unclosed\n", 3, "flow sequence"),
        ("title: ok\nworld: ember\n  bad: indent\n", 4, "mapping values"),
        ("\tkey: tab\n", 2, "cannot start any token"),
        ("- a\n- b\n", 2, "mapping"),
        ("just a string\n", 2, "mapping"),
        ("title: 1984\n", 2, "'title' must be a non-empty string"),
        ("world: Ember Realms\n", 2, "slug"),
        ("concepts:\n  - kind: faction\n", 3, "concept #1 has no 'name'"),
        ("concepts:\n  - name: A\n  - name: ''\n", 4, "concept #2: 'name' must be a non-empty string"),
        ("concepts:\n  - name: A\n  - A\n", 4, "declared twice (first on line 3)"),
        ("concepts:\n  - name: A\n    descripton: typo\n", 4, "unknown key 'descripton'"),
        ("concepts: Ember Court\n", 2, "'concepts' must be a list"),
        ("concepts: [A]\nrelationships:\n  - {source: A, target: A}\n", 4, "has no 'type'"),
        (
            "concepts: [A, B]\nrelationships:\n  - source: A\n    target: C\n    type: rules\n",
            5,
            "target 'C' is not declared in 'concepts'",
        ),
        ("relationships:\n  - source: A\n    target: B\n    type: rules\n", 3, "source 'A' is not declared"),
        ("relationships:\n  - rules\n", 3, "relationship #1 must be a mapping"),
    ],
)
def test_malformed_front_matter_names_the_line(front: str, line: int, words: str) -> None:
    error = reason(f"---\n{front}---\n# Body\ntext\n".encode(), "a.md")
    assert error.reason_code == "malformed_front_matter"
    assert error.message.startswith(f"line {line}"), error.message
    assert words in error.message, error.message


def test_unclosed_front_matter() -> None:
    error = reason(b"---\ntitle: Court\n# Body\ntext\n", "a.md")
    assert error.reason_code == "malformed_front_matter"
    assert error.message.startswith("line 1")
    assert "never closed" in error.message


def test_front_matter_alias_bomb_is_rejected() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    error = reason(("---\n" + "\n".join(lines) + "\n---\nbody\n").encode(), "a.md")
    assert error.reason_code == "malformed_front_matter"
    assert "too large" in error.message


# --- plain text -------------------------------------------------------------------------------------------


def test_plain_text_is_one_section() -> None:
    source = "\n\nThe Ember Court.\n\nIt fell in 1247.\n  "
    doc = parse_document(source.encode(), "lore/annals.txt")
    assert doc.media_type == "text/plain"
    assert doc.title == "annals"
    assert doc.source_text == source
    assert [(s.heading, s.text) for s in doc.sections] == [("", "The Ember Court.\n\nIt fell in 1247.")]
    assert_offsets(doc)


# --- HTML -------------------------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html><head><title>  The   Ember Court </title>
<style>body { color: red }</style><script>var lore = "<h1>no</h1>";</script></head>
<body>
<nav>Home</nav>
<h1>The Ember Court</h1>
<p>Ruled by   <b>fire</b>-chosen queens &amp; kings.</p>
<p>Line one<br>line two</p>
<h2>History</h2>
<div>Fell in 1247.<div>Rebuilt in 1301.</div></div>
<ul><li>First war</li><li>Second war</li></ul>
<noscript>Enable JavaScript</noscript>
<h3></h3>
<h2>Members</h2>
<pre>  Queen   Ilsa
  Lord Bram</pre>
<table><tr><td>HP</td><td>1200</td></tr></table>
</body></html>"""


def test_html_extraction() -> None:
    doc = parse_document(PAGE.encode(), "court.html")
    assert doc.media_type == "text/html"
    assert doc.title == "The Ember Court"
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("", "Home"),
        ("The Ember Court", "Ruled by fire-chosen queens & kings.\n\nLine one\nline two"),
        ("The Ember Court > History", "Fell in 1247.\n\nRebuilt in 1301.\n\nFirst war\n\nSecond war"),
        ("The Ember Court > Members", "Queen   Ilsa\n  Lord Bram\n\nHP 1200"),
    ]
    assert "color" not in doc.source_text
    assert "var lore" not in doc.source_text
    assert "JavaScript" not in doc.source_text
    # Headings stay in the extracted text; sections index it.
    assert "The Ember Court\n\nRuled by" in doc.source_text
    for section in doc.sections:
        assert doc.source_text[section.start : section.end] == section.text


def test_html_title_falls_back_to_h1_then_stem() -> None:
    assert parse_document(b"<h1>Court</h1><p>x</p>", "a.html").title == "Court"
    assert parse_document(b"<p>x</p>", "lore/page.htm").title == "page"


def test_html_without_visible_text_is_empty() -> None:
    assert reason(b"<html><script>x()</script><style>p{}</style></html>", "a.html").reason_code == "empty"


# --- PDF --------------------------------------------------------------------------------------------------


def test_pdf_pages_become_sections() -> None:
    data = build_text_pdf(
        ["The Ember Court\nruled for (nine) centuries.", "", "In 1247 the court fell."], title="Annals"
    )
    doc = parse_document(data, "lore/annals.pdf")
    assert doc.media_type == "application/pdf"
    assert doc.title == "Annals"
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("Page 1", "The Ember Court\nruled for (nine) centuries."),
        ("Page 3", "In 1247 the court fell."),
    ]
    assert doc.source_text.split(PAGE_SEPARATOR)[2] == "In 1247 the court fell."
    for section in doc.sections:
        assert doc.source_text[section.start : section.end] == section.text


def test_pdf_title_falls_back_to_stem() -> None:
    assert parse_document(build_text_pdf(["x"]), "lore/annals.pdf").title == "annals"


def test_pdf_without_text_is_empty() -> None:
    assert reason(build_text_pdf(["", ""]), "a.pdf").reason_code == "empty"


@pytest.mark.parametrize(
    "data", [b"%PDF-1.4\ngarbage", b"%PDF-1.7\n" + b"x" * 200 + b"\n%%EOF\n", build_text_pdf(["x"])[:150]]
)
def test_corrupt_pdf_is_unreadable(data: bytes) -> None:
    assert reason(data, "a.pdf").reason_code == "unreadable_pdf"


def test_password_protected_pdf_is_unreadable() -> None:
    writer = pypdf.PdfWriter(clone_from=io.BytesIO(build_text_pdf(["secret lore"])))
    writer.encrypt("hunter2", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    error = reason(out.getvalue(), "a.pdf")
    assert error.reason_code == "unreadable_pdf"
    assert "password" in error.message


def test_a_front_matter_world_follows_the_one_world_id_rule() -> None:
    # Ingestion and the API accept only hyphens; an underscore here would be quarantined later anyway.
    with pytest.raises(InvalidDocumentError, match="world"):
        parse_document(b"---\nworld: ember_court\n---\n# Court\nText.\n", "lore/court.md")
    assert (
        parse_document(b"---\nworld: ember-court\n---\n# Court\nText.\n", "lore/court.md").world
        == "ember-court"
    )


def test_setext_headings_are_headings_with_their_levels() -> None:
    text = "Intro text.\n\nBig\nTitle\n=====\n\nBody one.\n\nSub Part\n--------\nBody two.\n\n---\n\nAfter.\n"
    doc = parse_document(text.encode(), "a.md")
    assert doc.title == "Big Title"
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("", "Intro text."),
        ("Big Title", "Body one."),
        ("Big Title > Sub Part", "Body two.\n\n---\n\nAfter."),  # a '---' after a blank line is a break
    ]
    # Inside a fence an underline is code; CRLF files work the same.
    fenced = parse_document(b"```\ncode\n===\n```\nText\r\n====\r\nBody\r\n", "a.md")
    assert [(s.heading, s.text) for s in fenced.sections] == [("", "```\ncode\n===\n```"), ("Text", "Body")]
