"""MigrateDatabase: CloudFormation custom resource that applies the versioned SQL migrations."""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from knowledge.adapters.postgres.migrations import apply_migrations
from knowledge.config import Settings
from knowledge.schema.custom_resource import run_custom_resource
from knowledge.services import Services

logger = Logger()
tracer = Tracer()
services = Services(Settings.from_env())


def migrate(properties: dict[str, Any]) -> dict[str, Any]:
    with services.database.schema_connection() as conn:
        applied = apply_migrations(
            conn,
            embedding_model=str(properties.get("EmbeddingModelId", services.settings.embedding_model_id)),
            embedding_dimension=int(
                properties.get("EmbeddingDimension", services.settings.embedding_dimension)
            ),
        )
    logger.info("migrations applied", extra={"applied": applied})
    return {"Applied": ",".join(map(str, applied))}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return run_custom_resource(
        event, migrate, physical_id="knowledge-schema", send=services.send_custom_resource_response
    )
