"""What the MigrateDatabase custom resource does at each deploy: check, migrate, give the job roles
their passwords."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from knowledge.adapters.postgres.database import Database
from knowledge.adapters.postgres.migrations import apply_migrations
from knowledge.adapters.postgres.roles import set_role_password
from knowledge.errors import ConfigurationError
from knowledge.schema import migrations_digest

DIGEST_PROPERTY = "MigrationsDigest"


def check_digest(properties: dict[str, Any]) -> str:
    """The template's digest must be that of the migrations this function ships: a template that lags
    behind its files would never have triggered this run for the newest migration."""
    expected = migrations_digest()
    declared = str(properties.get(DIGEST_PROPERTY, ""))
    if declared != expected:
        raise ConfigurationError(
            f"DatabaseMigration's {DIGEST_PROPERTY} is {declared or 'missing'!r}, but the migrations "
            f"shipped are {expected}: set it to that in template.yaml (tests/template checks)"
        )
    return expected


def migrate_database(
    properties: dict[str, Any],
    *,
    database: Database,
    read_secret: Callable[[str], dict[str, Any]],
    role_secret_arns: Sequence[str],
    default_model: str,
    default_dimension: int,
) -> dict[str, Any]:
    digest = check_digest(properties)
    role_secrets = [read_secret(arn) for arn in role_secret_arns]  # before any change: a bad ARN fails first
    with database.schema_connection() as conn:
        applied = apply_migrations(
            conn,
            embedding_model=str(properties.get("EmbeddingModelId") or default_model),
            embedding_dimension=int(properties.get("EmbeddingDimension") or default_dimension),
        )
        roles = []
        with conn.transaction():
            for secret in role_secrets:
                role = str(secret.get("username", ""))
                set_role_password(conn, role, str(secret.get("password", "")))
                roles.append(role)
    return {"Applied": ",".join(map(str, applied)), "Digest": digest, "Roles": ",".join(roles)}
