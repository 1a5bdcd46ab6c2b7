"""Composition root of the knowledge functions: clients and adapters built once per process, lazily.

Each handler module builds one `Services(Settings.from_env())` at import (config read once, in one place);
clients are created on first use, so a cold start pays only for what that function touches. This module
and `adapters/` are the only places that build AWS clients or database connections.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import boto3
from aws_lambda_powertools.utilities import parameters

from knowledge.adapters.aws.clients import service_client_config
from knowledge.adapters.aws.payloads import PayloadStore
from knowledge.adapters.aws.s3 import ObjectStore
from knowledge.adapters.aws.secrets import SecretReader, SecretVersions, secrets_client_config
from knowledge.adapters.postgres.database import Database, SessionTimeouts, conninfo_from_secret
from knowledge.config import Settings
from knowledge.errors import ConfigurationError
from knowledge.ports import Embedder, Reranker

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    from knowledge.adapters.aws.sns import SnsPublisher
    from knowledge.adapters.aws.sqs import DeadLetterQueue

EMBEDDING_PROVIDERS = ("bedrock", "local-minilm", "local-wordllama", "hash")


def embedder_from_settings(
    provider: str,
    *,
    dimension: int,
    model_id: str | None,
    bedrock_client_factory: Callable[[], Any] | None = None,
    timeout_s: float = 10.0,
) -> Embedder:
    """Build the embedder a deployment's settings name.

    `provider` is "bedrock" (Titan V2; `bedrock_client_factory` builds the bedrock-runtime client,
    default boto3 with `bedrock_client_config(timeout_s=...)`: one request, retries included, takes at
    most `timeout_s`), "local-minilm" (384 dimensions only) or "hash"
    (tests only). Raises ConfigurationError for anything that cannot work.
    """
    if provider == "bedrock":
        from knowledge.adapters.aws.bedrock import TITAN_V2_MODEL_ID, TitanEmbedder, bedrock_client_config

        client = (
            bedrock_client_factory()
            if bedrock_client_factory is not None
            else boto3.client("bedrock-runtime", config=bedrock_client_config(timeout_s=timeout_s))
        )
        return TitanEmbedder(client, model_id=model_id or TITAN_V2_MODEL_ID, dimension=dimension)
    if provider == "local-minilm":
        from knowledge.embedding.minilm import MINILM_DIMENSION, MINILM_MODEL_ID, MiniLmEmbedder

        if dimension != MINILM_DIMENSION:
            raise ConfigurationError(
                f"the local model {MINILM_MODEL_ID} produces {MINILM_DIMENSION}-dimensional vectors, "
                f"but {dimension} were configured"
            )
        if model_id not in (None, "", MINILM_MODEL_ID):
            raise ConfigurationError(f"the local-minilm provider only runs {MINILM_MODEL_ID}, not {model_id}")
        return MiniLmEmbedder()
    if provider == "local-wordllama":
        from knowledge.embedding.wordllama import WORDLLAMA_DIMENSION, WORDLLAMA_MODEL_ID, WordLlamaEmbedder

        if dimension != WORDLLAMA_DIMENSION or model_id not in (None, "", WORDLLAMA_MODEL_ID):
            raise ConfigurationError(
                f"the local-wordllama provider runs {WORDLLAMA_MODEL_ID} at {WORDLLAMA_DIMENSION} dimensions,"
                f" not {model_id} at {dimension}"
            )
        return WordLlamaEmbedder()
    if provider == "hash":
        from knowledge.embedding.hashing import HashEmbedder

        return HashEmbedder(dimension)
    raise ConfigurationError(
        f"unknown embedding provider {provider!r}; expected one of {', '.join(EMBEDDING_PROVIDERS)}"
    )


def provider_for_model(model_id: str, configured: str) -> str:
    """The provider that runs `model_id`: the local models by their ids, anything else by `configured`."""
    from knowledge.embedding.minilm import MINILM_MODEL_ID
    from knowledge.embedding.wordllama import WORDLLAMA_MODEL_ID

    return {MINILM_MODEL_ID: "local-minilm", WORDLLAMA_MODEL_ID: "local-wordllama"}.get(model_id, configured)


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @functools.cached_property
    def s3(self) -> Any:
        return boto3.client("s3", config=service_client_config())

    @functools.cached_property
    def objects(self) -> ObjectStore:
        self.settings.require("documents_bucket")
        return ObjectStore(self.s3, self.settings.documents_bucket)

    @functools.cached_property
    def payloads(self) -> PayloadStore:
        return PayloadStore(self.objects, inline_limit=self.settings.inline_payload_limit)

    @functools.cached_property
    def secrets(self) -> SecretReader:
        return SecretReader(parameters.SecretsProvider(boto_config=secrets_client_config()))

    @functools.cached_property
    def database(self) -> Database:
        """Connects as the function's database role, reading its secret at every new connection."""
        self.settings.require("db_secret_arn")
        settings = self.settings
        secrets = self.secrets

        def conninfo() -> str:
            return conninfo_from_secret(
                secrets.read(settings.db_secret_arn),
                host=settings.db_host,
                port=settings.db_port,
                dbname=settings.db_name,
                sslmode=settings.db_sslmode,
                sslrootcert=settings.db_sslrootcert,
            )

        return Database(
            conninfo,
            timeouts=SessionTimeouts(statement_s=settings.db_statement_timeout_s),
            on_auth_failure=lambda: secrets.invalidate(settings.db_secret_arn),
        )

    def database_as(self, secret: dict[str, Any]) -> Database:
        """A database reached with the given credentials (the rotation's test of a new password)."""
        settings = self.settings
        conninfo = conninfo_from_secret(
            secret,
            host=settings.db_host,
            port=settings.db_port,
            dbname=settings.db_name,
            sslmode=settings.db_sslmode,
            sslrootcert=settings.db_sslrootcert,
        )
        return Database(lambda: conninfo, max_size=1)

    @functools.cached_property
    def secret_versions(self) -> SecretVersions:
        return SecretVersions(boto3.client("secretsmanager", config=secrets_client_config()))

    def embedder_for(self, model_id: str, dimension: int) -> Embedder:
        """An embedder of `model_id` at `dimension` (the configured model, or a re-embedding's next one)."""
        provider = self.settings.embedding_provider
        if (model_id, dimension) != (self.settings.embedding_model_id, self.settings.embedding_dimension):
            provider = provider_for_model(model_id, provider)
        return embedder_from_settings(
            provider, dimension=dimension, model_id=model_id, timeout_s=self.settings.embedding_timeout_s
        )

    @functools.cached_property
    def embedder(self) -> Embedder:
        """The configured model; where the function reaches the database, the one of the store's live
        generation among the configured and the next model (knowledge.embedding.live)."""
        settings = self.settings
        current = (settings.embedding_model_id, settings.embedding_dimension)
        if not settings.db_secret_arn:
            return self.embedder_for(*current)
        from knowledge.adapters.postgres.generations import live_model
        from knowledge.embedding.live import LiveEmbedder

        models = [current]
        if settings.next_embedding_model_id and settings.next_embedding_dimension:
            models.append((settings.next_embedding_model_id, settings.next_embedding_dimension))
        # cast: its model_id and dimension are read-only properties (the live model's), not fields.
        return cast(
            Embedder,
            LiveEmbedder(
                {key: functools.partial(self.embedder_for, *key) for key in models},
                live=lambda: self.database.read(live_model),
                live_in=live_model,
                default=current,
            ),
        )

    @functools.cached_property
    def reranker(self) -> Reranker:
        """Search's second stage: the Bedrock rerank model where the provider is bedrock (raises
        RerankUnavailableError when none is configured), else sentences scored by the embedder."""
        settings = self.settings
        if settings.embedding_provider == "bedrock":
            from knowledge.adapters.aws.bedrock import bedrock_client_config
            from knowledge.adapters.aws.bedrock_rerank import BedrockReranker
            from knowledge.errors import RerankUnavailableError

            if not settings.rerank_model_arn:
                raise RerankUnavailableError(
                    "this deployment has no rerank model (stack parameter RerankModelId)"
                )
            client = boto3.client(
                "bedrock-agent-runtime", config=bedrock_client_config(timeout_s=settings.embedding_timeout_s)
            )
            return BedrockReranker(client, model_arn=settings.rerank_model_arn)
        from knowledge.reranking import SentenceReranker

        return SentenceReranker(self.embedder)

    @functools.cached_property
    def document_ingested(self) -> SnsPublisher:
        from knowledge.adapters.aws.sns import SnsPublisher

        self.settings.require("document_ingested_topic_arn")
        return SnsPublisher(
            boto3.client("sns", config=service_client_config()), self.settings.document_ingested_topic_arn
        )

    @functools.cached_property
    def idempotency_store(self) -> DynamoDBPersistenceLayer:
        # Imported here: only the story-events function pays for the idempotency utility at cold start.
        from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

        self.settings.require("idempotency_table")
        return DynamoDBPersistenceLayer(
            table_name=self.settings.idempotency_table, boto_config=service_client_config()
        )

    @functools.cached_property
    def story_dead_letters(self) -> DeadLetterQueue:
        from knowledge.adapters.aws.sqs import DeadLetterQueue

        self.settings.require("story_events_dlq_url")
        return DeadLetterQueue(
            boto3.client("sqs", config=service_client_config()), self.settings.story_events_dlq_url
        )

    def send_custom_resource_response(self, url: str, body: bytes) -> None:
        from knowledge.adapters.aws.cloudformation import put_response

        put_response(url, body)
