"""DeleteDocument: a user's delete of an upload removes its document and what only it contributed."""

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
    result = steps.delete(event, objects=services.objects, database=services.database)
    logger.info("deleted", extra=result)
    return result
