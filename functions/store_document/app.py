"""StoreDocument: one transaction per document (binary COPY of chunks, concepts, relationships)."""

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
    result = steps.store(
        event,
        payloads=services.payloads,
        database=services.database,
        embedding_model=services.settings.embedding_model_id,
    )
    document = result["document"]
    if document["outcome"] != "unchanged":
        metrics.add_metric(name="DocumentsIngested", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="ChunksStored", unit=MetricUnit.Count, value=document["chunk_count"])
    logger.info("stored", extra={"key": event["upload"]["key"], "outcome": document["outcome"]})
    return result
