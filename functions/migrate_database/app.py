"""MigrateDatabase: CloudFormation custom resource that applies the versioned SQL migrations."""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from knowledge.config import Settings
from knowledge.schema.custom_resource import run_custom_resource
from knowledge.schema.deploy import migrate_database
from knowledge.services import Services

logger = Logger()
tracer = Tracer()
services = Services(Settings.from_env())


def migrate(properties: dict[str, Any]) -> dict[str, Any]:
    result = migrate_database(
        properties,
        database=services.database,
        read_secret=services.secrets.read,
        role_secret_arns=services.settings.db_role_secret_arns,
        default_model=services.settings.embedding_model_id,
        default_dimension=services.settings.embedding_dimension,
    )
    logger.info("migrations applied", extra=result)
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return run_custom_resource(
        event, migrate, physical_id="knowledge-schema", send=services.send_custom_resource_response
    )
