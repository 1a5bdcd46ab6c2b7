"""DocumentIngested notifications: protobuf on SNS (base64 body, since SNS bodies are text)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from knowledge.errors import DocumentStoreError
from messages import knowledge_pb2

MESSAGE_TYPE = "aigame.knowledge.v1.DocumentIngested"


def document_ingested(context: dict[str, Any], *, embedding_model: str, dimension: int) -> bytes:
    document, upload = context["document"], context["upload"]
    message = knowledge_pb2.DocumentIngested(
        world_id=document["world_id"],
        document_id=int(document["document_id"]),
        s3_key=upload["key"],
        title=document.get("title", ""),
        content_sha256=document["content_sha256"],
        chunk_count=int(document["chunk_count"]),
        embedding_model=embedding_model,
        embedding_dimension=dimension,
        concepts_changed=document.get("concepts_changed", []),
        replaced_previous_version=bool(document.get("replaced_previous_version")),
        event_id=upload.get("event_id", ""),
    )
    for category, count in document.get("pii_redactions", {}).items():
        message.pii_redactions[category] = int(count)
    message.ingested_at.FromDatetime(datetime.now(UTC))
    return message.SerializeToString()


class SnsPublisher:
    def __init__(self, sns_client: Any, topic_arn: str) -> None:
        self._sns = sns_client
        self._topic_arn = topic_arn

    def publish(self, payload: bytes, *, world_id: str) -> str:
        try:
            response = self._sns.publish(
                TopicArn=self._topic_arn,
                Message=base64.b64encode(payload).decode(),
                MessageAttributes={
                    "content_type": {"DataType": "String", "StringValue": "application/x-protobuf"},
                    "message_type": {"DataType": "String", "StringValue": MESSAGE_TYPE},
                    "world_id": {"DataType": "String", "StringValue": world_id},
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise DocumentStoreError(f"publishing to {self._topic_arn}: {exc}") from exc
        return str(response["MessageId"])
