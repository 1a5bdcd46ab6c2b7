"""Story events: decoding, validation, scrubbing and per-record routing, without AWS or a database."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from knowledge.errors import DeadLetterUnavailableError
from knowledge.story_events import processing
from knowledge.story_events.model import InvalidStoryEventError, StoryEvent
from knowledge.story_events.processing import decode, encode, process_record, scrub
from messages import knowledge_pb2

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
MAX = 64 * 1024
SAMPLE = Path(__file__).resolve().parents[2] / "events" / "story_event_sqs.json"


def message(**overrides: Any) -> knowledge_pb2.StoryEvent:
    event = knowledge_pb2.StoryEvent(
        event_id="quests:1042",
        world_id="emberfall",
        kind="quest_completed",
        summary="The Ember Court pardoned the smuggler Ravel.",
        source="quest-service",
    )
    event.occurred_at.FromDatetime(NOW - timedelta(minutes=5))
    event.attributes["quest_id"] = "q-77"
    event.concepts.add(name="Ravel", kind="character", description="A pardoned smuggler.")
    event.concepts.add(name="Ember Court")
    event.relations.add(source="Ravel", target="Ember Court", type="pardoned_by")
    for name, value in overrides.items():
        if name == "clear":
            for field in value:
                event.ClearField(field)
        else:
            setattr(event, name, value)
    return event


def decoded(event: knowledge_pb2.StoryEvent, **attributes: str) -> StoryEvent:
    body, attrs = encode(event)
    return decode(body, {**attrs, **attributes}, max_bytes=MAX, now=NOW)


def reason(body: str, attributes: Mapping[str, str] | None = None, max_bytes: int = MAX) -> str:
    with pytest.raises(InvalidStoryEventError) as caught:
        decode(body, attributes or {}, max_bytes=max_bytes, now=NOW)
    assert caught.value.message
    return caught.value.reason_code


def body_of(event: knowledge_pb2.StoryEvent) -> str:
    return encode(event)[0]


def test_a_published_event_decodes_to_its_value() -> None:
    event = decoded(message())

    assert event.event_id == "quests:1042" and event.world_id == "emberfall"
    assert event.occurred_at == NOW - timedelta(minutes=5)
    assert event.attributes == {"quest_id": "q-77"}
    assert [(c.name, c.kind, c.description) for c in event.concepts] == [
        ("Ravel", "character", "A pardoned smuggler."),
        ("Ember Court", "", ""),
    ]
    assert event.relations[0].type == "pardoned_by" and event.source == "quest-service"


def test_encode_sets_the_attributes_subscribers_filter_on() -> None:
    _, attributes = encode(message())

    assert attributes == {
        "content_type": "application/x-protobuf",
        "message_type": "aigame.knowledge.v1.StoryEvent",
        "world_id": "emberfall",
    }


@pytest.mark.parametrize(
    ("event", "code"),
    [
        (message(event_id=""), "missing_field"),
        (message(summary="   "), "missing_field"),
        (message(clear=["occurred_at"]), "missing_field"),
        (message(event_id="has spaces"), "invalid_field"),
        (message(kind="Quest Completed"), "invalid_field"),
        (message(world_id="Ember Fall"), "invalid_world"),
        (message(summary="x" * 4001), "too_large"),
    ],
)
def test_invalid_events_are_poison_with_a_reason(event: knowledge_pb2.StoryEvent, code: str) -> None:
    assert reason(body_of(event)) == code


def test_timestamps_out_of_range_are_invalid() -> None:
    future = message()
    future.occurred_at.FromDatetime(NOW + timedelta(hours=2))
    ancient = message()
    ancient.occurred_at.FromDatetime(datetime(1970, 1, 1, tzinfo=UTC))

    assert reason(body_of(future)) == "invalid_field"
    assert reason(body_of(ancient)) == "invalid_field"


def test_concepts_and_relations_are_checked() -> None:
    twice = message()
    twice.concepts.add(name="ravel")
    unnamed = message()
    unnamed.concepts.add(name="  ")
    stranger = message()
    stranger.relations.add(source="Ravel", target="Queen Ysolde", type="ally_of")
    bad_type = message()
    bad_type.relations.add(source="Ravel", target="Ember Court", type="Ally Of")

    assert reason(body_of(twice)) == "invalid_concept"
    assert reason(body_of(unnamed)) == "invalid_concept"
    assert reason(body_of(stranger)) == "invalid_relation"
    assert reason(body_of(bad_type)) == "invalid_relation"


def test_undecodable_bodies_are_poison() -> None:
    assert reason("not base64 at all!") == "undecodable"
    assert reason(base64.b64encode(b"\xff\xff\xff\xff").decode()) == "undecodable"
    # An empty protobuf decodes, to an event with nothing in it.
    assert reason("") == "missing_field"


def test_other_message_types_are_poison() -> None:
    body, _ = encode(message())
    other = {"message_type": "aigame.knowledge.v1.DocumentIngested"}

    assert reason(body, other) == "wrong_message_type"
    assert reason(body, {"content_type": "application/json"}) == "wrong_message_type"


def test_size_is_checked_before_and_after_decoding() -> None:
    big = message()
    big.attributes["blob"] = "x" * 1000
    body = body_of(big)

    assert reason(body, max_bytes=500) == "too_large"
    assert reason("A" * 10_000, max_bytes=500) == "too_large"


def test_scrub_replaces_personal_data_in_every_free_text() -> None:
    event = message(summary="Ravel wrote to ravel@example.com from 203.0.113.9.")
    event.attributes["contact"] = "call +44 20 7946 0958"
    event.concepts[0].description = "Smuggler; card 4111 1111 1111 1111."
    event.relations[0].description = "Pardon sent to court@example.org"

    scrubbed, counts = scrub(decoded(event))

    assert scrubbed.summary == "Ravel wrote to [EMAIL] from [IP]."
    assert scrubbed.attributes["contact"] == "call [PHONE]"
    assert scrubbed.concepts[0].description == "Smuggler; card [CARD]."
    assert scrubbed.relations[0].description == "Pardon sent to [EMAIL]"
    assert scrubbed.concepts[0].name == "Ravel"
    assert counts == {"EMAIL": 2, "IP": 1, "PHONE": 1, "CARD": 1}


class FakeDeadLetters:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []
        self.fail = fail

    def send(self, body: str, attributes: Mapping[str, str]) -> str:
        if self.fail:
            raise DeadLetterUnavailableError("queue unavailable")
        self.sent.append((body, dict(attributes)))
        return "dlq-1"


def record(body: str, attributes: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "messageId": "m-1",
        "body": body,
        "messageAttributes": {
            k: {"stringValue": v, "dataType": "String"} for k, v in (attributes or {}).items()
        },
    }


def test_a_valid_record_goes_to_the_store() -> None:
    stored: list[StoryEvent] = []
    dead = FakeDeadLetters()
    body, attributes = encode(message())

    def store(event: StoryEvent) -> dict[str, Any]:
        stored.append(event)
        return {"status": "stored"}

    outcome = process_record(
        record(body, attributes),
        store_event=store,
        dead_letters=dead,
        max_bytes=MAX,
        now=NOW,
    )

    assert outcome == {"status": "stored"} and stored[0].event_id == "quests:1042" and not dead.sent


def test_poison_is_dead_lettered_with_its_reason_and_original_attributes() -> None:
    dead = FakeDeadLetters()
    body, attributes = encode(message(kind="Bad Kind"))

    outcome = process_record(
        record(body, {**attributes, "trace": "t-1"}),
        store_event=lambda e: pytest.fail("poison must not be stored"),
        dead_letters=dead,
        max_bytes=MAX,
        now=NOW,
    )

    assert outcome["status"] == "dead_lettered" and outcome["reason_code"] == "invalid_field"
    ((sent_body, sent_attributes),) = dead.sent
    assert sent_body == body
    assert sent_attributes["reason_code"] == "invalid_field"
    assert "lower_snake_case" in sent_attributes["reason"]
    assert sent_attributes["source_message_id"] == "m-1"
    assert sent_attributes["message_type"] == "aigame.knowledge.v1.StoryEvent"
    assert sent_attributes["trace"] == "t-1"


def test_poison_found_while_storing_is_dead_lettered_with_the_event_id() -> None:
    dead = FakeDeadLetters()

    def unknown_world(event: StoryEvent) -> dict[str, Any]:
        raise InvalidStoryEventError("unknown_world", "world 'emberfall' does not exist")

    outcome = process_record(
        record(*encode(message())), store_event=unknown_world, dead_letters=dead, max_bytes=MAX, now=NOW
    )

    assert outcome["reason_code"] == "unknown_world"
    assert dead.sent[0][1]["event_id"] == "quests:1042"


def test_a_dead_letter_queue_failure_fails_the_record_so_sqs_retries_it() -> None:
    with pytest.raises(DeadLetterUnavailableError):
        process_record(
            record("!!"), store_event=lambda e: {}, dead_letters=FakeDeadLetters(fail=True), max_bytes=MAX
        )


def test_dead_letter_attributes_stay_within_the_sqs_limit() -> None:
    original = {f"a{i}": "v" for i in range(12)}
    error = InvalidStoryEventError("too_large", "x" * 5000)

    attributes = processing.dead_letter_attributes(original, error, "m-1", "e-1")

    assert len(attributes) == 10
    assert attributes["reason_code"] == "too_large" and len(attributes["reason"]) == 1000


def test_a_replayed_outcome_is_marked_duplicate() -> None:
    assert processing.mark_duplicate({"status": "stored", "event_id": "e"}, None) == {
        "status": "duplicate",
        "event_id": "e",
    }


def test_the_sample_sqs_event_holds_a_valid_story_event() -> None:
    (sample,) = json.loads(SAMPLE.read_text())["Records"]

    event = decode(sample["body"], processing.message_attributes(sample), max_bytes=MAX)

    assert event.world_id == "emberfall" and event.concepts
