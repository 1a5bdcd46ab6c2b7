"""ValidateDocument: size, type and UTF-8 checks, content fingerprint, new/changed/unchanged."""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from knowledge.config import Settings
from knowledge.ingestion import steps
from knowledge.services import Services

logger = Logger()
tracer = Tracer()
services = Services(Settings.from_env())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = steps.validate(
        event,
        objects=services.objects,
        database=services.database,
        max_document_bytes=services.settings.max_document_bytes,
        payloads=services.payloads,
        embedding_model=services.settings.embedding_model_id,
    )
    logger.info("validated", extra={"key": event["upload"]["key"], "outcome": result["document"]["outcome"]})
    return result
