"""KnowledgeApi: the storyteller HTTP API (API Gateway REST, Lambda proxy); routes in knowledge.api."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from knowledge.config import Settings
from knowledge.queries import api, cors, timing
from knowledge.services import Services

logger = Logger()
tracer = Tracer()
metrics = Metrics()
services = Services(Settings.from_env())
app = api.build_app(services)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    timings = timing.RequestTimings()
    answer = api.handle(app, event, context, timings)
    response = cors.allow_origin(answer, services.settings.cors_allow_origin)
    status = int(response["statusCode"])
    metrics.add_metric(name="ApiRequests", unit=MetricUnit.Count, value=1)
    # Where the time went (also the response's Server-Timing header): percentiles per part on CloudWatch.
    breakdown = {
        "ApiQueryEmbeddingTime": timings.ms(timing.EMBED),
        "ApiTokenCountingTime": timings.ms(timing.TOKENS),
        "ApiSqlTime": timings.ms(timing.SQL),
        "ApiHandlerTime": timings.handler_ms,
    }
    for name, ms in breakdown.items():
        metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=round(ms, 3))
    # Client errors are the callers' business; server errors and unavailability are ours (alarmed).
    if status >= 500:
        metrics.add_metric(name="ApiServerErrors", unit=MetricUnit.Count, value=1)
    if status == 503:
        metrics.add_metric(name="ApiDependencyUnavailable", unit=MetricUnit.Count, value=1)
    logger.info("answered", extra={"path": event.get("resource"), "status": status, "timings_ms": breakdown})
    return response
