"""Story events: what game services report happened in a world, remembered by the knowledge base.

One SQS record (functions/process_story_events) goes through:

1. `decode`: base64 protobuf `StoryEvent` → `StoryEvent` value, validated. A message that can never be
   stored (undecodable, invalid, too large) raises `InvalidStoryEventError`: it is poison.
2. `store` (run once per event id, by the handler's idempotency wrapper): personal data scrubbed from every
   free text, summary and new concept descriptions embedded, then one transaction writes the event and its
   concept changes (`knowledge.adapters.postgres.story_events`). An unknown world is poison too.
3. Poison is sent to the dead-letter queue with its reason (`DeadLetters`) and counts as processed; any
   other failure propagates, so the record is retried by SQS and redriven to the same queue at the end.

The knowledge evolves with the story: a concept named with a new description gets a new concept_versions
row whose source is the event; a concept the world does not hold yet is created by the event (a character
who first appears in play), at version 1. A change older than the one that last changed the concept
(events arrive out of order) is stored with the event but does not rewind the concept.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from google.protobuf.message import DecodeError

from knowledge import pii
from knowledge.adapters.postgres import story_events as event_store
from knowledge.model import SNAKE_NAME_PATTERN, WORLD_ID, RelationshipSpec
from knowledge.ports import DeadLetters
from knowledge.story_events.model import (
    CONTENT_TYPE,
    EARLIEST,
    FUTURE_TOLERANCE,
    INVALID_CONCEPT,
    INVALID_FIELD,
    INVALID_RELATION,
    INVALID_WORLD,
    MAX_ATTRIBUTE_VALUE_CHARS,
    MAX_ATTRIBUTES,
    MAX_CONCEPTS,
    MAX_DESCRIPTION_CHARS,
    MAX_NAME_CHARS,
    MAX_RELATIONS,
    MAX_SUMMARY_CHARS,
    MESSAGE_TYPE,
    MISSING_FIELD,
    TOO_LARGE,
    UNDECODABLE,
    UNKNOWN_WORLD,
    WRONG_MESSAGE_TYPE,
    ConceptChange,
    InvalidStoryEventError,
    StoryEvent,
)
from messages import knowledge_pb2

if TYPE_CHECKING:
    from knowledge.adapters.postgres.database import Database
    from knowledge.ports import Embedder

_EVENT_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_SNAKE_RE: Final = re.compile(SNAKE_NAME_PATTERN)  # kinds and relation types
_ATTRIBUTE_KEY_RE: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


# --------------------------------------------------------------------------------------------------------
# decoding and validation (pure)
# --------------------------------------------------------------------------------------------------------


def encode(message: knowledge_pb2.StoryEvent) -> tuple[str, dict[str, str]]:
    """The SNS message body and attributes a publisher sends (the inverse of `decode`)."""
    body = base64.b64encode(message.SerializeToString()).decode()
    return body, {"content_type": CONTENT_TYPE, "message_type": MESSAGE_TYPE, "world_id": message.world_id}


def decode(
    body: str, attributes: Mapping[str, str], *, max_bytes: int, now: datetime | None = None
) -> StoryEvent:
    """The event in an SQS message body (raw SNS delivery), validated; InvalidStoryEventError otherwise."""
    message_type = attributes.get("message_type", MESSAGE_TYPE)
    content_type = attributes.get("content_type", CONTENT_TYPE)
    if message_type != MESSAGE_TYPE or content_type != CONTENT_TYPE:
        raise InvalidStoryEventError(
            WRONG_MESSAGE_TYPE,
            f"expected {MESSAGE_TYPE} as {CONTENT_TYPE}, got {message_type} as {content_type}",
        )
    # Checked before decoding, so an oversized body costs no allocation (base64 is 4 characters per 3 bytes).
    if len(body) > (max_bytes + 2) // 3 * 4:
        raise InvalidStoryEventError(TOO_LARGE, f"{len(body)} base64 characters exceed {max_bytes} bytes")
    try:
        raw = base64.b64decode(body.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidStoryEventError(UNDECODABLE, f"body is not base64: {exc}") from exc
    if len(raw) > max_bytes:
        raise InvalidStoryEventError(TOO_LARGE, f"{len(raw)} bytes exceed {max_bytes}")
    try:
        message = knowledge_pb2.StoryEvent.FromString(raw)
    except DecodeError as exc:
        raise InvalidStoryEventError(UNDECODABLE, f"body is not a protobuf StoryEvent: {exc}") from exc
    return validate(message, now=now or datetime.now(UTC))


def validate(message: knowledge_pb2.StoryEvent, *, now: datetime) -> StoryEvent:
    for name in ("event_id", "world_id", "kind", "summary"):
        if not getattr(message, name).strip():
            raise InvalidStoryEventError(MISSING_FIELD, f"{name} is empty")
    if not message.HasField("occurred_at"):
        raise InvalidStoryEventError(MISSING_FIELD, "occurred_at is not set")
    if not _EVENT_ID_RE.match(message.event_id):
        raise InvalidStoryEventError(INVALID_FIELD, "event_id must be 1 to 128 of [A-Za-z0-9._:-]")
    if not WORLD_ID.match(message.world_id):
        raise InvalidStoryEventError(INVALID_WORLD, f"world_id {message.world_id[:80]!r} is not a world id")
    if not _SNAKE_RE.match(message.kind):
        raise InvalidStoryEventError(INVALID_FIELD, f"kind {message.kind[:80]!r} is not lower_snake_case")
    occurred_at = message.occurred_at.ToDatetime(tzinfo=UTC)
    if not EARLIEST <= occurred_at <= now + FUTURE_TOLERANCE:
        raise InvalidStoryEventError(INVALID_FIELD, f"occurred_at {occurred_at.isoformat()} is out of range")
    _check_size("summary", message.summary, MAX_SUMMARY_CHARS)
    _check_size("source", message.source, MAX_NAME_CHARS)
    if len(message.attributes) > MAX_ATTRIBUTES:
        raise InvalidStoryEventError(
            TOO_LARGE, f"{len(message.attributes)} attributes exceed {MAX_ATTRIBUTES}"
        )
    for key, value in message.attributes.items():
        if not _ATTRIBUTE_KEY_RE.match(key):
            raise InvalidStoryEventError(
                INVALID_FIELD, f"attribute key {key[:80]!r} is not 1 to 64 of [A-Za-z0-9_.:-]"
            )
        _check_size(f"attribute {key}", value, MAX_ATTRIBUTE_VALUE_CHARS)
    concepts = _concepts(message.concepts)
    return StoryEvent(
        event_id=message.event_id,
        world_id=message.world_id,
        occurred_at=occurred_at,
        kind=message.kind,
        summary=message.summary.strip(),
        attributes=dict(sorted(message.attributes.items())),
        concepts=concepts,
        relations=_relations(message.relations, {c.name.lower() for c in concepts}),
        source=message.source,
    )


def _check_size(name: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise InvalidStoryEventError(TOO_LARGE, f"{name} has {len(text)} characters, over {limit}")


def _concepts(changes: Sequence[knowledge_pb2.ConceptChange]) -> tuple[ConceptChange, ...]:
    if len(changes) > MAX_CONCEPTS:
        raise InvalidStoryEventError(TOO_LARGE, f"{len(changes)} concepts exceed {MAX_CONCEPTS}")
    seen: set[str] = set()
    concepts = []
    for change in changes:
        name = " ".join(change.name.split())
        if not name or len(name) > MAX_NAME_CHARS:
            raise InvalidStoryEventError(
                INVALID_CONCEPT, f"concept name must be 1 to {MAX_NAME_CHARS} characters"
            )
        if name.lower() in seen:
            raise InvalidStoryEventError(INVALID_CONCEPT, f"concept {name!r} is named twice")
        if change.kind and not _SNAKE_RE.match(change.kind):
            raise InvalidStoryEventError(
                INVALID_CONCEPT, f"concept kind {change.kind[:80]!r} is not lower_snake_case"
            )
        _check_size(f"description of {name}", change.description, MAX_DESCRIPTION_CHARS)
        seen.add(name.lower())
        concepts.append(ConceptChange(name=name, kind=change.kind, description=change.description.strip()))
    return tuple(concepts)


def _relations(
    relations: Sequence[knowledge_pb2.ConceptRelation], named: set[str]
) -> tuple[RelationshipSpec, ...]:
    if len(relations) > MAX_RELATIONS:
        raise InvalidStoryEventError(TOO_LARGE, f"{len(relations)} relations exceed {MAX_RELATIONS}")
    result = []
    for relation in relations:
        source, target = " ".join(relation.source.split()), " ".join(relation.target.split())
        if not _SNAKE_RE.match(relation.type):
            raise InvalidStoryEventError(
                INVALID_RELATION, f"relation type {relation.type[:80]!r} is not lower_snake_case"
            )
        # Both ends must be among the event's concepts, so the transaction can resolve (or create) them.
        for end in (source, target):
            if end.lower() not in named:
                raise InvalidStoryEventError(
                    INVALID_RELATION, f"relation end {end[:80]!r} is not in concepts"
                )
        if source.lower() == target.lower():
            raise InvalidStoryEventError(INVALID_RELATION, f"{source!r} cannot relate to itself")
        _check_size(f"description of {relation.type}", relation.description, MAX_DESCRIPTION_CHARS)
        result.append(RelationshipSpec(source, target, relation.type, relation.description.strip()))
    return tuple(result)


def scrub(event: StoryEvent) -> tuple[StoryEvent, dict[str, int]]:
    """The event with personal data replaced in every free text, and the findings per category.

    Concept names are proper nouns of the world and stay as they are (they key the concepts). An attribute
    whose key names a secret (``password``, ``api_key``) is a password whatever its value looks like.
    """
    totals: dict[str, int] = {}

    def clean(text: str) -> str:
        if not text:
            return text
        result = pii.scrub(text)
        for category, count in result.counts.items():
            totals[category] = totals.get(category, 0) + count
        return result.text

    scrubbed = replace(
        event,
        summary=clean(event.summary),
        source=clean(event.source),
        attributes={
            key: str(pii.scrub_value(value, key=key, totals=totals))
            for key, value in event.attributes.items()
        },
        concepts=tuple(replace(c, description=clean(c.description)) for c in event.concepts),
        relations=tuple(replace(r, description=clean(r.description)) for r in event.relations),
    )
    return scrubbed, totals


# --------------------------------------------------------------------------------------------------------
# storing and dead-lettering
# --------------------------------------------------------------------------------------------------------


def store(event: StoryEvent, *, database: Database, embedder: Embedder) -> dict[str, Any]:
    """Scrub, embed and write one event with its concept changes in one transaction.

    Returns a JSON-ready outcome (the idempotency layer keeps it for duplicates). Safe to repeat: the insert
    is keyed on (world_id, event_id), so a retry after a crash between commit and idempotency record stores nothing new.
    """
    scrubbed, redactions = scrub(event)
    described = [c for c in scrubbed.concepts if c.description]
    vectors = embedder.embed([scrubbed.summary, *(c.description for c in described)])
    payload = {"source": scrubbed.source, "attributes": scrubbed.attributes, "pii_redactions": redactions}
    with database.transaction() as conn:
        written = event_store.insert_event(
            conn,
            scrubbed,
            embedding=vectors[0],
            concept_embeddings={c.name.lower(): v for c, v in zip(described, vectors[1:], strict=True)},
            payload=payload,
        )
    if written.status == event_store.UNKNOWN_WORLD:
        raise InvalidStoryEventError(UNKNOWN_WORLD, f"world {event.world_id!r} does not exist")
    return {
        "status": written.status,
        "event_id": event.event_id,
        "world_id": event.world_id,
        "concept_ids": list(written.concept_ids),
        "concepts_versioned": list(written.versioned),
        "concepts_created": list(written.created),
        "stale_changes": list(written.stale),
        "pii_redactions": redactions,
    }


def mark_duplicate(response: Any, idempotent_data: Any) -> Any:
    """Idempotency response hook: a replayed outcome tells the handler the event was a duplicate."""
    return {**response, "status": event_store.DUPLICATE} if isinstance(response, dict) else response


def message_attributes(record: Mapping[str, Any]) -> dict[str, str]:
    """The string message attributes of a Lambda SQS record."""
    attributes = record.get("messageAttributes") or {}
    return {
        name: str(value["stringValue"])
        for name, value in attributes.items()
        if value.get("stringValue") is not None
    }


def process_record(
    record: Mapping[str, Any],
    *,
    store_event: Callable[[StoryEvent], dict[str, Any]],
    dead_letters: DeadLetters,
    max_bytes: int,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Store the record's event (through `store_event`), or dead-letter it with the reason it is poison."""
    body = str(record.get("body") or "")
    attributes = message_attributes(record)
    event_id = ""
    try:
        event = decode(body, attributes, max_bytes=max_bytes, now=now)
        event_id = event.event_id
        return store_event(event)
    except InvalidStoryEventError as exc:
        dead_letters.send(
            body, dead_letter_attributes(attributes, exc, str(record.get("messageId", "")), event_id)
        )
        return {
            "status": "dead_lettered",
            "event_id": event_id,
            "reason_code": exc.reason_code,
            "reason": exc.message,
        }


def dead_letter_attributes(
    original: Mapping[str, str], error: InvalidStoryEventError, message_id: str, event_id: str
) -> dict[str, str]:
    """Why a message was dead-lettered, beside its original attributes (SQS allows 10 in all)."""
    reasons = {
        "reason_code": error.reason_code,
        "reason": error.message[:1000],
        "source_message_id": message_id,
        "event_id": event_id,
    }
    kept = [(k, v) for k, v in original.items() if k not in reasons and v][: 10 - len(reasons)]
    return {**dict(kept), **{k: v for k, v in reasons.items() if v}}
