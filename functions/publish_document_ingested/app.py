"""PublishDocumentIngested: the protobuf notification on SNS once the document is committed."""

import os
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from knowledge import publishing
from knowledge.config import Settings
from knowledge.services import Services

logger = Logger()
tracer = Tracer()
services = Services(Settings.from_env())
publisher = publishing.SnsPublisher(services.sns, os.environ["DOCUMENT_INGESTED_TOPIC_ARN"])


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = services.settings
    payload = publishing.document_ingested(
        event, embedding_model=settings.embedding_model_id, dimension=settings.embedding_dimension
    )
    message_id = publisher.publish(payload, world_id=event["document"]["world_id"])
    return {**event, "published": {"message_id": message_id}}
