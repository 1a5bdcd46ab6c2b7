"""QuarantineDocument: bad input never disappears: moved to quarantine/, reason recorded, metric emitted."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from knowledge.config import Settings
from knowledge.ingestion import steps
from knowledge.services import Services

logger = Logger()
tracer = Tracer()
metrics = Metrics()
services = Services(Settings.from_env())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = steps.quarantine(event, objects=services.objects, database=services.database)
    # The alarm watches the total (service dimension only); the per-reason series is for the dashboard.
    metrics.add_metric(name="DocumentsQuarantined", unit=MetricUnit.Count, value=1)
    with single_metric(
        name="DocumentsQuarantinedByReason", unit=MetricUnit.Count, value=1, namespace=metrics.namespace
    ) as by_reason:
        by_reason.add_dimension(name="reason", value=result["reason_code"])
    logger.warning("quarantined", extra={k: result[k] for k in ("key", "reason_code", "reason")})
    return result
