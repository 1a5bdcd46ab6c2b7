"""EmbedBatch: one Map iteration; throttling surfaces as EmbeddingThrottledError for the state's Retry."""

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
    return steps.embed_batch(
        event,
        payloads=services.payloads,
        embedder=services.embedder,
        remaining_ms=context.get_remaining_time_in_millis,
    )
