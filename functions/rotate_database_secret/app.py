"""RotateDatabaseSecret: Secrets Manager rotation of a job role's database secret (one step per call)."""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from knowledge.config import Settings
from knowledge.schema.rotation import rotate
from knowledge.services import Services

logger = Logger()
tracer = Tracer()
services = Services(Settings.from_env())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    step = rotate(
        event, versions=services.secret_versions, admin=services.database, connect_as=services.database_as
    )
    logger.info("rotation step done", extra={"step": step, "secret": event.get("SecretId")})
