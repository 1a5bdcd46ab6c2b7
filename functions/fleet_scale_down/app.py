"""FleetScaleDown: every five minutes, scale idle tiers in (bounded steps) through the drain workflow."""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from fleet.scheduled import scheduled_tick
from fleet.services import FleetServices

logger = Logger()
tracer = Tracer()
services = FleetServices.from_env()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return scheduled_tick(services, logger, mode="scale_in")
