"""Value objects of the knowledge base, shared by every ingestion step.

Offsets are character offsets into the document's *source text*: the decoded file for Markdown and plain
text (front matter included, so a citation points into the file as uploaded), the extracted text for HTML
and PDF. They survive PII scrubbing, so a citation always points at the original passage.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

# A world id, as the worlds table's CHECK has it: lowercase letters, digits and hyphens, 1-63 characters.
# The one rule for every place a world id arrives: upload keys, front matter, story events, the API.
WORLD_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9-]{0,62}$"
WORLD_ID: Final = re.compile(WORLD_ID_PATTERN)
# Concept kinds and relationship types, as their tables' CHECKs have them.
SNAKE_NAME_PATTERN: Final = r"^[a-z][a-z0-9_]{0,62}$"


@dataclass(frozen=True, slots=True)
class ConceptSpec:
    """A concept declared in front matter: a character, place, faction, item or idea of a world."""

    name: str
    kind: str = "concept"
    description: str = ""


@dataclass(frozen=True, slots=True)
class RelationshipSpec:
    """A directed, typed edge between two concepts of the same world, declared in front matter."""

    source: str
    target: str
    type: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class Replacement:
    """A span of a text that stands for a span of different length in the original (a PII token).

    `start`/`end` index the rewritten text; `source_start`/`source_end` the original it was made from.
    """

    start: int
    end: int
    source_start: int
    source_end: int


def map_to_source(pos: int, base: int, replacements: Sequence[Replacement]) -> int:
    """Offset in the original of position `pos` of a rewritten text.

    `base` is the original offset of the rewritten text's position 0 and `replacements` are sorted by
    `start`. Outside replacements the texts agree character for character; a position strictly inside a
    replacement maps proportionally into the span it replaced, so the mapping stays monotone and the
    replacement's own bounds map exactly onto the original span's bounds.
    """
    i = bisect_right(replacements, pos, key=lambda r: r.start) - 1
    if i < 0:
        return base + pos
    r = replacements[i]
    if pos >= r.end:
        return r.source_end + (pos - r.end)
    width = r.end - r.start
    return r.source_start + (pos - r.start) * (r.source_end - r.source_start) // width


def _as_replacement(value: object) -> Replacement:
    if isinstance(value, Replacement):
        return value
    if isinstance(value, dict):
        return Replacement(**value)
    if isinstance(value, list | tuple):
        return Replacement(*value)
    raise TypeError(f"not a Replacement: {value!r}")


@dataclass(frozen=True, slots=True)
class Section:
    """A run of body text under one heading path (e.g. "Factions > The Ember Court").

    Parsers produce `text == source_text[start:end]`. After PII scrubbing `text` is the scrubbed text and
    `replacements` (in `text` coordinates, with source offsets) say where it departs from the source, so
    `source_offset` can still cite the original.
    """

    heading: str
    text: str
    start: int  # offset of text[0] in the source text
    end: int  # offset just past text[-1]
    replacements: tuple[Replacement, ...] = ()  # sorted by start; empty when text is the source slice

    def __post_init__(self) -> None:
        # Accept the JSON form (`Section(**dataclasses.asdict(section))` after a round trip through JSON).
        if not (
            isinstance(self.replacements, tuple)
            and all(isinstance(r, Replacement) for r in self.replacements)
        ):
            object.__setattr__(self, "replacements", tuple(_as_replacement(r) for r in self.replacements))

    def source_offset(self, pos: int) -> int:
        """Offset in the source text of position `pos` (0 <= pos <= len(text)) of `text`."""
        return map_to_source(pos, self.start, self.replacements)


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    title: str
    media_type: str
    source_text: str
    sections: tuple[Section, ...]
    world: str | None = None  # from front matter, when given
    concepts: tuple[ConceptSpec, ...] = ()
    relationships: tuple[RelationshipSpec, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None  # from front matter: the world's parent, when the document creates it


@dataclass(frozen=True, slots=True)
class Chunk:
    ordinal: int
    heading: str
    text: str
    start: int
    end: int
    token_count: int

    @property
    def embedding_text(self) -> str:
        return embedding_text(self.heading, self.text)

    @property
    def content_hash(self) -> str:
        """SHA-256 of what is embedded: an unchanged hash (and model) lets a re-upload keep the vector."""
        return content_hash(self.heading, self.text)


def embedding_text(heading: str, text: str) -> str:
    """What is embedded for a chunk: its heading path, then its text (the stored text stays the passage).

    Headings name what a section is about ("Smuggler Routes Under the Flooded District"); embedding them
    with the passage lets a query match the section even when the body never repeats those words.
    """
    return f"{heading}\n\n{text}" if heading else text


def content_hash(heading: str, text: str) -> str:
    return hashlib.sha256(embedding_text(heading, text).encode("utf-8")).hexdigest()
