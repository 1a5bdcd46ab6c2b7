"""The DocumentIngested notification: a protobuf message and the attributes it is published with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from messages import knowledge_pb2

MESSAGE_TYPE = "aigame.knowledge.v1.DocumentIngested"
CONTENT_TYPE = "application/x-protobuf"


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


def message_attributes(world_id: str) -> dict[str, str]:
    """SNS attributes subscribers filter on without decoding the body."""
    return {"content_type": CONTENT_TYPE, "message_type": MESSAGE_TYPE, "world_id": world_id}
