"""The deployed state machine, executed by moto's ASL interpreter with the handlers in-process, on the
embedded PostgreSQL: every outcome of an upload, and every way an upload can go wrong."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.functional.conftest import BAD, SAMPLES, Workflow

COURT = SAMPLES / "emberfall" / "01-the-ember-court.md"
COURT_KEY = "incoming/emberfall/01-the-ember-court.md"


def test_a_new_document_is_stored_with_citations_concepts_and_a_notification(workflow: Workflow) -> None:
    (result,) = workflow.upload(COURT_KEY, COURT.read_bytes())

    assert result["status"] == "ingested"
    assert result["chunks"] > 3
    (doc,) = workflow.rows(
        "SELECT document_id, title, chunk_count, embedding IS NOT NULL FROM narrative_documents"
    )
    assert doc[1] == "The Ember Court" and doc[2] == result["chunks"] and doc[3]
    source = COURT.read_text(encoding="utf-8")
    chunks = workflow.rows(
        "SELECT content, start_offset, end_offset, heading FROM document_chunks ORDER BY ordinal"
    )
    assert len(chunks) == result["chunks"]
    for content, start, end, heading in chunks:
        # Offsets cite the uploaded file: the passage there is the chunk (this sample has no PII).
        assert source[start:end] == content
        assert heading.startswith("The Ember Court")
    concepts = dict(workflow.rows("SELECT name, current_version FROM narrative_concepts"))
    assert concepts["Queen Ysolde Varr"] == 1
    assert workflow.rows("SELECT count(*) FROM concept_versions")[0][0] == len(concepts)
    assert workflow.rows("SELECT count(*) FROM narrative_concepts WHERE embedding IS NULL")[0][0] == 0
    assert workflow.rows("SELECT count(*) FROM concept_relationships")[0][0] > 0
    (message,) = workflow.published()
    assert message.world_id == "emberfall" and message.s3_key == COURT_KEY
    assert message.chunk_count == result["chunks"] and message.embedding_dimension == 384
    assert workflow.rows("SELECT world_id FROM worlds") == [("emberfall",)]


def test_the_same_content_again_is_unchanged_and_writes_nothing(workflow: Workflow) -> None:
    workflow.upload(COURT_KEY, COURT.read_bytes())
    before = workflow.rows("SELECT chunk_id FROM document_chunks ORDER BY chunk_id")
    workflow.published()

    (result,) = workflow.upload(COURT_KEY, COURT.read_bytes())

    assert result["status"] == "unchanged"
    assert result["chunks"] == len(before)
    assert workflow.rows("SELECT chunk_id FROM document_chunks ORDER BY chunk_id") == before
    assert workflow.published() == []


def test_a_changed_document_replaces_its_chunks_and_versions_changed_concepts(workflow: Workflow) -> None:
    workflow.upload(COURT_KEY, COURT.read_bytes())
    old_ids = {r[0] for r in workflow.rows("SELECT chunk_id FROM document_chunks")}
    text = COURT.read_text(encoding="utf-8")
    changed = (
        text.replace("The ruling council of Emberfall", "The exiled former council of Emberfall", 1)
        + "\n## Aftermath\n\nThe Court now meets in secret beneath the Glass Reach.\n"
    )
    assert changed != text

    (result,) = workflow.upload(COURT_KEY, changed.encode())

    assert result["status"] == "ingested"
    (doc,) = workflow.rows("SELECT document_id, version FROM narrative_documents")
    assert doc[1] == 2
    new_ids = {r[0] for r in workflow.rows("SELECT chunk_id FROM document_chunks")}
    assert new_ids and not (new_ids & old_ids)
    assert any(
        "secret beneath the Glass Reach" in r[0] for r in workflow.rows("SELECT content FROM document_chunks")
    )
    versions = workflow.rows(
        "SELECT v.version, v.description FROM concept_versions v JOIN narrative_concepts c USING (concept_id)"
        " WHERE c.name = 'Ember Court' ORDER BY v.version"
    )
    assert [v[0] for v in versions] == [1, 2]
    assert versions[1][1].startswith("The exiled former council")


def test_deleting_the_object_removes_the_document_and_its_chunks(workflow: Workflow) -> None:
    workflow.upload(COURT_KEY, COURT.read_bytes())

    (result,) = workflow.delete(COURT_KEY)

    assert result["status"] == "deleted" and result["chunks"] > 0
    assert workflow.rows("SELECT count(*) FROM narrative_documents")[0][0] == 0
    assert workflow.rows("SELECT count(*) FROM document_chunks")[0][0] == 0
    # No other document declared its concepts and relationships: they go with it (and their text).
    for table in ("narrative_concepts", "concept_versions", "concept_relationships"):
        assert workflow.rows(f"SELECT count(*) FROM {table}")[0][0] == 0, table


def test_the_same_event_delivered_twice_concurrently_yields_one_copy(workflow: Workflow) -> None:
    cloud = workflow.cloud
    with cloud.capture_executions() as started:
        cloud.s3.put_object(Bucket=cloud.bucket, Key=COURT_KEY, Body=COURT.read_bytes())
    event = json.loads(cloud.sfn.describe_execution(executionArn=started[0])["input"])
    duplicates: list[str] = []
    threads = [
        threading.Thread(target=lambda: duplicates.extend(cloud.deliver_event(event))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    outcomes = sorted(workflow.result(arn)["status"] for arn in [*started, *duplicates])

    assert outcomes.count("ingested") == 1 and outcomes.count("unchanged") == 2
    assert workflow.rows("SELECT count(*) FROM narrative_documents")[0][0] == 1
    (chunk_count,) = workflow.rows("SELECT chunk_count FROM narrative_documents")[0]
    assert workflow.rows("SELECT count(*) FROM document_chunks")[0][0] == chunk_count
    assert len(workflow.published()) == 1


BAD_INPUTS = [
    ("empty.md", "empty"),
    ("whitespace-only.txt", "empty"),
    ("binary-in-text.txt", "binary"),
    ("invalid-utf8.md", "invalid_utf8"),
    ("malformed-front-matter.md", "malformed_front_matter"),
    ("unclosed-front-matter.md", "malformed_front_matter"),
    ("relationship-unknown-concept.md", "malformed_front_matter"),
    ("unsupported.docx", "unsupported_type"),
    ("not-a-pdf.pdf", "binary"),
    ("world-mismatch.md", "world_mismatch"),
]


@pytest.mark.parametrize(("name", "reason_code"), BAD_INPUTS)
def test_bad_input_is_quarantined_with_its_reason_and_nothing_is_half_written(
    workflow: Workflow, name: str, reason_code: str
) -> None:
    key = f"incoming/emberfall/{name}"

    (result,) = workflow.upload(key, (BAD / name).read_bytes())

    assert result["status"] == "quarantined"
    assert result["reason_code"] == reason_code, result["reason"]
    assert result["reason"]
    assert workflow.keys("incoming/") == []
    assert workflow.keys("quarantine/") == [f"quarantine/emberfall/{name}"]
    assert workflow.rows("SELECT reason_code, reason FROM quarantined_uploads WHERE s3_key = %s", key) == [
        (reason_code, result["reason"])
    ]
    for table in ("narrative_documents", "document_chunks", "narrative_concepts", "concept_relationships"):
        assert workflow.rows(f"SELECT count(*) FROM {table}")[0][0] == 0, table
    assert (
        workflow.cloud.metric_sum(
            "AiGame/Knowledge", "DocumentsQuarantined", {"service": "knowledge-ingestion"}
        )
        == 1
    )


def test_quarantine_reasons_say_where(workflow: Workflow) -> None:
    (utf8,) = workflow.upload("incoming/emberfall/invalid-utf8.md", (BAD / "invalid-utf8.md").read_bytes())
    (yaml,) = workflow.upload("incoming/emberfall/bad.md", (BAD / "malformed-front-matter.md").read_bytes())

    assert "byte 41" in utf8["reason"]
    assert "line 7" in yaml["reason"]


def test_an_oversized_upload_is_quarantined_without_being_parsed(make_cloud: Any) -> None:
    workflow = make_cloud(environment_overrides={"MAX_DOCUMENT_BYTES": "1024"})

    (result,) = workflow.upload(COURT_KEY, COURT.read_bytes())

    assert result["status"] == "quarantined" and result["reason_code"] == "too_large"
    assert "1024" in result["reason"]


@pytest.mark.parametrize("key", ["incoming/Not A World/x.md", "incoming/orphan.md"])
def test_an_upload_outside_a_world_folder_is_quarantined(workflow: Workflow, key: str) -> None:
    (result,) = workflow.upload(key, COURT.read_bytes())

    assert result["status"] == "quarantined"
    assert result["reason_code"] in {"invalid_key", "invalid_world"}
    assert workflow.rows("SELECT world_id FROM quarantined_uploads") == [(None,)]


def test_a_fixed_upload_after_quarantine_is_ingested(workflow: Workflow) -> None:
    workflow.upload(COURT_KEY, b"")
    (result,) = workflow.upload(COURT_KEY, COURT.read_bytes())

    assert result["status"] == "ingested"
    assert workflow.rows("SELECT count(*) FROM quarantined_uploads")[0][0] == 1


def test_a_database_restart_mid_store_is_retried_without_duplicates(
    workflow: Workflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    from knowledge.adapters.postgres import documents

    original = documents.store_document
    restarts: list[int] = []

    def store_then_restart(conn: Any, doc: Any) -> Any:
        outcome = original(conn, doc)
        if not restarts:
            restarts.append(1)
            workflow.cloud.postgres.restart()  # the transaction is open: its COPY is lost with the server
        return outcome

    monkeypatch.setattr(documents, "store_document", store_then_restart)

    (result,) = workflow.upload(COURT_KEY, COURT.read_bytes())

    assert restarts == [1]
    assert result["status"] == "ingested"
    assert workflow.rows("SELECT count(*) FROM narrative_documents")[0][0] == 1
    assert workflow.rows("SELECT count(*) FROM document_chunks")[0][0] == result["chunks"]
    store_calls = [outcome for name, outcome in workflow.cloud.lambdas.invocations if "StoreDocument" in name]
    assert store_calls == ["error", "ok"]


def test_embedding_throttling_is_retried_by_the_state_machine(
    workflow: Workflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    from knowledge.errors import EmbeddingThrottledError
    from knowledge.ingestion import steps

    original = steps.embed_batch
    throttled: list[int] = []

    def throttled_once(item: Any, **kwargs: Any) -> Any:
        if not throttled:
            throttled.append(1)
            raise EmbeddingThrottledError("ThrottlingException: rate exceeded")
        return original(item, **kwargs)

    monkeypatch.setattr(steps, "embed_batch", throttled_once)

    (result,) = workflow.upload(COURT_KEY, COURT.read_bytes())

    assert result["status"] == "ingested" and throttled == [1]


def test_a_batch_that_fails_for_good_fails_the_run_as_step_functions_does_and_stores_nothing(
    workflow: Workflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    from knowledge.ingestion import steps

    original = steps.embed_batch
    calls: list[int] = []

    def first_batch_fails(item: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("embedding model crashed")
        return original(item, **kwargs)

    monkeypatch.setattr(steps, "embed_batch", first_batch_fails)
    cloud = workflow.cloud
    with cloud.capture_executions() as started:
        cloud.s3.put_object(Bucket=cloud.bucket, Key=COURT_KEY, Body=COURT.read_bytes())
    description = cloud.wait(started[0], timeout_s=300)

    # The Map state fails (no tolerated failures), not StoreDocument after it (moto alone lets the Map succeed).
    assert description["status"] == "FAILED"
    assert description["error"] == "States.ExceedToleratedFailureThreshold"
    store_calls = [outcome for name, outcome in cloud.lambdas.invocations if "StoreDocument" in name]
    assert store_calls == []
    assert workflow.rows("SELECT count(*) FROM narrative_documents")[0][0] == 0
    assert workflow.rows("SELECT count(*) FROM document_chunks")[0][0] == 0


def test_a_large_document_travels_by_reference_and_keeps_states_small(make_cloud: Any) -> None:
    # Payload plumbing only: the hash embedder keeps 700 chunks fast (never used for the demo or benchmarks).
    workflow = make_cloud(embedding_provider="hash")
    section = COURT.read_text(encoding="utf-8").split("---", 2)[2]
    body = ("# Chronicle\n\n" + "\n".join(f"## Year {i}\n\n{section}" for i in range(60))).encode()
    assert len(body) > 256 * 1024

    cloud = workflow.cloud
    with cloud.capture_executions() as started:
        cloud.s3.put_object(Bucket=cloud.bucket, Key="incoming/emberfall/chronicle.md", Body=body)
    result = workflow.result(started[0])

    assert result["status"] == "ingested" and result["chunks"] > 400
    history = cloud.sfn.get_execution_history(executionArn=started[0], maxResults=1000)["events"]
    sizes = [
        len(e[k]["output"])
        for e in history
        for k in e
        if k.endswith("ExitedEventDetails") and "output" in e[k]
    ]
    assert max(sizes) < 64 * 1024
    assert workflow.keys("artifacts/emberfall/")


def test_an_event_that_cannot_start_the_workflow_is_dead_lettered(
    workflow: Workflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("AccessDenied: states:StartExecution")

    monkeypatch.setattr(StepFunctionsParserBackend, "start_execution", refuse)

    assert workflow.upload(COURT_KEY, COURT.read_bytes()) == []

    cloud = workflow.cloud
    queue_url = cloud.sqs.get_queue_url(
        QueueName=cloud.physical_ids["IngestionEventsDeadLetterQueue"].rsplit("/", 1)[-1]
    )["QueueUrl"]
    (message,) = cloud.sqs.receive_message(QueueUrl=queue_url, MessageAttributeNames=["All"])["Messages"]
    assert "AccessDenied" in message["MessageAttributes"]["ERROR_MESSAGE"]["StringValue"]
    assert COURT_KEY in message["Body"]


def test_uploads_keep_their_pii_out_of_the_index(workflow: Workflow) -> None:
    path = SAMPLES / "emberfall" / "02-the-fire-tithe.md"

    (result,) = workflow.upload("incoming/emberfall/02-the-fire-tithe.md", path.read_bytes())

    assert result["status"] == "ingested"
    texts = " ".join(r[0] for r in workflow.rows("SELECT content FROM document_chunks"))
    assert "quartermaster@ember-guild.example" not in texts and "[EMAIL]" in texts
    (redactions,) = workflow.rows("SELECT pii_redactions FROM narrative_documents")[0]
    assert redactions.get("email", 0) >= 1 or redactions.get("EMAIL", 0) >= 1


def test_every_sample_document_ingests(workflow: Workflow, tmp_path: Path) -> None:
    for world in ("emberfall", "tidewatch"):
        for path in sorted((SAMPLES / world).iterdir()):
            (result,) = workflow.upload(f"incoming/{world}/{path.name}", path.read_bytes())
            assert result["status"] == "ingested", (path.name, result)
