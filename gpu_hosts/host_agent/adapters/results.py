"""Publishes results to an SNS topic or an SQS queue, whichever ARN the request names, in batches of ten
within the 256 KiB request limit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from host_agent.codec import RESULT_ATTRIBUTES
from host_agent.errors import ResultPublishError
from host_agent.ports import OutgoingResult

_MAX_ENTRIES = 10
_MAX_BATCH_BYTES = 240 * 1024  # under the 256 KiB request limit, leaving room for attributes


def _batches(results: Sequence[OutgoingResult]) -> list[list[OutgoingResult]]:
    batches: list[list[OutgoingResult]] = []
    current: list[OutgoingResult] = []
    size = 0
    for result in results:
        if current and (len(current) == _MAX_ENTRIES or size + len(result.body) > _MAX_BATCH_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(result)
        size += len(result.body)
    if current:
        batches.append(current)
    return batches


class ResultPublisher:
    def __init__(self, sns: Any, sqs: Any) -> None:
        self._sns, self._sqs = sns, sqs
        self._queue_urls: dict[str, str] = {}

    def _queue_url(self, arn: str) -> str:
        if arn not in self._queue_urls:
            parts = arn.split(":")
            if len(parts) != 6:
                raise ResultPublishError(f"not an SQS queue ARN: {arn}")
            try:
                self._queue_urls[arn] = self._sqs.get_queue_url(
                    QueueName=parts[5], QueueOwnerAWSAccountId=parts[4]
                )["QueueUrl"]
            except (ClientError, BotoCoreError) as exc:
                raise ResultPublishError(f"reply queue {arn}: {exc}") from exc
        return self._queue_urls[arn]

    def publish(self, destination: str, results: Sequence[OutgoingResult]) -> list[str]:
        service = destination.split(":")[2] if destination.count(":") >= 5 else ""
        failed: list[str] = []
        for batch in _batches(results):
            try:
                if service == "sns":
                    answer = self._sns.publish_batch(
                        TopicArn=destination,
                        PublishBatchRequestEntries=[
                            {"Id": r.entry_id, "Message": r.body, "MessageAttributes": RESULT_ATTRIBUTES}
                            for r in batch
                        ],
                    )
                elif service == "sqs":
                    answer = self._sqs.send_message_batch(
                        QueueUrl=self._queue_url(destination),
                        Entries=[
                            {"Id": r.entry_id, "MessageBody": r.body, "MessageAttributes": RESULT_ATTRIBUTES}
                            for r in batch
                        ],
                    )
                else:
                    raise ResultPublishError(f"not an SNS topic or SQS queue ARN: {destination!r}")
            except (ClientError, BotoCoreError, ResultPublishError):
                failed.extend(r.entry_id for r in batch)
                continue
            failed.extend(f["Id"] for f in answer.get("Failed", []))
        return failed
