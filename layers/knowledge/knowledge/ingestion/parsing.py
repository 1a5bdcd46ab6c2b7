"""Turn an uploaded object into a `ParsedDocument`: validation, decoding, front matter and sections.

Supported types, chosen by the key's extension and confirmed by sniffing the bytes:

* Markdown (``.md``, ``.markdown``): optional YAML front matter, sections at ATX (``# Title``) and setext
  (``Title`` over a line of ``===`` or ``---``) headings.
* Plain text (``.txt``): one section holding the whole text.
* HTML (``.html``, ``.htm``): visible text extracted with the standard library's `html.parser`.
* PDF (``.pdf``): text extracted page by page with pypdf.

Offsets (see `knowledge.model`) index the decoded file for Markdown and plain text, and the extracted text
for HTML and PDF. A UTF-8 byte order mark is accepted and stripped before decoding, so offsets count
characters from just after it; byte offsets in error messages count from the start of the file, BOM
included. Line endings are kept as uploaded. Every section satisfies
``source_text[section.start:section.end] == section.text`` and has non-whitespace text with no leading or
trailing whitespace.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import PurePosixPath
from typing import Any, Final, NamedTuple

import pypdf
import yaml

from knowledge.errors import InvalidDocumentError
from knowledge.model import WORLD_ID, ConceptSpec, ParsedDocument, RelationshipSpec, Section

MARKDOWN: Final = "text/markdown"
PLAIN_TEXT: Final = "text/plain"
HTML: Final = "text/html"
PDF: Final = "application/pdf"

MEDIA_TYPES: Final[Mapping[str, str]] = {
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".txt": PLAIN_TEXT,
    ".html": HTML,
    ".htm": HTML,
    ".pdf": PDF,
}

DEFAULT_MAX_BYTES: Final = 50 * 1024 * 1024
HEADING_SEPARATOR: Final = " > "

_BOM: Final = b"\xef\xbb\xbf"
# C0 controls other than tab, newline, vertical tab, form feed and carriage return, plus DEL.
_CONTROL_BYTES: Final = bytes([*range(0x00, 0x09), *range(0x0E, 0x20), 0x7F])
# Text with more control characters than this is not prose, whatever its extension says.
_MAX_CONTROL_RATIO: Final = 0.05
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


# --- validation -------------------------------------------------------------------------------------------


def validate_upload(data: bytes, key: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Run the cheap checks on an upload and return its media type.

    Raises `InvalidDocumentError` with reason ``too_large``, ``empty``, ``unsupported_type``, ``binary`` or
    ``invalid_utf8`` (the message names the byte offset of the first bad byte). PDFs are only checked for
    their signature here; reading them is `parse_document`'s job.
    """
    media_type, _ = _validate(data, key, max_bytes)
    return media_type


def _validate(data: bytes, key: str, max_bytes: int) -> tuple[str, str | None]:
    """Media type and, for text types, the decoded text (BOM stripped)."""
    if len(data) > max_bytes:
        raise InvalidDocumentError(
            "too_large", f"document is {len(data)} bytes; the limit is {max_bytes} bytes"
        )
    if not data.removeprefix(_BOM).strip():
        raise InvalidDocumentError("empty", "document is empty or only whitespace")
    suffix = PurePosixPath(key).suffix.lower()
    media_type = MEDIA_TYPES.get(suffix)
    if media_type is None:
        supported = ", ".join(sorted(MEDIA_TYPES))
        raise InvalidDocumentError(
            "unsupported_type",
            f"unsupported file type {suffix or '(no extension)'!r}; supported: {supported}",
        )
    if media_type == PDF:
        if not data.startswith(b"%PDF"):
            raise InvalidDocumentError("binary", "file named .pdf does not start with the %PDF signature")
        return media_type, None

    nul = data.find(b"\x00")
    if nul >= 0:
        raise InvalidDocumentError("binary", f"NUL byte at byte {nul}: content is binary, not text")
    controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
    if controls > _MAX_CONTROL_RATIO * len(data):
        raise InvalidDocumentError(
            "binary", f"{controls} of {len(data)} bytes are control characters: content is binary, not text"
        )
    bom = len(_BOM) if data.startswith(_BOM) else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidDocumentError(
            "invalid_utf8", f"invalid UTF-8 at byte {exc.start + bom} ({exc.reason})"
        ) from None
    if not text.strip():
        raise InvalidDocumentError("empty", "document is only whitespace")
    return media_type, text


