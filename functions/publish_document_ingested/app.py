"""PublishDocumentIngested: the protobuf notification on SNS once the document is committed."""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from knowledge.config import Settings
from knowledge.ingestion import notification
from knowledge.services import Services

logger = Logger()
tracer = Tracer()
services = Services(Settings.from_env())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = services.settings
    payload = notification.document_ingested(
        event, embedding_model=settings.embedding_model_id, dimension=settings.embedding_dimension
    )
    attributes = notification.message_attributes(event["document"]["world_id"])
    message_id = services.document_ingested.publish(payload, attributes=attributes)
    return {**event, "published": {"message_id": message_id}}
