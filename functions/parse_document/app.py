"""ParseDocument: Markdown with front matter, plain text, HTML or PDF into titled sections."""

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
    return steps.parse(
        event,
        objects=services.objects,
        payloads=services.payloads,
        max_document_bytes=services.settings.max_document_bytes,
    )
