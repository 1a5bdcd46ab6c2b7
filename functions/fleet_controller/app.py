"""FleetController: every minute, decide each tier's capacity and apply scale-out (scale-in is recorded
for the five-minute scale-down check, which takes it through the drain workflow)."""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from fleet.adapters.signals import utc_now
from fleet.config import FleetSettings
from fleet.controller import audit_record, run_tick
from fleet.reporting import reporter
from fleet.services import FleetServices

logger = Logger()
tracer = Tracer()
services = FleetServices(FleetSettings.from_env())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    now, dry_run = utc_now(), services.settings.dry_run
    results = run_tick(
        services.settings,
        mode="scale_out",
        now=now,
        reader=services.reader,
        store=services.store,
        actuator=services.actuator,
        report=reporter(logger, dry_run=dry_run, now=now),
    )
    return {"tiers": [audit_record(r, dry_run=dry_run, decided_at=now) for r in results]}
