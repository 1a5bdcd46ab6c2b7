"""SQS dead-letter queue for messages that can never be processed, sent with the reason as attributes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from knowledge.errors import DeadLetterUnavailableError


class DeadLetterQueue:
    def __init__(self, sqs_client: Any, queue_url: str) -> None:
        self._sqs = sqs_client
        self.queue_url = queue_url

    def send(self, body: str, attributes: Mapping[str, str]) -> str:
        try:
            response = self._sqs.send_message(
                QueueUrl=self.queue_url,
                MessageBody=body or "(empty)",  # SQS refuses an empty body; the reason says it was empty
                MessageAttributes={
                    name: {"DataType": "String", "StringValue": value}
                    for name, value in attributes.items()
                    if value
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise DeadLetterUnavailableError(f"sending to {self.queue_url}: {exc}") from exc
        return str(response["MessageId"])
