"""Rotation of a job role's secret (Secrets Manager's four steps), the role's password set as the master user.

Single-user rotation: the role keeps its name and gets a new password. Connections already open stay open;
a function's next connection fails authentication once with the cached old password, drops the cached
secret and connects with the new one (knowledge.adapters.postgres.database).

Each step is safe to repeat: Secrets Manager retries a step that failed or timed out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from knowledge.adapters.aws.secrets import SecretVersions
from knowledge.adapters.postgres.database import Database
from knowledge.adapters.postgres.roles import set_role_password
from knowledge.errors import ConfigurationError

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")


def rotate(
    event: dict[str, Any],
    *,
    versions: SecretVersions,
    admin: Database,
    connect_as: Callable[[dict[str, Any]], Database],
) -> str:
    """Run one step of a rotation event ({SecretId, ClientRequestToken, Step}); returns the step run.

    `admin` connects as the master user; `connect_as(secret)` builds a database reached with `secret`."""
    arn, token, step = str(event["SecretId"]), str(event["ClientRequestToken"]), str(event["Step"])
    if step not in STEPS:
        raise ConfigurationError(f"unknown rotation step {step!r}")
    stages = versions.stages(arn)
    if token not in stages:
        raise ConfigurationError(f"version {token} of {arn} is not part of its rotation")
    if "AWSCURRENT" in stages[token]:
        return step  # already promoted: a repeated event
    if "AWSPENDING" not in stages[token]:
        raise ConfigurationError(f"version {token} of {arn} is not pending rotation")

    if step == "createSecret":
        current = versions.value(arn, stage="AWSCURRENT")
        if current is None:
            raise ConfigurationError(f"the secret {arn} has no current version")
        if versions.value(arn, stage="AWSPENDING", version=token) is None:
            versions.put_pending(arn, token, {**current, "password": versions.new_password()})
    elif step == "setSecret":
        pending = _pending(versions, arn, token)
        with admin.schema_connection() as conn, conn.transaction():
            set_role_password(conn, str(pending.get("username", "")), str(pending.get("password", "")))
    elif step == "testSecret":
        database = connect_as(_pending(versions, arn, token))
        try:
            with database.schema_connection() as conn:
                conn.execute("SELECT 1")
        finally:
            database.close()
    else:
        current_version = next((v for v, s in stages.items() if "AWSCURRENT" in s), None)
        versions.promote(arn, token, current_version)
    return step


def _pending(versions: SecretVersions, arn: str, token: str) -> dict[str, Any]:
    pending = versions.value(arn, stage="AWSPENDING", version=token)
    if pending is None:
        raise ConfigurationError(f"version {token} of {arn} has no value yet (createSecret did not run)")
    return pending
