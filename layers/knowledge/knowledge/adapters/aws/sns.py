"""SNS topics the knowledge base publishes protobuf notifications to (base64 body: SNS bodies are text)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from knowledge.errors import DocumentStoreError


class SnsPublisher:
    def __init__(self, sns_client: Any, topic_arn: str) -> None:
        self._sns = sns_client
        self._topic_arn = topic_arn

    def publish(self, payload: bytes, *, attributes: Mapping[str, str]) -> str:
        try:
            response = self._sns.publish(
                TopicArn=self._topic_arn,
                Message=base64.b64encode(payload).decode(),
                MessageAttributes={
                    name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise DocumentStoreError(f"publishing to {self._topic_arn}: {exc}") from exc
        return str(response["MessageId"])
