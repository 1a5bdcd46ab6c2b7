"""Composition root of the knowledge functions: clients and adapters built once per process, lazily.

Each handler module builds one `Services(Settings.from_env())` at import (config read once, in one place);
clients are created on first use, so a cold start pays only for what that function touches.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.utilities import parameters

from knowledge.adapters.database import Database, conninfo_from_secret
from knowledge.adapters.objects import ObjectStore
from knowledge.adapters.payloads import PayloadStore
from knowledge.config import Settings
from knowledge.embedding import Embedder, embedder_from_settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    from knowledge.adapters.dead_letters import DeadLetterQueue


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()

    @functools.cached_property
    def s3(self) -> Any:
        return boto3.client("s3")

    @functools.cached_property
    def objects(self) -> ObjectStore:
        self.settings.require("documents_bucket")
        return ObjectStore(self.s3, self.settings.documents_bucket)

    @functools.cached_property
    def payloads(self) -> PayloadStore:
        return PayloadStore(self.objects, inline_limit=self.settings.inline_payload_limit)

    @functools.cached_property
    def database(self) -> Database:
        self.settings.require("db_secret_arn")
        settings = self.settings

        def conninfo() -> str:
            secret: Any = parameters.get_secret(settings.db_secret_arn, transform="json", max_age=300)
            return conninfo_from_secret(
                secret, host=settings.db_host, port=settings.db_port, dbname=settings.db_name
            )

        return Database(conninfo)

    @functools.cached_property
    def embedder(self) -> Embedder:
        from knowledge.embedding import bedrock_client_config

        return embedder_from_settings(
            self.settings.embedding_provider,
            dimension=self.settings.embedding_dimension,
            model_id=self.settings.embedding_model_id,
            bedrock_client_factory=lambda: boto3.client("bedrock-runtime", config=bedrock_client_config()),
        )

    @functools.cached_property
    def sns(self) -> Any:
        return boto3.client("sns")

    @functools.cached_property
    def sqs(self) -> Any:
        return boto3.client("sqs")

    @functools.cached_property
    def idempotency_store(self) -> DynamoDBPersistenceLayer:
        # Imported here: only the story-events function pays for the idempotency utility at cold start.
        from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

        self.settings.require("idempotency_table")
        return DynamoDBPersistenceLayer(table_name=self.settings.idempotency_table)

    @functools.cached_property
    def story_dead_letters(self) -> DeadLetterQueue:
        from knowledge.adapters.dead_letters import DeadLetterQueue

        self.settings.require("story_events_dlq_url")
        return DeadLetterQueue(self.sqs, self.settings.story_events_dlq_url)
