"""Applies the schema's migrations (knowledge.schema) to a PostgreSQL database, each exactly once.

Each migration runs in a transaction of its own, with its row in schema_migrations, so a failure keeps
every earlier one and leaves nothing of its own. A session advisory lock held across the whole run
serialises concurrent runners (two deploys, a deploy and `kb`): the second waits, then finds the work done.
The embedding dimension is fixed by the first run; a later run with another model or dimension fails
before it applies anything, instead of building vector columns of the wrong size.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from knowledge.adapters.postgres.database import session_timeouts_sql
from knowledge.errors import ConfigurationError, DatabaseUnavailableError
from knowledge.schema import Migration, available_migrations

_LOCK_ID = 0x6B62_6D69  # "kbmi"

# Migrations rebuild tables and indexes: far longer than any query, yet inside MigrateDatabase's 300 s
# (tests/template checks), so a stuck statement fails the deploy with a reason instead of timing it out.
MIGRATION_STATEMENT_TIMEOUT_S = 240
# DDL queues behind running queries for its ACCESS EXCLUSIVE lock, and every query queues behind it:
# give up soon rather than stall the API, and let the deploy's retry try again.
MIGRATION_LOCK_TIMEOUT_S = 10
MIGRATION_IDLE_IN_TRANSACTION_TIMEOUT_S = 60
# How long a second runner waits for the first to finish.
RUNNER_LOCK_TIMEOUT_S = 240


def apply_migrations(
    conn: psycopg.Connection,
    *,
    embedding_model: str,
    embedding_dimension: int,
    migrations: Sequence[Migration] | None = None,
) -> list[int]:
    """Apply pending migrations, each in its own transaction; returns the versions applied.

    `conn` is a plain (non-pooled) connection outside a transaction.
    """
    pending_source = available_migrations() if migrations is None else list(migrations)
    conn.autocommit = True
    conn.execute(
        session_timeouts_sql(
            statement_s=MIGRATION_STATEMENT_TIMEOUT_S,
            lock_s=RUNNER_LOCK_TIMEOUT_S,
            idle_in_transaction_s=MIGRATION_IDLE_IN_TRANSACTION_TIMEOUT_S,
        )
    )
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
    except psycopg.errors.LockNotAvailable as exc:
        raise DatabaseUnavailableError(
            f"another migration run held the schema lock for over {RUNNER_LOCK_TIMEOUT_S} s"
        ) from exc
    try:
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{MIGRATION_LOCK_TIMEOUT_S}s")))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        _check_embedding(conn, embedding_model, embedding_dimension)
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        done: list[int] = []
        for migration in pending_source:
            if migration.version in applied:
                continue
            text = migration.sql.replace("__EMBEDDING_DIMENSION__", str(int(embedding_dimension)))
            with conn.transaction():
                conn.execute(text.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
            done.append(migration.version)
        with conn.transaction():
            _check_embedding(conn, embedding_model, embedding_dimension, record=True)
        return done
    except psycopg.errors.QueryCanceled as exc:
        raise DatabaseUnavailableError(f"a migration statement was cancelled (timeout): {exc}") from exc
    except psycopg.errors.LockNotAvailable as exc:
        raise DatabaseUnavailableError(
            f"a migration waited over {MIGRATION_LOCK_TIMEOUT_S} s for a table lock: {exc}"
        ) from exc
    finally:
        if not conn.closed and not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))


def _check_embedding(conn: psycopg.Connection, model: str, dimension: int, *, record: bool = False) -> None:
    exists = conn.execute("SELECT to_regclass('kb_settings') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return
    row = conn.execute("SELECT embedding_model, embedding_dimension FROM kb_settings").fetchone()
    if row is None:
        if record:
            conn.execute(
                "INSERT INTO kb_settings (embedding_model, embedding_dimension) VALUES (%s, %s)",
                (model, dimension),
            )
    elif (row[0], row[1]) != (model, dimension):
        # Vectors of two models are not comparable, even at the same dimension.
        raise ConfigurationError(
            f"the database holds {row[1]}-dimensional vectors of {row[0]}; this deployment embeds with "
            f"{model} at {dimension} dimensions. Re-embedding needs a new database."
        )