# --- entry point ------------------------------------------------------------------------------------------


def parse_document(data: bytes, key: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ParsedDocument:
    """Validate and parse an uploaded object; `key` is its object key (the extension picks the parser).

    Raises `InvalidDocumentError` for anything `validate_upload` rejects, and with reason
    ``malformed_front_matter`` (Markdown), ``unreadable_pdf`` (encrypted or corrupt PDF) or ``empty``
    (nothing to index once parsed).
    """
    media_type, text = _validate(data, key, max_bytes)
    stem = PurePosixPath(key).stem
    if media_type == PDF:
        document = _parse_pdf(data, stem)
    else:
        assert text is not None  # text types are always decoded by _validate
        if media_type == MARKDOWN:
            document = _parse_markdown(text, stem)
        elif media_type == HTML:
            document = _parse_html(text, stem)
        else:
            document = _parse_plain_text(text, stem)
    if not document.sections:
        raise InvalidDocumentError("empty", "document has no text to index")
    return document


# --- shared helpers ---------------------------------------------------------------------------------------


def _section(source: str, heading: str, start: int, end: int) -> Section | None:
    """The section of `source[start:end]` with surrounding whitespace trimmed, or None when blank."""
    while start < end and source[start].isspace():
        start += 1
    while end > start and source[end - 1].isspace():
        end -= 1
    if start == end:
        return None
    return Section(heading, source[start:end], start, end)


class _Line(NamedTuple):  # a tuple: millions of lines are made in a large file
    number: int  # 1-based
    start: int  # offset of the first character
    end: int  # offset just past the content, before the line break
    next: int  # offset of the next line


def _lines(text: str, start: int = 0, first_number: int = 1) -> Iterator[_Line]:
    # Only CR, LF and CRLF break lines, as in Markdown (str.splitlines also splits on form feeds etc.).
    number = first_number
    pos = start
    for brk in _LINE_BREAK.finditer(text, start):
        yield _Line(number, pos, brk.start(), brk.end())
        pos = brk.end()
        number += 1
    if pos < len(text):
        yield _Line(number, pos, len(text), len(text))


# --- Markdown ---------------------------------------------------------------------------------------------

_BLOCK_LINE: Final = re.compile(r"(?<![^\r\n]) {0,3}[#`~=-][^\r\n]*")  # a whole line starting so
_ATX_OPENING: Final = re.compile(r" {0,3}(#{1,6})(?=[ \t]|$)")
_SETEXT_UNDERLINE: Final = re.compile(r" {0,3}(=+|-+)[ \t]*")
_FENCE: Final = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_FRONT_MATTER_OPEN: Final = re.compile(r"---[ \t]*")
_FRONT_MATTER_CLOSE: Final = re.compile(r"(?:---|\.\.\.)[ \t]*")


def _parse_markdown(text: str, stem: str) -> ParsedDocument:
    lines = _lines(text)
    first = next(lines, None)
    matter = _FrontMatter()
    body_start = 0
    if first is not None and _FRONT_MATTER_OPEN.fullmatch(text, first.start, first.end):
        close = next((ln for ln in lines if _FRONT_MATTER_CLOSE.fullmatch(text, ln.start, ln.end)), None)
        if close is None:
            raise InvalidDocumentError(
                "malformed_front_matter",
                "line 1: front matter opened with '---' is never closed (no closing '---' line)",
            )
        matter = _load_front_matter(text[first.next : close.start], first_line=2)
        body_start = close.next

    sections, first_h1 = _markdown_sections(text, body_start)
    title = matter.title or first_h1 or stem
    return ParsedDocument(
        title=title,
        media_type=MARKDOWN,
        source_text=text,
        sections=tuple(sections),
        world=matter.world,
        concepts=matter.concepts,
        relationships=matter.relationships,
        metadata=matter.metadata,
        parent=matter.parent,
    )


def _heading_path(path: list[tuple[int, str]]) -> str:
    return HEADING_SEPARATOR.join(title for _, title in path if title)


def _heading_title(rest: str) -> str:
    """Heading text without the optional closing run of '#' (string ops: no regex backtracking)."""
    title = rest.strip(" \t")
    bare = title.rstrip("#")
    if bare != title and (not bare or bare[-1] in " \t"):
        title = bare.rstrip(" \t")
    return title.strip()


def _setext_text_start(text: str, underline_start: int, floor: int) -> int | None:
    """Start of the paragraph a setext underline at `underline_start` makes a heading: the run of
    non-blank lines right above it, not before `floor`. None when the line above is blank (or there is
    none, or it is indented code): the underline is then a thematic break or text."""
    start = underline_start
    while start > floor:
        end = start - 1  # the line break before `start` (the \n of \r\n, or a lone \r)
        if end > floor and text[end] == "\n" and text[end - 1] == "\r":
            end -= 1
        begin = max(text.rfind("\n", floor, end), text.rfind("\r", floor, end)) + 1
        begin = max(begin, floor)
        line = text[begin:end]
        if not line.strip() or line.startswith("    ") or line.startswith("\t"):
            break
        start = begin
    return None if start == underline_start else start


def _markdown_sections(text: str, start: int) -> tuple[list[Section], str | None]:
    sections: list[Section] = []
    path: list[tuple[int, str]] = []  # (level, heading text) from the outermost heading in
    first_h1: str | None = None
    body_start = start
    fence: str | None = None  # the opening fence's marker while inside a fenced code block
    floor = start  # a setext heading's text starts after the last fence or heading line

    def close_section(end: int) -> None:
        section = _section(text, _heading_path(path), body_start, end)
        if section is not None:
            sections.append(section)

    # Only lines that may open or close a fence or be a heading matter; the regex skips prose at C speed.
    for block in _BLOCK_LINE.finditer(text, start):
        line_start, line_end = block.span()
        line_next = line_end + (2 if text.startswith("\r\n", line_end) else 1 if line_end < len(text) else 0)
        if fence is not None:
            closing = _FENCE.fullmatch(text, line_start, line_end)
            # Closed by a run of the same marker at least as long, with no info string.
            if (
                closing
                and closing.group(1)[0] == fence[0]
                and len(closing.group(1)) >= len(fence)
                and not closing.group(2).strip()
            ):
                fence = None
                floor = line_next
            continue
        opening = _FENCE.fullmatch(text, line_start, line_end)
        # A backtick fence's info string cannot contain backticks (CommonMark); such a line is inline code.
        if opening and not (opening.group(1)[0] == "`" and "`" in opening.group(2)):
            fence = opening.group(1)
            continue
        heading = _ATX_OPENING.match(text, line_start, line_end)
        if heading is not None:
            close_section(line_start)
            level = len(heading.group(1))
            title = _heading_title(text[heading.end() : line_end])
        else:
            underline = _SETEXT_UNDERLINE.fullmatch(text, line_start, line_end)
            text_start = _setext_text_start(text, line_start, max(floor, body_start)) if underline else None
            if underline is None or text_start is None:
                continue
            close_section(text_start)
            level = 1 if underline.group(1)[0] == "=" else 2
            title = " ".join(text[text_start:line_start].split())
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))
        if level == 1 and first_h1 is None and title:
            first_h1 = title
        body_start = line_next
    close_section(len(text))
    return sections, first_h1


