"""Which worlds have a document_chunks partition of their own (migration 0010).

Small worlds share the DEFAULT partition and are searched exactly; a world that reaches
`document_chunks_own_partition_threshold()` chunks is promoted to its own partition and HNSW graph by
`promote_world_chunks`. A promotion is a transaction of its own, never part of an ingestion's: ATTACH
PARTITION holds the default partition exclusively until commit (see the migration). Ingestion tries one
after each commit (`promote_if_large`); one that cannot lock the shared partition soon, that finds the
world gained rows meanwhile, or that outlasts its time, rolls back whole, and the next ingestion of the
world, or `promote_large_worlds`, tries again. Until then the world is searched exactly: slower, as correct.
"""

from __future__ import annotations

from typing import Any

import psycopg
from aws_lambda_powertools import Logger

from knowledge.adapters.postgres.database import Database

logger = Logger(child=True)

# Bounds a promotion after an ingestion: copying the world's rows and building its graph (no search waits
# meanwhile). A world that arrives far larger than the threshold may need promote_large_worlds instead.
INGESTION_PROMOTION_TIMEOUT = "30s"
BATCH_PROMOTION_TIMEOUT = "240s"
# Never queue behind long readers while holding the default partition: give up and try again later.
PROMOTION_LOCK_TIMEOUT = "2s"
_GAVE_UP = (psycopg.errors.LockNotAvailable, psycopg.errors.CheckViolation, psycopg.errors.QueryCanceled)


def _promote(conn: psycopg.Connection[Any], world_id: str, statement_timeout: str) -> bool:
    conn.execute(
        "SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)",
        (statement_timeout, PROMOTION_LOCK_TIMEOUT),
    )
    try:
        with conn.transaction():  # a savepoint: what a failed promotion made goes, the caller's stays
            row = conn.execute("SELECT promote_world_chunks(%s)", (world_id,)).fetchone()
    except _GAVE_UP as exc:
        logger.warning("world not promoted yet", world_id=world_id, reason=exc.diag.message_primary)
        return False
    return bool(row and row[0])


def promote_if_large(database: Database, world_id: str) -> bool:
    """Move `world_id` to its own partition if it has reached the threshold; whether it moved."""
    with database.transaction() as conn:
        return _promote(conn, world_id, INGESTION_PROMOTION_TIMEOUT)


def worlds_to_promote(conn: psycopg.Connection[Any]) -> list[str]:
    """Worlds still in the default partition with at least the threshold of chunks, largest first."""
    rows = conn.execute(
        "SELECT world_id FROM document_chunks_default GROUP BY world_id"
        " HAVING count(*) >= document_chunks_own_partition_threshold() ORDER BY count(*) DESC, world_id"
    ).fetchall()
    return [r[0] for r in rows]


def promote_large_worlds(conn: psycopg.Connection[Any]) -> list[str]:
    """Give every world past the threshold its own partition, a transaction each; the worlds promoted.

    `conn` is a plain connection outside a transaction (the schema owner's, or ingestion's role).
    """
    promoted = []
    for world in worlds_to_promote(conn):
        conn.commit()
        with conn.transaction():
            if _promote(conn, world, BATCH_PROMOTION_TIMEOUT):
                promoted.append(world)
    conn.commit()
    return promoted
