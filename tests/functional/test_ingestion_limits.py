"""AWS's limits on the local runtime: a 20 MB document ingests with every state far below Step Functions'
256 KB, and what would break a limit in AWS fails here the same way (States.DataLimitExceeded, Lambda's
6 MB payloads and its timeout, SQS batch sizes)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local_runtime.event_sources import EventSourceMappingError, check_sqs_batch_size
from local_runtime.lambdas import MAX_REQUEST_BYTES
from tests.functional.conftest import SAMPLES, Workflow

STATE_LIMIT = 256 * 1024
COURT = SAMPLES / "emberfall" / "01-the-ember-court.md"


def _chronicle(target_bytes: int) -> bytes:
    """A long Markdown document: the court's prose under one heading per year, to `target_bytes`."""
    section = COURT.read_text(encoding="utf-8").split("---", 2)[2]
    parts, size, year = ["# Chronicle\n\n"], 0, 0
    while size < target_bytes:
        part = f"## Year {year}\n\n{section}\n"
        parts.append(part)
        size += len(part.encode())
        year += 1
    return "".join(parts).encode()


def _run(workflow: Workflow, key: str, body: bytes) -> dict[str, Any]:
    cloud = workflow.cloud
    with cloud.capture_executions() as started:
        cloud.s3.put_object(Bucket=cloud.bucket, Key=key, Body=body)
    return cloud.wait(started[0], timeout_s=900)


def _state_sizes(workflow: Workflow, execution_arn: str) -> list[int]:
    pages = workflow.cloud.sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
    return [
        len(details[field].encode())
        for page in pages
        for event in page["events"]
        for name, details in event.items()
        if name.endswith("EventDetails") and isinstance(details, dict)
        for field in ("input", "output")
        if isinstance(details.get(field), str)
    ]


@pytest.mark.slow
def test_a_20_mb_document_is_ingested_with_every_state_far_below_the_limit(make_cloud: Any) -> None:
    # Payload plumbing: the hash embedder keeps ~20,000 chunks fast (never used for the demo or benchmarks).
    workflow = make_cloud(embedding_provider="hash")
    body = _chronicle(20 * 1024 * 1024)

    description = _run(workflow, "incoming/emberfall/chronicle.md", body)

    assert description["status"] == "SUCCEEDED", (description.get("error"), description.get("cause"))
    result = json.loads(description["output"])
    assert result["status"] == "ingested" and result["chunks"] > 10_000
    assert workflow.rows("SELECT count(*) FROM document_chunks")[0][0] == result["chunks"]
    # Every state's input and output (the Map's included) stays a few KB, whatever the document's size.
    assert max(_state_sizes(workflow, description["executionArn"])) < 16 * 1024
    (manifest,) = [k for k in workflow.keys("artifacts/emberfall/") if k.endswith("/batches.json")]
    batches = json.loads(
        workflow.cloud.s3.get_object(Bucket=workflow.cloud.bucket, Key=manifest)["Body"].read()
    )
    # The batch list alone would not fit in a state: it travels to the Map through its ItemReader.
    assert len(json.dumps(batches)) > STATE_LIMIT
    assert sum(b["count"] for b in batches if b["kind"] == "chunks") == result["chunks"]


def test_a_state_over_256_kb_fails_with_states_data_limit_exceeded(make_cloud: Any) -> None:
    # Everything inline: the parsed document travels in the state, as it did before payloads went to S3.
    workflow = make_cloud(
        embedding_provider="hash", environment_overrides={"INLINE_PAYLOAD_LIMIT": str(2**30)}
    )

    description = _run(workflow, "incoming/emberfall/chronicle.md", _chronicle(300 * 1024))

    assert description["status"] == "FAILED"
    assert description["error"] == "States.DataLimitExceeded"
    assert "ParseDocument" in description["cause"] or "exceeding the maximum" in description["cause"]


