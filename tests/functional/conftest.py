from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_runtime.cloud import LocalCloud

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
BAD = REPO / "tests" / "data" / "bad"


class Workflow:
    """Drives uploads through the deployed wiring and reads what they left behind."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        queue = cloud.sqs.create_queue(QueueName="document-ingested-test")
        self.queue_url = queue["QueueUrl"]
        queue_arn = cloud.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        cloud.sns.subscribe(
            TopicArn=cloud.topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
        )

    def upload(self, key: str, body: bytes) -> list[dict[str, Any]]:
        with self.cloud.capture_executions() as started:
            self.cloud.s3.put_object(Bucket=self.cloud.bucket, Key=key, Body=body)
        return [self.result(arn) for arn in started]

    def delete(self, key: str) -> list[dict[str, Any]]:
        with self.cloud.capture_executions() as started:
            self.cloud.s3.delete_object(Bucket=self.cloud.bucket, Key=key)
        return [self.result(arn) for arn in started]

    def result(self, arn: str) -> dict[str, Any]:
        description = self.cloud.wait(arn, timeout_s=300)
        assert description["status"] == "SUCCEEDED", (description.get("error"), description.get("cause"))
        return dict(json.loads(description["output"]))

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with self.cloud.database.transaction() as conn:
            return list(conn.execute(sql, params).fetchall())

    def keys(self, prefix: str) -> list[str]:
        listed = self.cloud.s3.list_objects_v2(Bucket=self.cloud.bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def published(self) -> list[Any]:
        from messages import knowledge_pb2

        messages: list[Any] = []
        while True:
            batch = self.cloud.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            if not batch.get("Messages"):
                return messages
            for message in batch["Messages"]:
                messages.append(knowledge_pb2.DocumentIngested.FromString(base64.b64decode(message["Body"])))
                self.cloud.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def make_cloud(kb_home: Path, postgres: Any, database_name: str) -> Iterator[Any]:
    clouds: list[LocalCloud] = []

    def make(**kwargs: Any) -> Workflow:
        options: dict[str, Any] = {"retry_delay_scale": 0, "mirror_s3": False, "database": database_name}
        options.update(kwargs)
        cloud = LocalCloud(kb_home, **options).__enter__()
        clouds.append(cloud)
        return Workflow(cloud)

    yield make
    for cloud in clouds:
        cloud.__exit__(None, None, None)


@pytest.fixture
def workflow(make_cloud: Any) -> Workflow:
    return make_cloud()


# The sample worlds ingested once a session, and a `kb serve` on them (tests/functional/sample_worlds.py).
from tests.functional.sample_worlds import sample_home, served  # noqa: E402

__all__ = ["sample_home", "served"]
