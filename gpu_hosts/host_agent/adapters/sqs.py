"""The tier's request queue and its dead-letter queue over boto3 SQS, in batches of ten."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from host_agent.errors import QueueError
from host_agent.ports import QueueMessage

_BATCH = 10


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i : i + _BATCH] for i in range(0, len(items), _BATCH)]


class SqsRequestQueue:
    def __init__(self, sqs: Any, queue_url: str, dead_letter_queue_url: str) -> None:
        self._sqs, self._queue_url, self._dlq_url = sqs, queue_url, dead_letter_queue_url

    def receive(self, max_messages: int, wait_s: int, visibility_timeout_s: int) -> list[QueueMessage]:
        try:
            answer = self._sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=max(1, min(max_messages, _BATCH)),
                WaitTimeSeconds=wait_s,
                VisibilityTimeout=visibility_timeout_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
        except (ClientError, BotoCoreError) as exc:
            raise QueueError(f"receive from {self._queue_url}: {exc}") from exc
        messages = []
        for raw in answer.get("Messages", []):
            attributes = raw.get("Attributes", {})
            sent = attributes.get("SentTimestamp")
            messages.append(
                QueueMessage(
                    message_id=raw["MessageId"],
                    receipt_handle=raw["ReceiptHandle"],
                    body=raw.get("Body", ""),
                    receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
                    sent_at=datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None,
                )
            )
        return messages

    def delete(self, receipt_handles: Sequence[str]) -> list[str]:
        return self._batched("delete_message_batch", receipt_handles, {})

    def change_visibility(self, receipt_handles: Sequence[str], timeout_s: int) -> list[str]:
        return self._batched(
            "change_message_visibility_batch", receipt_handles, {"VisibilityTimeout": timeout_s}
        )

    def _batched(self, operation: str, handles: Sequence[str], extra: dict[str, Any]) -> list[str]:
        failed: list[str] = []
        for chunk in _chunks(handles):
            entries = [{"Id": str(i), "ReceiptHandle": h, **extra} for i, h in enumerate(chunk)]
            try:
                answer = getattr(self._sqs, operation)(QueueUrl=self._queue_url, Entries=entries)
            except (ClientError, BotoCoreError):
                failed.extend(chunk)
                continue
            failed.extend(chunk[int(f["Id"])] for f in answer.get("Failed", []))
        return failed

    def dead_letter(self, message: QueueMessage, attributes: Mapping[str, str]) -> None:
        try:
            self._sqs.send_message(
                QueueUrl=self._dlq_url,
                MessageBody=message.body or "(empty body)",
                MessageAttributes={
                    key: {"DataType": "String", "StringValue": value[:1024] or "-"}
                    for key, value in attributes.items()
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise QueueError(f"send to dead-letter queue {self._dlq_url}: {exc}") from exc
