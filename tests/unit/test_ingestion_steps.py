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


# ---------------------------------------------------------------- versions: quarantine and delete
class FakeVersionedObjects:
    """The ObjectStore calls the quarantine and delete steps make, recorded."""

    def __init__(self, *, current: bool = True) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.current = current

    def copy(self, source_key: str, target_key: str, *, version_id: str | None = None) -> bool:
        self.calls.append(("copy", source_key, target_key, version_id))
        return True

    def delete(self, key: str, *, version_id: str | None = None) -> None:
        self.calls.append(("delete", key, version_id))

    def exists(self, key: str) -> bool:
        return self.current


class FakeDatabase:
    def transaction(self) -> Any:
        import contextlib

        return contextlib.nullcontext(object())


BAD_YAML_CAUSE = json.dumps({"errorMessage": "malformed_front_matter: line 7: bad indentation"})


@pytest.fixture
def live_document(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    from knowledge.adapters.postgres import documents

    found: list[Any] = [documents.StoredDocument(document_id=4, content_sha256="a" * 64, chunk_count=9)]
    monkeypatch.setattr(documents, "find_document", lambda conn, world, key: found[0])
    monkeypatch.setattr(documents, "record_quarantine", lambda conn, **kwargs: None)
    return found


@pytest.mark.parametrize(("has_live", "version_id"), [(True, "v2"), (False, "v1")])
def test_quarantine_removes_only_the_failed_version(
    live_document: list[Any], has_live: bool, version_id: str
) -> None:
    if not has_live:
        live_document[0] = None
    objects = FakeVersionedObjects()
    context = {
        "upload": {"key": "incoming/w/a.md", "version_id": version_id, "event_id": "e"},
        "error": {"Error": "InvalidDocumentError", "Cause": BAD_YAML_CAUSE},
    }

    result = steps.quarantine(context, objects=objects, database=FakeDatabase())  # type: ignore[arg-type]

    assert objects.calls == [
        ("copy", "incoming/w/a.md", "quarantine/w/a.md", version_id),
        ("delete", "incoming/w/a.md", version_id),
    ]
    assert result["reason_code"] == "malformed_front_matter"
    assert result["live_document_id"] == (4 if has_live else None)


def test_an_unversioned_upload_over_a_live_document_stays_in_place(live_document: list[Any]) -> None:
    objects = FakeVersionedObjects()
    context = {"upload": {"key": "incoming/w/a.md", "event_id": "e"}, "error": {"Cause": BAD_YAML_CAUSE}}

    steps.quarantine(context, objects=objects, database=FakeDatabase())  # type: ignore[arg-type]

    # Copied, never deleted: a delete would be an Object Deleted event for the live document's key.
    assert objects.calls == [("copy", "incoming/w/a.md", "quarantine/w/a.md", None)]


def test_a_deletion_event_for_a_key_that_still_has_a_version_keeps_the_document() -> None:
    context = {"upload": {"key": "incoming/w/a.md"}}

    result = steps.delete(
        context,
        objects=FakeVersionedObjects(current=True),  # type: ignore[arg-type]
        database=FakeDatabase(),  # type: ignore[arg-type]
    )

    assert result["status"] == "kept" and result["chunks"] == 0


def test_the_object_store_reads_and_removes_exact_versions() -> None:
    import io

    import boto3
    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    from knowledge.adapters.aws.s3 import ObjectStore

    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    store = ObjectStore(client, "docs")
    with Stubber(client) as stub:
        stub.add_response(
            "get_object",
            {"Body": StreamingBody(io.BytesIO(b"lore"), 4), "ContentLength": 4},
            {"Bucket": "docs", "Key": "incoming/w/a.md", "VersionId": "v1"},
        )
        stub.add_response(
            "get_object",
            {"Body": StreamingBody(io.BytesIO(b"x"), 1), "ContentLength": 1},
            {"Bucket": "docs", "Key": "incoming/w/a.md"},
        )
        stub.add_client_error("get_object", "NoSuchVersion", http_status_code=404)
        stub.add_response(
            "delete_object", {}, {"Bucket": "docs", "Key": "incoming/w/a.md", "VersionId": "v1"}
        )
        stub.add_client_error("head_object", "404", http_status_code=404)
        stub.add_client_error("head_object", "403", http_status_code=403)
        stub.add_client_error("copy_object", "NoSuchVersion", http_status_code=404)
        stub.add_client_error("delete_object", "AccessDenied", http_status_code=403)

        assert store.read("incoming/w/a.md", max_bytes=10, version_id="v1") == b"lore"
        # "null" is the version of an object written while versioning was off: the plain key reads it.
        assert store.read("incoming/w/a.md", max_bytes=10, version_id="null") == b"x"
        assert store.read("incoming/w/a.md", max_bytes=10, version_id="gone") is None
        store.delete("incoming/w/a.md", version_id="v1")
        assert store.exists("incoming/w/a.md") is False
        with pytest.raises(DocumentStoreError, match="checking"):
            store.exists("incoming/w/a.md")
        assert store.copy("incoming/w/a.md", "quarantine/w/a.md", version_id="gone") is False
        with pytest.raises(DocumentStoreError, match="deleting"):
            store.delete("incoming/w/a.md")


def test_the_batch_list_and_the_vectors_never_travel_in_the_state() -> None:
    from knowledge.embedding.hashing import HashEmbedder
    from knowledge.ingestion import parsing

    objects = FakeObjects()
    objects.bucket = "docs"  # type: ignore[attr-defined]
    payloads = PayloadStore(objects, inline_limit=8 * 1024)  # type: ignore[arg-type]
    text = "# Chronicle\n\n" + "".join(
        f"## Year {i}\n\nThe tithe was paid in embers.\n\n" for i in range(200)
    )
    parsed = parsing.parse_document(text.encode(), "incoming/w/c.md", max_bytes=10**6)
    document = {"world_id": "w", "content_sha256": "c" * 64, "run_id": "r1"}
    context = {"document": document, "scrubbed": {"inline": steps.parsed_to_json(parsed)}}

    chunked = steps.chunk(
        context,
        payloads=payloads,
        count_tokens=lambda t: len(t.split()),
        max_tokens=40,
        overlap_tokens=4,
        batch_size=2,
    )

    manifest_key = chunked["chunks"]["manifest_key"]
    batches = json.loads(objects.stored[manifest_key])
    assert chunked["chunks"]["batch_count"] == len(batches) > 50
    assert len(json.dumps(chunked["chunks"])) < 300  # the same few fields for any document
    embedder = HashEmbedder(8)
    results = [
        steps.embed_batch({"document": document, "batch": b}, payloads=payloads, embedder=embedder)
        for b in batches
    ]
    assert results == [{"index": b["index"]} for b in batches]
    # Each batch's vectors are where StoreDocument looks for them, named by the batch.
    first = json.loads(objects.stored["artifacts/w/" + "c" * 64 + "/r1/vectors-chunks-00000.json"])
    assert len(first["vectors"]) == batches[0]["count"]
