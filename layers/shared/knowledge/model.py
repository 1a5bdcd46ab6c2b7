"""Value objects of the knowledge base, shared by every ingestion step.

Offsets are character offsets into the document's *source text*: the decoded file for Markdown and plain
text (front matter included, so a citation points into the file as uploaded), the extracted text for HTML
and PDF. They survive PII scrubbing, so a citation always points at the original passage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
class Section:
    """A run of body text under one heading path (e.g. "Factions > The Ember Court")."""

    heading: str
    text: str
    start: int  # offset of text[0] in the source text
    end: int  # offset just past text[-1]


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


@dataclass(frozen=True, slots=True)
class Chunk:
    ordinal: int
    heading: str
    text: str
    start: int
    end: int
    token_count: int
