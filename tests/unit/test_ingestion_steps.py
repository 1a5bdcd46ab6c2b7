"""Pure pieces of the ingestion workflow: keys, error translation, payload references, settings, messages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from knowledge.adapters.aws.payloads import PayloadStore
from knowledge.config import Settings
from knowledge.errors import ConfigurationError, DocumentStoreError, InvalidDocumentError
from knowledge.ingestion import notification, steps
from messages import knowledge_pb2


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("incoming/emberfall/court.md", ("emberfall", "court.md")),
        ("incoming/tide-watch/sub/dir/x.txt", ("tide-watch", "sub/dir/x.txt")),
    ],
)
def test_world_and_name_from_key(key: str, expected: tuple[str, str]) -> None:
    assert steps.world_and_name(key) == expected


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("elsewhere/emberfall/a.md", "invalid_key"),
        ("incoming/a.md", "invalid_key"),
        ("incoming/emberfall/", "invalid_key"),
        ("incoming/Ember Fall/a.md", "invalid_world"),
        ("incoming/-x/a.md", "invalid_world"),
    ],
)
def test_keys_outside_a_world_folder_are_invalid(key: str, code: str) -> None:
    with pytest.raises(InvalidDocumentError) as raised:
        steps.world_and_name(key)
    assert raised.value.reason_code == code


def test_failure_reason_reads_the_lambda_error_cause() -> None:
    cause = json.dumps(
        {"errorType": "InvalidDocumentError", "errorMessage": "invalid_utf8: invalid UTF-8 at byte 9"}
    )
    assert steps.failure_reason({"Error": "InvalidDocumentError", "Cause": cause}) == (
        "invalid_utf8",
        "invalid UTF-8 at byte 9",
    )
    assert steps.failure_reason({"Error": "X", "Cause": "not json"}) == ("invalid_document", "not json")
    assert steps.failure_reason({}) == ("invalid_document", "unknown error")


class FakeObjects:
    def __init__(self) -> None:
        self.stored: dict[str, bytes] = {}

    def put(self, key: str, body: bytes, content_type: str = "") -> None:
        self.stored[key] = body

    def get_json(self, key: str) -> Any:
        if key not in self.stored:
            raise DocumentStoreError(key)
        return json.loads(self.stored[key])


def test_small_payloads_stay_inline_and_large_ones_go_by_reference() -> None:
    objects = FakeObjects()
    payloads = PayloadStore(objects, inline_limit=100)  # type: ignore[arg-type]

    small = payloads.put("w/h/small", {"a": 1})
    large = payloads.put("w/h/large", {"text": "x" * 500})

    assert small == {"inline": {"a": 1}}
    assert large["s3_key"] == "artifacts/w/h/large.json" and set(objects.stored) == {
        "artifacts/w/h/large.json"
    }
    assert payloads.get(small) == {"a": 1} and payloads.get(large) == {"text": "x" * 500}
    with pytest.raises(DocumentStoreError):
        payloads.get({"unexpected": True})


def test_settings_are_read_once_from_the_environment() -> None:
    settings = Settings.from_env(
        {"DOCUMENTS_BUCKET": "b", "EMBEDDING_DIMENSION": "512", "EMBED_BATCH_SIZE": ""}
    )
    assert settings.documents_bucket == "b" and settings.embedding_dimension == 512
    assert settings.embed_batch_size == 32 and settings.max_document_bytes == 50 * 1024 * 1024
    with pytest.raises(ConfigurationError, match="EMBEDDING_DIMENSION"):
        Settings.from_env({"EMBEDDING_DIMENSION": "many"})
    with pytest.raises(ConfigurationError, match="db_secret_arn"):
        settings.require("documents_bucket", "db_secret_arn")


def test_document_ingested_message_round_trips() -> None:
    context = {
        "upload": {"key": "incoming/w/a.md", "event_id": "e-1"},
        "document": {
            "world_id": "w",
            "document_id": 7,
            "title": "A",
            "content_sha256": "f" * 64,
            "chunk_count": 3,
            "pii_redactions": {"EMAIL": 2},
            "concepts_changed": ["Ysolde"],
            "replaced_previous_version": True,
        },
    }
    payload = notification.document_ingested(context, embedding_model="m", dimension=384)
    message = knowledge_pb2.DocumentIngested.FromString(payload)
    assert (message.world_id, message.document_id, message.chunk_count) == ("w", 7, 3)
    assert dict(message.pii_redactions) == {"EMAIL": 2} and list(message.concepts_changed) == ["Ysolde"]
    assert message.replaced_previous_version and message.ingested_at.seconds > 0


def test_publishing_failures_become_domain_errors() -> None:
    from botocore.exceptions import EndpointConnectionError

    from knowledge.adapters.aws.sns import SnsPublisher

    class BrokenSns:
        def publish(self, **kwargs: Any) -> Any:
            raise EndpointConnectionError(endpoint_url="https://sns")

    with pytest.raises(DocumentStoreError, match="publishing"):
        SnsPublisher(BrokenSns(), "arn:topic").publish(b"x", attributes=notification.message_attributes("w"))


def test_custom_resource_reports_failure_instead_of_hanging_the_stack() -> None:
    from knowledge.schema.custom_resource import run_custom_resource

    event = {
        "RequestType": "Update",
        "ResponseURL": "https://example.invalid/response",
        "StackId": "s",
        "RequestId": "r",
        "LogicalResourceId": "DatabaseMigration",
        "ResourceProperties": {},
    }
    sent: list[bytes] = []

    def boom(properties: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("database is paused")

    answer = run_custom_resource(event, boom, physical_id="schema", send=lambda url, body: sent.append(body))
    assert answer["Status"] == "FAILED" and "database is paused" in answer["Reason"]
    assert json.loads(sent[0])["PhysicalResourceId"] == "schema"
