"""Applies the schema's migrations (knowledge.schema) to a PostgreSQL database, each exactly once.

A transaction-scoped advisory lock serialises concurrent runners; the embedding dimension is fixed by the
first run and a later run with another dimension fails loudly instead of corrupting the vector columns.
"""

from __future__ import annotations

import psycopg

from knowledge.errors import ConfigurationError
from knowledge.schema import available_migrations

_LOCK_ID = 0x6B62_6D69  # "kbmi"


def apply_migrations(
    conn: psycopg.Connection, *, embedding_model: str, embedding_dimension: int
) -> list[int]:
    """Apply pending migrations in one transaction; returns the versions applied."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        done: list[int] = []
        for migration in available_migrations():
            if migration.version in applied:
                continue
            sql = migration.sql.replace("__EMBEDDING_DIMENSION__", str(int(embedding_dimension)))
            conn.execute(sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            done.append(migration.version)
        row = conn.execute("SELECT embedding_model, embedding_dimension FROM kb_settings").fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO kb_settings (embedding_model, embedding_dimension) VALUES (%s, %s)",
                (embedding_model, embedding_dimension),
            )
        elif (row[0], row[1]) != (embedding_model, embedding_dimension):
            # Vectors of two models are not comparable, even at the same dimension.
            raise ConfigurationError(
                f"the database holds {row[1]}-dimensional vectors of {row[0]}; this deployment embeds with "
                f"{embedding_model} at {embedding_dimension} dimensions. Re-embedding needs a new database."
            )
        return done
