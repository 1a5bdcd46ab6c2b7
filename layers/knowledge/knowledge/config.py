"""Deployment settings of the knowledge functions, read once from the environment.

Each function's template environment names the variables it reads (tests/template checks they are
among these); this is the only place that knows their names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from knowledge.errors import ConfigurationError


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True, slots=True)
class Settings:
    documents_bucket: str
    db_secret_arn: str
    db_host: str
    db_port: int
    db_name: str
    embedding_provider: str
    embedding_model_id: str
    embedding_dimension: int
    max_document_bytes: int
    embed_batch_size: int
    chunk_max_tokens: int
    chunk_overlap_tokens: int
    # State payloads larger than this travel by S3 reference (the Step Functions limit is 256 KB per state).
    inline_payload_limit: int
    document_ingested_topic_arn: str
    # Story events (functions/process_story_events): the Powertools idempotency table, the queue that poison
    # events are sent to with their reason, and the largest encoded event accepted.
    idempotency_table: str = ""
    story_events_dlq_url: str = ""
    story_event_max_bytes: int = 64 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            documents_bucket=env.get("DOCUMENTS_BUCKET", ""),
            db_secret_arn=env.get("DB_SECRET_ARN", ""),
            db_host=env.get("DB_HOST", ""),
            db_port=_int(env, "DB_PORT", 5432),
            db_name=env.get("DB_NAME", "knowledge"),
            embedding_provider=env.get("EMBEDDING_PROVIDER", "bedrock"),
            embedding_model_id=env.get("EMBEDDING_MODEL_ID", "amazon.titan-embed-text-v2:0"),
            embedding_dimension=_int(env, "EMBEDDING_DIMENSION", 1024),
            max_document_bytes=_int(env, "MAX_DOCUMENT_BYTES", 50 * 1024 * 1024),
            embed_batch_size=_int(env, "EMBED_BATCH_SIZE", 32),
            chunk_max_tokens=_int(env, "CHUNK_MAX_TOKENS", 200),
            chunk_overlap_tokens=_int(env, "CHUNK_OVERLAP_TOKENS", 32),
            inline_payload_limit=_int(env, "INLINE_PAYLOAD_LIMIT", 8 * 1024),
            document_ingested_topic_arn=env.get("DOCUMENT_INGESTED_TOPIC_ARN", ""),
            idempotency_table=env.get("IDEMPOTENCY_TABLE", ""),
            story_events_dlq_url=env.get("STORY_EVENTS_DLQ_URL", ""),
            story_event_max_bytes=_int(env, "STORY_EVENT_MAX_BYTES", 64 * 1024),
        )

    def require(self, *names: str) -> None:
        """Fail fast, with the variable's name, when a function is deployed without what it needs."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            raise ConfigurationError(f"missing settings: {', '.join(missing)}")
