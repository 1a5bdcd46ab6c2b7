"""ManageEmbeddingGeneration: the re-embedding workflow's steps other than embedding, by `action`
(begin, list, switch, retire, abandon; knowledge.reembedding)."""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from knowledge import reembedding
from knowledge.config import Settings
from knowledge.errors import ConfigurationError
from knowledge.services import Services

logger = Logger()
tracer = Tracer()
services = Services(Settings.from_env())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action, state = event.get("action"), event.get("state") or {}
    settings, database = services.settings, services.database
    if action == "begin":
        result = reembedding.begin(
            database=database,
            target_model=settings.next_embedding_model_id,
            target_dimension=settings.next_embedding_dimension,
        )
    elif action == "list":
        result = reembedding.list_pending(
            state, database=database, payloads=services.payloads, batch_size=settings.embed_batch_size
        )
    elif action == "switch":
        result = reembedding.switch(state, database=database)
    elif action == "retire":
        result = reembedding.retire(state, database=database)
    elif action == "abandon":
        result = reembedding.abandon(state, database=database)
    else:
        raise ConfigurationError(f"unknown action {action!r}")
    logger.info(action, extra={"generation": result.get("generation", result.get("generation_id"))})
    return result
