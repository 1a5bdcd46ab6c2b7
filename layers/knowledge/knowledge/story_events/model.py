"""Story events: what game services report happened in a world (proto/messages/knowledge.proto).

The value the knowledge base keeps of one event, its limits, and the reason codes a message that can never
be stored is dead-lettered with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from knowledge.errors import KnowledgeError
from knowledge.model import RelationshipSpec

MESSAGE_TYPE: Final = "aigame.knowledge.v1.StoryEvent"
CONTENT_TYPE: Final = "application/x-protobuf"

# Limits keep one event a moment of story, not a document: larger texts belong in an uploaded document.
MAX_SUMMARY_CHARS: Final = 4000
MAX_DESCRIPTION_CHARS: Final = 4000
MAX_ATTRIBUTES: Final = 64
MAX_ATTRIBUTE_VALUE_CHARS: Final = 1024
MAX_CONCEPTS: Final = 32
MAX_RELATIONS: Final = 32
MAX_NAME_CHARS: Final = 200
# Publishers' clocks drift a little; a timestamp further ahead would block later changes of its concepts.
FUTURE_TOLERANCE: Final = timedelta(hours=1)
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)

# Reason codes of poison messages (the DLQ's `reason_code` attribute and the metric's dimension).
UNDECODABLE: Final = "undecodable"
WRONG_MESSAGE_TYPE: Final = "wrong_message_type"
TOO_LARGE: Final = "too_large"
MISSING_FIELD: Final = "missing_field"
INVALID_FIELD: Final = "invalid_field"
INVALID_WORLD: Final = "invalid_world"
UNKNOWN_WORLD: Final = "unknown_world"
INVALID_CONCEPT: Final = "invalid_concept"
INVALID_RELATION: Final = "invalid_relation"


class InvalidStoryEventError(KnowledgeError):
    """The message can never be stored as it is: it goes to the dead-letter queue with this reason."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message


@dataclass(frozen=True, slots=True)
class ConceptChange:
    name: str
    kind: str = ""  # empty: "concept" when the event creates it, the concept's own kind otherwise
    description: str = ""  # empty: the event involves the concept without changing it


@dataclass(frozen=True, slots=True)
class StoryEvent:
    event_id: str
    world_id: str
    occurred_at: datetime
    kind: str
    summary: str
    attributes: dict[str, str] = field(default_factory=dict)
    concepts: tuple[ConceptChange, ...] = ()
    relations: tuple[RelationshipSpec, ...] = ()
    source: str = ""