def _load_front_matter(source: str, *, first_line: int) -> _FrontMatter:
    """Parse and validate front matter; errors name lines of the file (the YAML starts on `first_line`)."""
    loader = yaml.SafeLoader(source)
    try:
        node = loader.get_single_node()
        value = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + first_line}, column {mark.column + 1}" if mark else f"line {first_line}"
        what = "; ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise InvalidDocumentError("malformed_front_matter", f"{where}: {what}") from None
    except yaml.YAMLError as exc:
        raise InvalidDocumentError("malformed_front_matter", f"line {first_line}: {exc}") from None
    finally:
        loader.dispose()
    if node is None or value is None:
        return _FrontMatter()
    if not isinstance(value, dict):
        raise InvalidDocumentError(
            "malformed_front_matter",
            f"line {first_line}: front matter must be a mapping of keys to values, not a {_yaml_type(value)}",
        )
    return _FrontMatterReader(value, node, first_line).read()


@dataclass(frozen=True, slots=True)
class _FrontMatter:
    title: str | None = None
    world: str | None = None
    concepts: tuple[ConceptSpec, ...] = ()
    relationships: tuple[RelationshipSpec, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None


_RESERVED_KEYS: Final = frozenset({"title", "world", "parent", "concepts", "relationships"})
# Bounds on metadata so YAML aliases cannot blow up into an exponential or recursive structure.
_MAX_METADATA_VALUES: Final = 10_000
_MAX_METADATA_DEPTH: Final = 32


class _FrontMatterReader:
    """Validates the front matter mapping into typed values.

    ``title``, ``world`` and ``parent`` are strings (``world`` and ``parent`` slugs such as ``ember-court``;
    ``parent`` names the world the document's world diverges from, docs/worlds.md). ``concepts`` is a list
    of names or of mappings with ``name`` and optional ``kind`` and ``description``; names are unique.
    ``relationships`` is a list of mappings with ``source``, ``target``, ``type`` and optional
    ``description``. A relationship may only name concepts declared in the same document's ``concepts``:
    an undeclared end is far more often a typo than a reference to another document. Names compare
    case-insensitively after trimming whitespace, as the concept store matches them (so names differing
    only in case are duplicates). Unknown keys inside concepts and relationships are errors, so a typo
    such as ``descripton`` is reported instead of silently dropped. Every other top-level key goes to
    ``metadata``, made JSON-safe (dates become ISO strings).
    """

    def __init__(self, front: dict[Any, Any], root: yaml.Node, first_line: int) -> None:
        self._front = {str(k): v for k, v in front.items()}
        self._root = root
        self._first_line = first_line
        self._budget = _MAX_METADATA_VALUES

    def read(self) -> _FrontMatter:
        title = self._optional_str("title")
        world, parent = self._slug("world"), self._slug("parent")
        concepts = self._concepts()
        relationships = self._relationships({c.name.casefold() for c in concepts})
        metadata = {k: self._json_safe(v, 0, k) for k, v in self._front.items() if k not in _RESERVED_KEYS}
        return _FrontMatter(title, world, concepts, relationships, metadata, parent)

    def _slug(self, key: str) -> str | None:
        value = self._optional_str(key)
        if value is not None and not WORLD_ID.match(value):
            raise self._fail(
                f"'{key}' must be a slug such as 'ember-court' (lowercase letters, digits, '-'), "
                f"not {value!r}",
                key,
            )
        return value

    def _line(self, *path: str | int) -> int:
        """File line of the value at `path` (or of its deepest existing ancestor)."""
        node: yaml.Node = self._root
        for step in path:
            child: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode) and isinstance(step, str):
                child = next((v for k, v in node.value if getattr(k, "value", None) == step), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
                child = node.value[step]
            if child is None:
                break
            node = child
        return int(node.start_mark.line) + self._first_line

    def _fail(self, message: str, *path: str | int) -> InvalidDocumentError:
        return InvalidDocumentError("malformed_front_matter", f"line {self._line(*path)}: {message}")

    def _optional_str(self, key: str) -> str | None:
        value = self._front.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self._fail(f"{key!r} must be a non-empty string (quote it), not {value!r}", key)
        return value.strip()

    def _list(self, key: str) -> list[Any]:
        value = self._front.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._fail(f"{key!r} must be a list, not a {_yaml_type(value)}", key)
        return value

    def _fields(
        self, item: Any, key: str, i: int, required: tuple[str, ...], optional: tuple[str, ...]
    ) -> dict[str, str]:
        what = f"{key[:-1]} #{i + 1}"
        if not isinstance(item, dict):
            raise self._fail(f"{what} must be a mapping, not a {_yaml_type(item)}", key, i)
        unknown = sorted(str(k) for k in item if k not in required + optional)
        if unknown:
            allowed = ", ".join(required + optional)
            raise self._fail(
                f"{what} has unknown key {unknown[0]!r} (allowed: {allowed})", key, i, unknown[0]
            )
        fields: dict[str, str] = {}
        for name in required + optional:
            value = item.get(name)
            if value is None:
                if name in required:
                    raise self._fail(f"{what} has no {name!r}", key, i)
                continue
            if not isinstance(value, str) or (name in required and not value.strip()):
                raise self._fail(f"{what}: {name!r} must be a non-empty string, not {value!r}", key, i, name)
            fields[name] = value.strip()
        return fields

    def _concepts(self) -> tuple[ConceptSpec, ...]:
        concepts: list[ConceptSpec] = []
        first_index: dict[str, int] = {}
        for i, item in enumerate(self._list("concepts")):
            if isinstance(item, str):
                if not item.strip():
                    raise self._fail(f"concept #{i + 1} has an empty name", "concepts", i)
                spec = ConceptSpec(item.strip())
            else:
                fields = self._fields(item, "concepts", i, ("name",), ("kind", "description"))
                spec = ConceptSpec(
                    fields["name"], fields.get("kind") or "concept", fields.get("description", "")
                )
            folded = spec.name.casefold()
            if folded in first_index:
                first_line = self._line("concepts", first_index[folded])
                raise self._fail(
                    f"concept {spec.name!r} is declared twice (first on line {first_line})", "concepts", i
                )
            first_index[folded] = i
            concepts.append(spec)
        return tuple(concepts)

    def _relationships(self, declared: set[str]) -> tuple[RelationshipSpec, ...]:
        relationships: list[RelationshipSpec] = []
        for i, item in enumerate(self._list("relationships")):
            fields = self._fields(item, "relationships", i, ("source", "target", "type"), ("description",))
            for end in ("source", "target"):
                if fields[end].casefold() not in declared:
                    raise self._fail(
                        f"relationship #{i + 1}: {end} {fields[end]!r} is not declared in 'concepts'",
                        "relationships",
                        i,
                        end,
                    )
            relationships.append(
                RelationshipSpec(
                    fields["source"], fields["target"], fields["type"], fields.get("description", "")
                )
            )
        return tuple(relationships)

    def _json_safe(self, value: Any, depth: int, key: str) -> Any:
        self._budget -= 1
        if self._budget < 0 or depth > _MAX_METADATA_DEPTH:
            raise self._fail(f"{key!r} is too large or too deeply nested", key)
        if isinstance(value, dict):
            return {str(k): self._json_safe(v, depth + 1, key) for k, v in value.items()}
        if isinstance(value, list | tuple | set):
            return [self._json_safe(v, depth + 1, key) for v in value]
        if isinstance(value, dt.date):  # datetime is a date too
            return value.isoformat()
        if isinstance(value, bytes):  # !!binary
            return value.decode("utf-8", "replace")
        return value


def _yaml_type(value: object) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return type(value).__name__


# --- plain text -------------------------------------------------------------------------------------------


def _parse_plain_text(text: str, stem: str) -> ParsedDocument:
    # One section: the chunker already splits at paragraphs, and plain text has no headings to keep apart.
    section = _section(text, "", 0, len(text))
    return ParsedDocument(
        title=stem, media_type=PLAIN_TEXT, source_text=text, sections=(section,) if section else ()
    )


# --- HTML -------------------------------------------------------------------------------------------------

_SKIPPED_TAGS: Final = frozenset(
    {"script", "style", "template", "noscript", "svg", "math", "iframe", "object"}
)
_HEADING_TAGS: Final = {f"h{n}": n for n in range(1, 7)}
_BLOCK_TAGS: Final = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog", "div",
        "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hgroup", "hr", "html",
        "li", "main", "menu", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody",
        "tfoot", "thead", "tr", "ul",
    }
)  # fmt: skip
_SPACES: Final = re.compile(r"\s+")
_INLINE_SPACES: Final = re.compile(r"[^\S\n]+")
_AROUND_NEWLINE: Final = re.compile(r" ?\n ?")