def test_a_map_item_over_256_kb_fails_with_states_data_limit_exceeded(make_cloud: Any) -> None:
    cloud = make_cloud(embedding_provider="hash").cloud
    blob = "x" * (100 * 1024)
    definition = {
        "StartAt": "Fan",
        "States": {
            "Fan": {
                "Type": "Map",
                "ItemsPath": "$.items",
                # Each item is three copies of a 100 KB input: over the limit, though no output is.
                "ItemSelector": {"a.$": "$.blob", "b.$": "$.blob", "c.$": "$.blob"},
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Keep",
                    "States": {"Keep": {"Type": "Pass", "Result": "ok", "End": True}},
                },
                "End": True,
            }
        },
    }
    arn = cloud.sfn.create_state_machine(
        name="item-input-limit",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/local",
    )["stateMachineArn"]

    execution = cloud.sfn.start_execution(stateMachineArn=arn, input=json.dumps({"items": [1], "blob": blob}))
    description = cloud.wait(execution["executionArn"], timeout_s=60)

    assert description["status"] == "FAILED" and description["error"] == "States.DataLimitExceeded"


def test_a_lambda_response_over_6_mb_fails_as_lambda_fails_it(
    make_cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from knowledge.ingestion import steps

    original = steps.validate

    def validate_with_a_huge_result(context: Any, **kwargs: Any) -> Any:
        return {**original(context, **kwargs), "padding": "x" * (7 * 1024 * 1024)}

    monkeypatch.setattr(steps, "validate", validate_with_a_huge_result)
    workflow = make_cloud(embedding_provider="hash")

    description = _run(workflow, "incoming/emberfall/court.md", COURT.read_bytes())

    assert description["status"] == "FAILED"
    assert description["error"] == "Function.ResponseSizeTooLarge"
    assert "6291556 bytes" in description["cause"]


def test_a_handler_past_its_template_timeout_fails_with_sandbox_timedout(
    make_cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from knowledge.ingestion import steps

    workflow = make_cloud(embedding_provider="hash")
    cloud = workflow.cloud
    timeout_s = int(cloud.template.full["Resources"]["ParseDocumentFunction"]["Properties"]["Timeout"])
    now = [0.0]
    cloud.lambdas.clock = lambda: now[0]
    original = steps.parse

    def slow_parse(context: Any, **kwargs: Any) -> Any:
        now[0] += timeout_s + 1  # what a parse of a pathological file would take
        return original(context, **kwargs)

    monkeypatch.setattr(steps, "parse", slow_parse)

    description = _run(workflow, "incoming/emberfall/court.md", COURT.read_bytes())

    assert description["status"] == "FAILED" and description["error"] == "Sandbox.Timedout"
    assert f"Task timed out after {timeout_s}.00 seconds" in description["cause"]
    assert workflow.rows("SELECT count(*) FROM narrative_documents")[0][0] == 0


def test_a_lambda_request_over_6_mb_is_refused(make_cloud: Any) -> None:
    cloud = make_cloud(embedding_provider="hash").cloud
    client = boto3.client("lambda", region_name="us-east-1")
    payload = json.dumps({"upload": {"key": "incoming/emberfall/x.md", "padding": "x" * MAX_REQUEST_BYTES}})

    with pytest.raises(ClientError) as raised:
        client.invoke(FunctionName=cloud.functions["ValidateDocumentFunction"], Payload=payload.encode())

    assert raised.value.response["Error"]["Code"] == "RequestEntityTooLargeException"


@pytest.mark.parametrize(
    ("batch_size", "window_s", "fifo", "accepted"),
    [
        (10, 0, False, True),
        (11, 0, False, False),
        (100, 5, False, True),
        (10_001, 5, False, False),
        (11, 5, True, False),
        (0, 0, False, False),
    ],
)
def test_sqs_mappings_keep_lambdas_batch_size_rules(
    batch_size: int, window_s: int, fifo: bool, accepted: bool
) -> None:
    if accepted:
        check_sqs_batch_size(batch_size, batching_window_s=window_s, fifo=fifo)
    else:
        with pytest.raises(EventSourceMappingError, match=f"BatchSize {batch_size}"):
            check_sqs_batch_size(batch_size, batching_window_s=window_s, fifo=fifo)
