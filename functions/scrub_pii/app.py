"""ScrubPii: replaces personal data in every text the document stores (title, sections and headings,
front matter metadata, concept and relationship descriptions); counts what it removed."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
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
    result = steps.scrub(event, payloads=services.payloads)
    redacted = sum(result["document"]["pii_redactions"].values())
    metrics.add_metric(name="PiiRedactions", unit=MetricUnit.Count, value=redacted)
    return result