class _TextExtractor(HTMLParser):
    """Collects visible text as blocks: ("p", text) paragraphs and ("h1".."h6", text) headings."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, str]] = []
        self.title: str | None = None
        self._buffer: list[str] = []
        self._skip_depth = 0
        self._pre_depth = 0
        self._heading: str | None = None
        self._in_title = False
        self._title_parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip_depth += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "br":
            self._buffer.append("\n")
        elif tag in _HEADING_TAGS:
            self._flush()
            self._heading = tag
        elif tag in _BLOCK_TAGS:
            self._flush()
            if tag == "pre":
                self._pre_depth += 1
        elif tag in ("td", "th"):
            self._buffer.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "title":
            self._in_title = False
            if self.title is None:
                self.title = _SPACES.sub(" ", "".join(self._title_parts)).strip() or None
        elif tag in _HEADING_TAGS or tag in _BLOCK_TAGS:
            self._flush()
            if tag == "pre":
                self._pre_depth = max(0, self._pre_depth - 1)

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._in_title:
            self._title_parts.append(data)
            return
        self._buffer.append(data if self._pre_depth else _SPACES.sub(" ", data))

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        raw = "".join(self._buffer)
        self._buffer.clear()
        kind = self._heading or "p"
        self._heading = None
        if kind != "p":
            text = _SPACES.sub(" ", raw).strip()
        elif self._pre_depth:
            text = raw.strip("\r\n").rstrip()
        else:
            text = _AROUND_NEWLINE.sub("\n", _INLINE_SPACES.sub(" ", raw)).strip()
        if text:
            self.blocks.append((kind, text))


def _parse_html(markup: str, stem: str) -> ParsedDocument:
    extractor = _TextExtractor()
    extractor.feed(markup)
    extractor.close()

    # Source text: blocks separated by blank lines, headings included so citations read naturally.
    parts: list[str] = []
    spans: list[tuple[str, int, int]] = []  # (heading path, start, end) of each run of paragraphs
    path: list[tuple[int, str]] = []
    first_h1: str | None = None
    pos = 0
    for kind, text in extractor.blocks:
        if parts:
            parts.append("\n\n")
            pos += 2
        level = _HEADING_TAGS.get(kind)
        if level is not None:
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, text))
            if level == 1 and first_h1 is None:
                first_h1 = text
        elif spans and spans[-1][2] == pos - 2 and spans[-1][0] == _heading_path(path):
            spans[-1] = (spans[-1][0], spans[-1][1], pos + len(text))  # the run goes on
        else:
            spans.append((_heading_path(path), pos, pos + len(text)))
        parts.append(text)
        pos += len(text)
    source = "".join(parts)
    sections = tuple(s for h, a, b in spans if (s := _section(source, h, a, b)) is not None)
    return ParsedDocument(
        title=extractor.title or first_h1 or stem, media_type=HTML, source_text=source, sections=sections
    )


# --- PDF --------------------------------------------------------------------------------------------------

PAGE_SEPARATOR: Final = "\n\f\n"


def _parse_pdf(data: bytes, stem: str) -> ParsedDocument:
    # pypdf raises many exception types on damaged input (its own, but also KeyError, ValueError, ...):
    # any failure to read is the document's fault, so all of them quarantine it.
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise InvalidDocumentError("unreadable_pdf", "PDF is encrypted with a password")
        pages = [(page.extract_text() or "").replace("\x00", "") for page in reader.pages]
        metadata_title = reader.metadata.title if reader.metadata else None
    except InvalidDocumentError:
        raise
    except Exception as exc:
        raise InvalidDocumentError(
            "unreadable_pdf", f"PDF cannot be read: {type(exc).__name__}: {exc}"
        ) from None
    if not pages:
        raise InvalidDocumentError("unreadable_pdf", "PDF has no pages")

    source = PAGE_SEPARATOR.join(pages)
    sections: list[Section] = []
    pos = 0
    for number, page in enumerate(pages, start=1):
        section = _section(source, f"Page {number}", pos, pos + len(page))
        if section is not None:
            sections.append(section)
        pos += len(page) + len(PAGE_SEPARATOR)
    if not sections:
        raise InvalidDocumentError("empty", "PDF has no extractable text (scanned images?)")
    title = metadata_title.strip() if isinstance(metadata_title, str) and metadata_title.strip() else stem
    return ParsedDocument(title=title, media_type=PDF, source_text=source, sections=tuple(sections))
