"""EmbedGenerationBatch: one Map iteration of the re-embedding workflow (new model, new generation)."""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from knowledge import reembedding
from knowledge.config import Settings
from knowledge.services import Services

logger = Logger()
tracer = Tracer()
services = Services(Settings.from_env())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return reembedding.embed_batch(event, database=services.database, embedder_for=services.embedder_for)
