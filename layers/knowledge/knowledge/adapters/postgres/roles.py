"""The job roles of migration 0005 (kb_reader, kb_ingestion, kb_story_events) and their passwords.

Each role's password lives in its own Secrets Manager secret ({"username", "password"}); the migrator sets
it at every deploy and the rotation function at every rotation. The server receives a SCRAM verifier
computed here, never the password itself, so no statement log can hold one.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from knowledge.errors import ConfigurationError

JOB_ROLES = frozenset({"kb_reader", "kb_ingestion", "kb_story_events"})


def set_role_password(conn: psycopg.Connection[Any], role: str, password: str) -> None:
    """Give a job role its password (and LOGIN). Only the job roles: a secret naming another user (the
    master user, say) is refused rather than obeyed."""
    if role not in JOB_ROLES:
        raise ConfigurationError(f"{role!r} is not a job role ({', '.join(sorted(JOB_ROLES))})")
    if not password:
        raise ConfigurationError(f"the secret of {role} holds no password")
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    conn.execute(
        sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(verifier.decode())
        )
    )
