"""`kb ingest --target aws --wait` against the stack of template.yaml deployed into moto (LocalCloud): each
upload's own execution of the ingestion state machine is found and followed to its end."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from cli.kb import main
from local_runtime.cloud import REGION, STACK_NAME
from tests.functional.conftest import BAD, SAMPLES, Workflow

COURT = SAMPLES / "emberfall" / "01-the-ember-court.md"
AWS = ["--target", "aws", "--stack-name", STACK_NAME, "--region", REGION, "--wait", "--json"]


def _ingest(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, Any]]]:
    capsys.readouterr()
    status = main(["ingest", *argv, "--world", "emberfall", *AWS])
    return status, json.loads(capsys.readouterr().out)


def test_wait_reports_each_upload_stored_or_quarantined_with_its_reason(
    workflow: Workflow, capsys: pytest.CaptureFixture[str]
) -> None:
    status, results = _ingest(capsys, str(COURT), str(BAD / "invalid-utf8.md"))

    assert status == 0
    assert [(r["key"], r["status"]) for r in results] == [
        ("incoming/emberfall/01-the-ember-court.md", "ingested"),
        ("incoming/emberfall/invalid-utf8.md", "quarantined"),
    ]
    ingested, quarantined = results
    assert ingested["chunks"] > 3 and ingested["reason"] is None
    assert "byte 41" in quarantined["reason"]
    assert workflow.keys("quarantine/") == ["quarantine/emberfall/invalid-utf8.md"]
    # What was printed is what the stack stored, and each result names its own execution.
    assert workflow.rows("SELECT chunk_count FROM narrative_documents") == [(ingested["chunks"],)]
    for result in results:
        description = workflow.cloud.sfn.describe_execution(executionArn=result["execution"])
        assert json.loads(description["input"])["detail"]["object"]["key"] == result["key"]

    status, (again,) = _ingest(capsys, str(COURT))
    assert (status, again["status"]) == (0, "unchanged")
    assert again["execution"] != ingested["execution"]


def test_an_earlier_upload_of_the_same_name_is_not_mistaken_for_this_one(
    workflow: Workflow, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    key = "incoming/emberfall/01-the-ember-court.md"
    (earlier,) = workflow.upload(key, (BAD / "invalid-utf8.md").read_bytes())  # someone else's version
    assert earlier["status"] == "quarantined"

    status, (result,) = _ingest(capsys, str(COURT))

    # Both executions are for the key and recent; only the version S3 gave this upload matches.
    assert (status, result["status"]) == (0, "ingested")
    description = workflow.cloud.sfn.describe_execution(executionArn=result["execution"])
    version = json.loads(description["input"])["detail"]["object"]["version-id"]
    assert version == workflow.cloud.s3.head_object(Bucket=workflow.cloud.bucket, Key=key)["VersionId"]


def test_a_failed_execution_is_reported_with_its_error_and_exit_1(
    make_cloud: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from knowledge.ingestion import steps

    original = steps.validate

    def validate_with_a_huge_result(context: Any, **kwargs: Any) -> Any:
        return {**original(context, **kwargs), "padding": "x" * (7 * 1024 * 1024)}

    monkeypatch.setattr(steps, "validate", validate_with_a_huge_result)
    workflow = make_cloud(embedding_provider="hash")

    status, (result,) = _ingest(capsys, str(COURT))

    assert status == 1
    assert result["status"] == "failed"
    assert result["reason"].startswith("Function.ResponseSizeTooLarge: ")
    assert workflow.rows("SELECT count(*) FROM narrative_documents") == [(0,)]


def test_an_execution_still_running_at_the_timeout_is_reported_and_exits_1(
    make_cloud: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from knowledge.ingestion import steps

    release = threading.Event()
    original = steps.parse

    def held_parse(context: Any, **kwargs: Any) -> Any:
        release.wait(60)  # a parse that is still going when the command gives up
        return original(context, **kwargs)

    monkeypatch.setattr(steps, "parse", held_parse)
    workflow = make_cloud(embedding_provider="hash")

    try:
        status, (result,) = _ingest(capsys, str(COURT), "--timeout", "0")
    finally:
        release.set()

    assert status == 1
    assert result["status"] == "timeout" and "still running after 0 s" in result["reason"]
    # It was this upload's execution, and it goes on to its end without the command.
    assert workflow.cloud.wait(result["execution"], timeout_s=120)["status"] == "SUCCEEDED"


def test_an_upload_whose_execution_never_starts_times_out(
    workflow: Workflow, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rule delivers nothing (disabled, or its target refused): there is no execution to find.
    monkeypatch.setattr(workflow.cloud, "deliver_event", lambda *args, **kwargs: [])

    status, (result,) = _ingest(capsys, str(COURT), "--timeout", "0")

    assert status == 1
    assert (result["status"], result["execution"]) == ("timeout", None)
    assert "no ingestion execution started for the upload" in result["reason"]


def test_an_unknown_stack_fails_with_exit_1(workflow: Workflow, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    argv = ["ingest", str(COURT), "--world", "emberfall", "--target", "aws", "--stack-name", "nope"]
    assert main([*argv, "--region", REGION, "--wait"]) == 1
    assert "cannot read stack 'nope'" in capsys.readouterr().err
