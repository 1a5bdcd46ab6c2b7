"""Story events through the deployed wiring: SNS topic → SQS queue → the emulated event source mapping →
the handler in-process → the embedded PostgreSQL, with moto's DynamoDB holding idempotency records."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from knowledge.adapters.postgres import story_events as event_store
from knowledge.errors import DatabaseUnavailableError
from knowledge.story_events import processing
from local_runtime.event_sources import Delivery
from messages import knowledge_pb2
from tests.functional.conftest import Workflow

NOW = datetime.now(UTC).replace(microsecond=0)


def event(
    event_id: str, summary: str = "Ravel returned the stolen ledger to the Court.", **fields: Any
) -> Any:
    message = knowledge_pb2.StoryEvent(
        event_id=event_id, world_id="emberfall", kind="quest_completed", summary=summary, source="quests"
    )
    message.occurred_at.FromDatetime(fields.pop("occurred_at", NOW - timedelta(minutes=10)))
    for name, value in fields.items():
        setattr(message, name, value)
    return message


class StoryEvents:
    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self.cloud = workflow.cloud
        self.topic_arn = self.cloud.physical_ids["StoryEventsTopic"]
        self.dlq_url = self.cloud.physical_ids["StoryEventsDeadLetterQueue"]
        self.queue_url = self.cloud.physical_ids["StoryEventsQueue"]
        with self.cloud.database.transaction() as conn:
            conn.execute("INSERT INTO worlds (world_id, name) VALUES ('emberfall', 'Emberfall')")

    def publish(self, message: Any = None, *, body: str = "", **attributes: str) -> None:
        if message is not None:
            body, encoded = processing.encode(message)
            attributes = {**encoded, **attributes}
        self.cloud.sns.publish(
            TopicArn=self.topic_arn,
            Message=body,
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )

    def drain(self) -> list[Delivery]:
        return self.cloud.event_sources.drain()

    def dead_letters(self) -> list[dict[str, Any]]:
        received = self.cloud.sqs.receive_message(
            QueueUrl=self.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        return [
            {"body": m["Body"], **{k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}}
            for m in received.get("Messages", [])
        ]

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.workflow.rows(sql, *params)

    def metric(self, name: str) -> float:
        return self.cloud.metric_sum("AiGame/Knowledge", name, {"service": "knowledge-story-events"})


@pytest.fixture
def story(make_cloud: Any) -> StoryEvents:
    return StoryEvents(make_cloud(embedding_provider="hash"))


def test_an_event_is_stored_once_scrubbed_and_evolves_its_concepts(story: StoryEvents) -> None:
    with story.cloud.database.transaction() as conn:
        conn.execute(
            "INSERT INTO narrative_concepts (world_id, name, kind, description) VALUES"
            " ('emberfall', 'Queen Ysolde Varr', 'character', 'Ruler of the Ember Court.')"
        )
        conn.execute(
            "INSERT INTO concept_versions (concept_id, version, description, source_s3_key)"
            " SELECT concept_id, 1, description, 'incoming/emberfall/court.md' FROM narrative_concepts"
        )
    pardon = event("quests:1", "Ravel (ravel@example.com) was pardoned by the Queen.")
    pardon.attributes["contact"] = "+44 20 7946 0958"
    pardon.concepts.add(name="queen ysolde varr", description="Ruler of the Ember Court; pardoned Ravel.")
    pardon.concepts.add(name="Ravel", kind="character", description="A pardoned smuggler.")
    pardon.relations.add(source="Ravel", target="Queen Ysolde Varr", type="pardoned_by")

    story.publish(pardon)
    story.publish(pardon)  # a publisher retry: a second SNS message with the same event id
    (delivery,) = story.drain()

    assert delivery.failed_ids == [] and len(delivery.message_ids) == 2
    ((summary, payload, concept_ids, has_embedding),) = story.rows(
        "SELECT summary, payload, concept_ids, embedding IS NOT NULL FROM story_events WHERE event_id = 'quests:1'"
    )
    assert summary == "Ravel ([EMAIL]) was pardoned by the Queen." and has_embedding
    assert payload == {
        "source": "quests",
        "attributes": {"contact": "[PHONE]"},
        "pii_redactions": {"EMAIL": 1, "PHONE": 1},
    }
    versions = story.rows(
        "SELECT c.name, c.kind, v.version, v.description, v.source_event_id, c.current_version"
        " FROM concept_versions v JOIN narrative_concepts c USING (concept_id) ORDER BY c.name, v.version"
    )
    assert versions == [
        ("Queen Ysolde Varr", "character", 1, "Ruler of the Ember Court.", None, 2),
        ("Queen Ysolde Varr", "character", 2, "Ruler of the Ember Court; pardoned Ravel.", "quests:1", 2),
        ("Ravel", "character", 1, "A pardoned smuggler.", "quests:1", 1),
    ]
    ids = dict(story.rows("SELECT name, concept_id FROM narrative_concepts"))
    assert concept_ids == [ids["Queen Ysolde Varr"], ids["Ravel"]]
    assert story.rows("SELECT relation_type FROM concept_relationships") == [("pardoned_by",)]
    everything = str(story.rows("SELECT * FROM story_events")) + str(
        story.rows("SELECT * FROM concept_versions")
    )
    assert "ravel@example.com" not in everything and "7946" not in everything
    assert story.metric("StoryEventsStored") == 1 and story.metric("StoryEventsDuplicate") == 1
    assert story.metric("ConceptVersionsAppended") == 2

    # Past the idempotency record (expired or lost), the database still stores the event once.
    table = story.cloud.physical_ids["StoryEventsIdempotencyTable"]
    client = boto3.client("dynamodb", region_name="us-east-1")
    for item in client.scan(TableName=table)["Items"]:
        client.delete_item(TableName=table, Key={"id": item["id"]})
    story.publish(pardon)
    story.drain()
    assert story.rows("SELECT count(*) FROM story_events")[0][0] == 1
    assert story.rows("SELECT count(*) FROM concept_versions")[0][0] == 3
    assert story.metric("StoryEventsDuplicate") == 2


def test_the_same_event_id_in_two_worlds_is_stored_in_both(story: StoryEvents) -> None:
    with story.cloud.database.transaction() as conn:
        conn.execute("INSERT INTO worlds (world_id, name) VALUES ('tidewatch', 'Tidewatch')")
    ember = event("quests:9", "The Court pardoned Ravel.")
    tide = event("quests:9", "The lighthouse went dark.", world_id="tidewatch")

    story.publish(ember)
    story.publish(tide)
    story.publish(tide)  # a publisher retry in one world is still a duplicate
    (delivery,) = story.drain()

    assert delivery.failed_ids == []
    assert story.rows("SELECT world_id, summary FROM story_events ORDER BY world_id") == [
        ("emberfall", "The Court pardoned Ravel."),
        ("tidewatch", "The lighthouse went dark."),
    ]
    assert story.metric("StoryEventsStored") == 2 and story.metric("StoryEventsDuplicate") == 1


def test_poison_messages_reach_the_dead_letter_queue_with_their_reason(story: StoryEvents) -> None:
    story.publish(body="this is not base64!")
    story.publish(body=base64.b64encode(b"\xff\xff\xff").decode())
    story.publish(event("quests:2", kind="Not Snake"))
    story.publish(event("quests:3", world_id="glass-reach"))
    story.publish(event("quests:4", "x" * 5000))
    story.publish(event("quests:5"), message_type="aigame.knowledge.v1.DocumentIngested")
    story.publish(event("quests:ok"))

    deliveries = story.drain()

    assert all(d.failed_ids == [] and not d.errored for d in deliveries)
    assert story.rows("SELECT event_id FROM story_events") == [("quests:ok",)]
    dead = sorted(story.dead_letters(), key=lambda m: m["reason_code"])
    assert [(m["reason_code"], m.get("event_id")) for m in dead] == [
        ("invalid_field", None),
        ("too_large", None),
        ("undecodable", None),
        ("undecodable", None),
        ("unknown_world", "quests:3"),
        ("wrong_message_type", None),
    ]
    assert all(m["reason"] and m["source_message_id"] for m in dead)
    unknown = next(m for m in dead if m["reason_code"] == "unknown_world")
    assert "glass-reach" in unknown["reason"] and unknown["message_type"] == processing.MESSAGE_TYPE
    assert story.metric("StoryEventsDeadLettered") == 6
    # The dead-lettered event id can be published again once its world exists.
    with story.cloud.database.transaction() as conn:
        conn.execute("INSERT INTO worlds (world_id, name) VALUES ('glass-reach', 'Glass Reach')")
    story.publish(base64_body_of(unknown), **{"message_type": processing.MESSAGE_TYPE})
    story.drain()
    assert story.rows("SELECT world_id FROM story_events WHERE event_id = 'quests:3'") == [("glass-reach",)]


def base64_body_of(dead_letter: dict[str, Any]) -> Any:
    return knowledge_pb2.StoryEvent.FromString(base64.b64decode(dead_letter["body"]))


def test_a_transient_failure_fails_only_its_record_and_is_retried(
    story: StoryEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = event_store.insert_event
    failures: list[str] = []

    def flaky(conn: Any, stored: Any, **kwargs: Any) -> Any:
        if stored.event_id == "quests:flaky" and not failures:
            failures.append(stored.event_id)
            raise DatabaseUnavailableError("server closed the connection unexpectedly")
        if stored.event_id == "quests:broken":
            raise DatabaseUnavailableError("still down")
        return original(conn, stored, **kwargs)

    monkeypatch.setattr(event_store, "insert_event", flaky)
    story.publish(event("quests:first"))
    story.publish(event("quests:flaky"))
    story.publish(event("quests:last"))

    first, retry = story.drain()

    assert len(first.message_ids) == 3 and len(first.failed_ids) == 1
    assert retry.message_ids == first.failed_ids and retry.failed_ids == []
    stored = {r[0] for r in story.rows("SELECT event_id FROM story_events")}
    assert stored == {"quests:first", "quests:flaky", "quests:last"}

    # A record that keeps failing is received maxReceiveCount (5) times, then SQS redrives it to the DLQ,
    # without a reason attribute: the runbook reads the function's logs for those.
    story.publish(event("quests:broken"))
    deliveries = story.drain()
    assert len(deliveries) == 5 and all(d.failed_ids == d.message_ids for d in deliveries)
    ((dead),) = story.dead_letters()
    assert "reason_code" not in dead
    assert base64_body_of(dead).event_id == "quests:broken"
