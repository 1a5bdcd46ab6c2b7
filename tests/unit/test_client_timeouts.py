"""Every AWS client a function makes gives up well inside the function's timeout (botocore's defaults, 60 s
connect and 60 s read per attempt, retried, would outlast the API's 28 s on their own)."""

from __future__ import annotations

from typing import Any

import pytest

from fleet.config import FleetSettings
from fleet.services import FleetServices
from knowledge.adapters.aws.bedrock import worst_case_seconds
from knowledge.config import Settings
from knowledge.services import Services

SHORTEST_FUNCTION_TIMEOUT_S = 28  # the API's (API Gateway's 29 s limit)


@pytest.fixture(autouse=True)
def _region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")


def _bounded(client: Any) -> float:
    config = client.meta.config
    assert config.connect_timeout <= 5 and config.read_timeout <= 10, client.meta.service_model.service_name
    return worst_case_seconds(config)


def test_the_knowledge_functions_clients_give_up_inside_the_shortest_timeout() -> None:
    services = Services(
        Settings.from_env(
            {
                "DOCUMENTS_BUCKET": "docs",
                "DOCUMENT_INGESTED_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:ingested",
                "IDEMPOTENCY_TABLE": "idempotency",
                "STORY_EVENTS_DLQ_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/dlq",
            }
        )
    )
    clients = [
        services.s3,
        services.document_ingested._sns,
        services.story_dead_letters._sqs,
        services.idempotency_store.client,
    ]
    assert all(_bounded(c) < SHORTEST_FUNCTION_TIMEOUT_S for c in clients)


def test_the_fleet_functions_clients_give_up_inside_a_tick() -> None:
    settings = FleetSettings(tiers=(), state_table="state", hosts_table="hosts", dry_run=True)
    services = FleetServices(settings)
    reader = services.reader
    clients = [services.autoscaling, services.dynamodb, reader._sqs, reader._cloudwatch]
    assert all(_bounded(c) < SHORTEST_FUNCTION_TIMEOUT_S for c in clients)
