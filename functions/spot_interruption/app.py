"""SpotInterruption: an EC2 Spot two-minute warning replaces the host at once; it drains via its hook."""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from fleet.services import FleetServices
from fleet.spot import replace_interrupted_host

logger = Logger()
tracer = Tracer()
services = FleetServices.from_env()
fleet_groups = {tier.asg_name for tier in services.settings.tiers}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = replace_interrupted_host(
        event["detail"]["instance-id"], hosts=services.actuator, fleet_groups=fleet_groups
    )
    logger.warning("spot interruption", extra=result)
    return result
