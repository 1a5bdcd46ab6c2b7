"""Uploads are versions of a key in the versioned documents bucket: a failed new version is quarantined
while the live one stays stored and searchable, and only a user's delete removes a document."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.functional.conftest import SAMPLES, Workflow

TITHE = SAMPLES / "emberfall" / "02-the-fire-tithe.md"
TITHE_KEY = "incoming/emberfall/02-the-fire-tithe.md"


@pytest.fixture
def emberfall(make_cloud: Any) -> Workflow:
    # The hash embedder: these tests are about which rows and objects survive, not about ranking.
    workflow: Workflow = make_cloud(embedding_provider="hash")
    for path in sorted((SAMPLES / "emberfall").iterdir()):
        (result,) = workflow.upload(f"incoming/emberfall/{path.name}", path.read_bytes())
        assert result["status"] == "ingested", (path.name, result)
    return workflow


def _broken_front_matter(text: str) -> bytes:
    # One description indented a space too far, as a hurried edit would: YAML refuses the front matter.
    broken = text.replace(
        "    description: The levy of living embers", "     description: The levy of living embers", 1
    )
    assert broken != text
    return broken.encode()


def _upload_and_settle(workflow: Workflow, key: str, body: bytes) -> list[dict[str, Any]]:
    """Upload, then wait for its execution and every one the events of its run started (a quarantine's
    Object Deleted) before anything is checked."""
    cloud = workflow.cloud
    results: list[dict[str, Any]] = []
    with cloud.capture_executions() as started:
        cloud.s3.put_object(Bucket=cloud.bucket, Key=key, Body=body)
        while len(results) < len(started):
            results.append(workflow.result(started[len(results)]))
    return results


def _counts(workflow: Workflow) -> tuple[int, int]:
    (row,) = workflow.rows(
        "SELECT count(*), coalesce(sum(chunk_count), 0) FROM narrative_documents WHERE world_id = 'emberfall'"
    )
    return int(row[0]), int(row[1])


def _search(workflow: Workflow, query: str) -> list[str]:
    reply = workflow.cloud.api_request("POST", "/search", {"query": query, "world_id": "emberfall", "k": 5})
    assert reply["statusCode"] == 200, reply
    return [hit["citation"]["document_key"] for hit in json.loads(reply["body"])["hits"]]


def test_a_broken_new_version_is_quarantined_and_the_live_version_stays_searchable(
    emberfall: Workflow,
) -> None:
    workflow = emberfall
    before = _counts(workflow)
    chunks_before = workflow.rows(
        "SELECT c.chunk_id FROM document_chunks c JOIN narrative_documents d USING (document_id)"
        " WHERE d.s3_key = %s ORDER BY c.chunk_id",
        TITHE_KEY,
    )
    assert before[0] == 7

    result, deletion = _upload_and_settle(
        workflow, TITHE_KEY, _broken_front_matter(TITHE.read_text(encoding="utf-8"))
    )

    assert result["status"] == "quarantined" and result["reason_code"] == "malformed_front_matter"
    assert "line 7" in result["reason"]
    assert result["live_document_id"] is not None
    # Nothing of the live version was lost: documents, chunks, the key's current object.
    assert _counts(workflow) == before
    assert (
        workflow.rows(
            "SELECT c.chunk_id FROM document_chunks c JOIN narrative_documents d USING (document_id)"
            " WHERE d.s3_key = %s ORDER BY c.chunk_id",
            TITHE_KEY,
        )
        == chunks_before
    )
    cloud = workflow.cloud
    assert cloud.s3.get_object(Bucket=cloud.bucket, Key=TITHE_KEY)["Body"].read() == TITHE.read_bytes()
    assert TITHE_KEY in _search(workflow, "tithe wardens collect embers in brass censers")
    # The broken version waits in quarantine/ with its reason.
    quarantined = cloud.s3.get_object(Bucket=cloud.bucket, Key="quarantine/emberfall/02-the-fire-tithe.md")
    assert b"     description: The levy" in quarantined["Body"].read()
    assert workflow.rows("SELECT reason_code FROM quarantined_uploads WHERE s3_key = %s", TITHE_KEY) == [
        ("malformed_front_matter",)
    ]
    # Its removal from incoming/ was an Object Deleted event: DeleteDocument found the key still there.
    assert deletion["status"] == "kept" and deletion["key"] == TITHE_KEY


def test_a_user_delete_removes_the_document_and_the_version_stays_recoverable(emberfall: Workflow) -> None:
    workflow = emberfall

    (result,) = workflow.delete(TITHE_KEY)

    assert result["status"] == "deleted" and result["chunks"] > 0
    assert _counts(workflow)[0] == 6
    assert "Tithe Censer" not in {r[0] for r in workflow.rows("SELECT name FROM narrative_concepts")}
    cloud = workflow.cloud
    versions = cloud.s3.list_object_versions(Bucket=cloud.bucket, Prefix=TITHE_KEY)
    assert [m["IsLatest"] for m in versions["DeleteMarkers"]] == [True]
    (kept,) = versions["Versions"]
    # Restoring is copying the old version back: an upload like any other.
    with cloud.capture_executions() as started:
        cloud.s3.copy_object(
            Bucket=cloud.bucket,
            Key=TITHE_KEY,
            CopySource={"Bucket": cloud.bucket, "Key": TITHE_KEY, "VersionId": kept["VersionId"]},
        )
    assert workflow.result(started[0])["status"] == "ingested"
    assert _counts(workflow)[0] == 7


def test_a_broken_first_upload_leaves_nothing_in_incoming(make_cloud: Any) -> None:
    workflow: Workflow = make_cloud(embedding_provider="hash")

    result, deletion = _upload_and_settle(
        workflow, TITHE_KEY, _broken_front_matter(TITHE.read_text(encoding="utf-8"))
    )

    assert result["status"] == "quarantined" and result["live_document_id"] is None
    assert deletion["status"] == "absent"
    assert workflow.keys("incoming/") == []
    assert workflow.keys("quarantine/") == ["quarantine/emberfall/02-the-fire-tithe.md"]


def test_the_documents_bucket_is_versioned_and_expires_old_versions(make_cloud: Any) -> None:
    cloud = make_cloud(embedding_provider="hash").cloud

    assert cloud.s3.get_bucket_versioning(Bucket=cloud.bucket)["Status"] == "Enabled"
    rules = {r["ID"]: r for r in cloud.s3.get_bucket_lifecycle_configuration(Bucket=cloud.bucket)["Rules"]}
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    assert rules["expire-workflow-artifacts"]["Expiration"]["Days"] == 2


def test_an_event_without_a_version_id_is_still_ingested(make_cloud: Any) -> None:
    # Events of objects written before the bucket was versioned name no version: the plain key is read.
    workflow: Workflow = make_cloud(embedding_provider="hash")
    cloud = workflow.cloud
    with cloud.capture_executions() as started:
        cloud.s3.put_object(Bucket=cloud.bucket, Key=TITHE_KEY, Body=TITHE.read_bytes())
    assert workflow.result(started[0])["status"] == "ingested"
    event = json.loads(cloud.sfn.describe_execution(executionArn=started[0])["input"])
    del event["detail"]["object"]["version-id"]

    (arn,) = cloud.deliver_event(event)

    assert workflow.result(arn)["status"] == "unchanged"
