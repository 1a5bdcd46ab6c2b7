"""Every text field a document or a story event stores goes through the PII scrubber.

PII of every category is planted in each stored field (title, headings, body, front matter metadata,
concept and relationship descriptions; an event's summary, source, attributes and descriptions); what
the steps hand on to be stored and what the workflow context carries must hold none of it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from knowledge.adapters.aws.payloads import PayloadStore
from knowledge.ingestion import steps
from knowledge.story_events.processing import decode, encode, scrub
from messages import knowledge_pb2


def _jwt() -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return (
        f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'sub': '42', 'name': 'Kael'})}.c2lnbmF0dXJlLWJ5dGVz"
    )


# One value per category, each written the way the issue found it leaking.
PLANTED = {
    "EMAIL": "mira.voss@scriptorium.example",
    "PHONE": "+44 20 7946 0958",
    "CARD": "4111.1111.1111.1111",
    "IBAN": "de89-3704-0044-0532-0130-00",
    "NATIONAL_ID": "123-45-6789",
    "IP": "203.0.113.9",
    "API_KEY": "xoxb-" + "2400000000-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "JWT": _jwt(),
    "PASSWORD": "Tr0ub4dor&3",
    "ADDRESS": "742 Evergreen Terrace, Springfield, IL 62704",
    "DATE_OF_BIRTH": "12 April 1990",
}
KEY_BODY = "MIIEpAIBAAKCAQEA7bq9Xk3vQ1y2Zc8LmN0pRsTuVwXyZ4b5c6d7e8f9g0h1i2j3k4l5m6n7o8p9"
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{KEY_BODY}\n-----END RSA PRIVATE KEY-----"


def planted_text(label: str) -> str:
    """A line of lore carrying every category (the private key goes in block fields)."""
    p = PLANTED
    return (
        f"{label}: write {p['EMAIL']}, call {p['PHONE']}, card {p['CARD']}, IBAN {p['IBAN']}, "
        f"SSN {p['NATIONAL_ID']}, host {p['IP']}, slack {p['API_KEY']}, session {p['JWT']}, "
        f"password={p['PASSWORD']}, lives at {p['ADDRESS']}, born {p['DATE_OF_BIRTH']}"
    )


def leaks(stored: str) -> list[str]:
    values = [*PLANTED.values(), KEY_BODY]
    return [v for v in values if v in stored or v.lower() in stored.lower()]


def planted_front_matter(**metadata: Any) -> dict[str, Any]:
    """Front matter with PII planted in the title, the descriptions and `author`, then `metadata`."""
    return {
        "title": planted_text("Title"),
        "world": "emberfall",
        "concepts": [
            {"name": "Kael Dunmore", "kind": "character", "description": planted_text("Concept")},
            {"name": "Ember Court", "kind": "faction"},
        ],
        "relationships": [
            {
                "source": "Kael Dunmore",
                "target": "Ember Court",
                "type": "serves",
                "description": planted_text("Relationship"),
            }
        ],
        "author": planted_text("Author"),
        **metadata,
    }


def markdown() -> bytes:
    one_line = planted_text("Heading")
    front = planted_front_matter(
        contacts=[{"card": 4111111111111111, "note": planted_text("Nested")}],
        db_password="hunter-two",
        signing_key=PEM,
    )
    body = f"# {one_line}\n\nThe Court met at dusk. {planted_text('Body')}\n\n```\n{PEM}\n```\n"
    return f"---\n{json.dumps(front)}\n---\n{body}".encode()


class FakeObjects:
    """The object store a parse step reads the upload from; artifacts stay inline."""

    bucket = "documents"

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, key: str, **_: Any) -> bytes:
        return self.data


def test_every_stored_field_of_a_document_is_scrubbed() -> None:
    data = markdown()
    objects = FakeObjects(data)
    payloads = PayloadStore(objects, inline_limit=10_000_000)  # type: ignore[arg-type]
    context: dict[str, Any] = {  # what ValidateDocument hands on
        "upload": {"key": "incoming/emberfall/court.md", "event_id": "e-1"},
        "document": {
            "world_id": "emberfall",
            "name": "court.md",
            "content_sha256": hashlib.sha256(data).hexdigest(),
            "size_bytes": len(data),
            "run_id": "r1",
            "outcome": "new",
        },
    }

    parsed_context = steps.parse(
        context,
        objects=objects,  # type: ignore[arg-type]
        payloads=payloads,
        max_document_bytes=1 << 20,
    )
    # The raw title never enters the workflow context (Step Functions keeps every state's input).
    assert leaks(json.dumps(parsed_context["document"])) == []

    scrubbed_context = steps.scrub(parsed_context, payloads=payloads)
    stored = steps.parsed_from_json(payloads.get(scrubbed_context["scrubbed"]))

    fields = {
        "title": stored.title,
        "document title in the context": scrubbed_context["document"]["title"],
        "headings": json.dumps([s.heading for s in stored.sections]),
        "body": json.dumps([s.text for s in stored.sections]),
        "metadata": json.dumps(stored.metadata),
        "concept descriptions": json.dumps([c.description for c in stored.concepts]),
        "relationship descriptions": json.dumps([r.description for r in stored.relationships]),
    }
    for name, text in fields.items():
        assert leaks(text) == [], name
    assert "-----BEGIN" not in json.dumps(fields)
    assert stored.title.startswith("Title: write [EMAIL], call [PHONE], card [CARD], IBAN [IBAN]")
    assert stored.metadata["db_password"] == "[PASSWORD]"
    assert stored.metadata["signing_key"] == "[PRIVATE_KEY]"
    assert stored.metadata["contacts"][0]["card"] == "[CARD]"
    # Names of the world are not personal data: they stay, and still key the relationships.
    assert [c.name for c in stored.concepts] == ["Kael Dunmore", "Ember Court"]
    assert (stored.relationships[0].source, stored.relationships[0].target) == ("Kael Dunmore", "Ember Court")
    counts = scrubbed_context["document"]["pii_redactions"]
    assert set(counts) == {*PLANTED, "PRIVATE_KEY"}
    # Title, heading, body, metadata (author, nested note), concept and relationship: seven planted lines.
    assert counts["EMAIL"] == 7


def _event() -> knowledge_pb2.StoryEvent:
    event = knowledge_pb2.StoryEvent(
        event_id="quests:1042",
        world_id="emberfall",
        kind="quest_completed",
        summary=planted_text("Summary"),
        source=f"quest-service {PLANTED['EMAIL']}",
    )
    event.occurred_at.FromDatetime(datetime.now(UTC) - timedelta(minutes=5))
    event.attributes["note"] = planted_text("Attribute")[:1000]
    event.attributes["api_key"] = "plain-words-still-a-key"
    event.attributes["player_pwd"] = "swordfish"
    event.concepts.add(name="Kael Dunmore", kind="character", description=planted_text("Concept"))
    event.concepts.add(name="Ember Court")
    event.relations.add(
        source="Kael Dunmore", target="Ember Court", type="serves", description=planted_text("Relation")
    )
    return event


def test_every_stored_field_of_a_story_event_is_scrubbed() -> None:
    body, attributes = encode(_event())
    event = decode(body, attributes, max_bytes=64 * 1024)

    scrubbed, counts = scrub(event)

    fields = {
        "summary": scrubbed.summary,
        "source": scrubbed.source,
        "attributes": json.dumps(scrubbed.attributes),
        "concept descriptions": json.dumps([c.description for c in scrubbed.concepts]),
        "relation descriptions": json.dumps([r.description for r in scrubbed.relations]),
    }
    for name, text in fields.items():
        assert leaks(text) == [], name
    assert scrubbed.source == "quest-service [EMAIL]"
    assert scrubbed.attributes["api_key"] == "[PASSWORD]"
    assert scrubbed.attributes["player_pwd"] == "[PASSWORD]"
    assert [c.name for c in scrubbed.concepts] == ["Kael Dunmore", "Ember Court"]
    assert set(counts) == set(PLANTED)


@pytest.mark.parametrize("field", ["summary", "source"])
def test_an_event_without_personal_data_is_stored_as_written(field: str) -> None:
    event = _event()
    setattr(event, field, "Kael Dunmore swore fealty to the Ember Court in 1247, vault code 4421 9983 1207.")
    body, attributes = encode(event)

    scrubbed, _ = scrub(decode(body, attributes, max_bytes=64 * 1024))

    assert getattr(scrubbed, field) == getattr(event, field)
