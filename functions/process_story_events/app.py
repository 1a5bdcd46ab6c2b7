"""ProcessStoryEvents: StoryEvent batches from SQS; each event stored once, poison dead-lettered with why."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.typing import LambdaContext

from knowledge.config import Settings
from knowledge.services import Services
from knowledge.story_events import processing
from knowledge.story_events.model import StoryEvent

logger = Logger()
tracer = Tracer()
metrics = Metrics()
services = Services(Settings.from_env())
processor = BatchProcessor(event_type=EventType.SQS)
COUNTERS = {
    "stored": "StoryEventsStored",
    "duplicate": "StoryEventsDuplicate",
    "dead_lettered": "StoryEventsDeadLettered",
}
# Keyed on the world and event id inside the protobuf (ids are unique per world): SNS may deliver one
# publish twice, as two SQS messages.
idempotency = IdempotencyConfig(
    event_key_jmespath="[world_id, event_id]",
    expires_after_seconds=24 * 3600,
    response_hook=processing.mark_duplicate,
)


@idempotent_function(
    data_keyword_argument="event", config=idempotency, persistence_store=services.idempotency_store
)
def store(event: StoryEvent) -> dict[str, Any]:
    return processing.store(event, database=services.database, embedder=services.embedder)


def record_handler(record: SQSRecord) -> dict[str, Any]:
    outcome = processing.process_record(
        record.raw_event,
        store_event=lambda event: store(event=event),
        dead_letters=services.story_dead_letters,
        max_bytes=services.settings.story_event_max_bytes,
    )
    status = outcome["status"]
    metrics.add_metric(name=COUNTERS[status], unit=MetricUnit.Count, value=1)
    if status == "dead_lettered":
        with single_metric(
            name="StoryEventsDeadLetteredByReason",
            unit=MetricUnit.Count,
            value=1,
            namespace=metrics.namespace,
        ) as by_reason:
            by_reason.add_dimension(name="reason", value=outcome["reason_code"])
        logger.warning("dead-lettered", extra={k: outcome[k] for k in ("event_id", "reason_code", "reason")})
    elif status == "stored":
        metrics.add_metric(
            name="ConceptVersionsAppended",
            unit=MetricUnit.Count,
            value=len(outcome["concepts_versioned"]) + len(outcome["concepts_created"]),
        )
        metrics.add_metric(
            name="PiiRedactions", unit=MetricUnit.Count, value=sum(outcome["pii_redactions"].values())
        )
    return outcome


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    idempotency.register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
