"""Deployment settings of the knowledge functions, read once from the environment.

Each function's template environment names the variables it reads (tests/template checks they are
among these); this is the only place that knows their names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from knowledge.errors import ConfigurationError


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a number of seconds, got {raw!r}") from exc
    if not value > 0:
        raise ConfigurationError(f"{name} must be positive, got {raw!r}")
    return value


# The RDS certificate authorities, shipped in the KnowledgeLayer (knowledge/adapters/postgres/certs/README.md).
RDS_CA_BUNDLE = str(
    Path(__file__).resolve().parent / "adapters" / "postgres" / "certs" / "rds-global-bundle.pem"
)
SSL_MODES = ("disable", "require", "verify-ca", "verify-full")


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
    # Database sessions: TLS verified against the RDS CA (the local runtime's embedded server has no TLS and
    # sets DB_SSLMODE=disable), and the server-side limit of one statement (also its lock waits), sized per
    # function below its timeout (tests/template checks).
    db_sslmode: str = "verify-full"
    db_sslrootcert: str = RDS_CA_BUNDLE
    db_statement_timeout_s: float = 15.0
    # MigrateDatabase only: the secrets of the job roles whose passwords it sets (comma-separated ARNs).
    db_role_secret_arns: tuple[str, ...] = ()
    # The most one embedding request may take, retries included (knowledge.adapters.aws.bedrock).
    embedding_timeout_s: float = 10.0
    # The model a re-embedding moves to (knowledge.reembedding); while set, the functions also embed with it
    # whenever it is the store's live generation, so the switch needs no deploy of its own.
    next_embedding_model_id: str = ""
    next_embedding_dimension: int = 0
    # The one browser origin (the hosted lore explorer's) allowed to read the API's answers; empty: none.
    cors_allow_origin: str = ""
    # The Bedrock rerank model of search's second stage (`rerank: true`) where the provider is bedrock;
    # empty: the stage is refused. Local providers rerank by sentences with their own model.
    rerank_model_arn: str = ""

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
            db_sslmode=_ssl_mode(env.get("DB_SSLMODE") or "verify-full"),
            db_sslrootcert=env.get("DB_SSLROOTCERT") or RDS_CA_BUNDLE,
            db_statement_timeout_s=_float(env, "DB_STATEMENT_TIMEOUT_S", 15.0),
            db_role_secret_arns=tuple(
                a.strip() for a in env.get("DB_ROLE_SECRET_ARNS", "").split(",") if a.strip()
            ),
            embedding_timeout_s=_float(env, "EMBEDDING_TIMEOUT_S", 10.0),
            next_embedding_model_id=env.get("NEXT_EMBEDDING_MODEL_ID", ""),
            next_embedding_dimension=_int(env, "NEXT_EMBEDDING_DIMENSION", 0),
            cors_allow_origin=env.get("CORS_ALLOW_ORIGIN", ""),
            rerank_model_arn=env.get("RERANK_MODEL_ARN", ""),
        )

    def require(self, *names: str) -> None:
        """Fail fast, with the variable's name, when a function is deployed without what it needs."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            raise ConfigurationError(f"missing settings: {', '.join(missing)}")


def _ssl_mode(value: str) -> str:
    if value not in SSL_MODES:
        raise ConfigurationError(f"DB_SSLMODE must be one of {', '.join(SSL_MODES)}, got {value!r}")
    return value
