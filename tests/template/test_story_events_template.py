"""The story-events wiring in template.yaml agrees with what the handler and the local runtime expect."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from local_runtime.template import load_sam_template


def _resources() -> dict[str, Any]:
    return dict(load_sam_template()["Resources"])


def test_the_queue_is_fed_by_the_topic_with_raw_delivery_and_redrives_to_the_dlq() -> None:
    resources = _resources()
    subscription = resources["StoryEventsSubscription"]["Properties"]
    queue = resources["StoryEventsQueue"]["Properties"]

    assert subscription["TopicArn"] == {"Ref": "StoryEventsTopic"}
    assert subscription["Endpoint"] == {"Fn::GetAtt": ["StoryEventsQueue", "Arn"]}
    assert subscription["Protocol"] == "sqs" and subscription["RawMessageDelivery"] is True
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["StoryEventsDeadLetterQueue", "Arn"]
    }
    policy = resources["StoryEventsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert policy["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Ref": "StoryEventsTopic"}


def test_the_function_reports_partial_failures_and_knows_its_table_and_dlq() -> None:
    resources = _resources()
    function = resources["ProcessStoryEventsFunction"]["Properties"]
    source = function["Events"]["StoryEvents"]["Properties"]
    variables = function["Environment"]["Variables"]

    assert source["Queue"] == {"Fn::GetAtt": ["StoryEventsQueue", "Arn"]}
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert variables["IDEMPOTENCY_TABLE"] == {"Ref": "StoryEventsIdempotencyTable"}
    assert variables["STORY_EVENTS_DLQ_URL"] == {"Ref": "StoryEventsDeadLetterQueue"}
    assert "VpcConfig" in function
    # A batch still running must not become visible to another poller.
    assert resources["StoryEventsQueue"]["Properties"]["VisibilityTimeout"] >= 6 * function["Timeout"]


def test_the_idempotency_table_matches_the_persistence_layer() -> None:
    table = _resources()["StoryEventsIdempotencyTable"]["Properties"]
    layer = DynamoDBPersistenceLayer(table_name="t", boto3_client=object())

    assert table["KeySchema"] == [{"AttributeName": layer.key_attr, "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": layer.expiry_attr, "Enabled": True}
