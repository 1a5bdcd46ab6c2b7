"""PostgreSQL access: one small connection pool per process, pgvector registered on every connection.

Credentials come from Secrets Manager (Aurora's managed secret holds username/password; a full secret may
also hold host/port/dbname). psycopg failures that a retry can cure surface as DatabaseUnavailableError,
which the state machine retries with backoff.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from knowledge.errors import DatabaseUnavailableError


def conninfo_from_secret(
    secret: dict[str, Any], *, host: str = "", port: int = 5432, dbname: str = ""
) -> str:
    return make_conninfo(
        host=secret.get("host") or host,
        port=int(secret.get("port") or port),
        dbname=secret.get("dbname") or dbname or "postgres",
        user=secret.get("username") or secret.get("user") or "postgres",
        password=secret.get("password") or "",
        connect_timeout=10,
        application_name="knowledge-base",
    )


def _configure(conn: psycopg.Connection[Any]) -> None:
    # register_vector looks the type up with a query; end that transaction so the pool gets an idle connection.
    with contextlib.suppress(psycopg.ProgrammingError):  # not migrated yet: queries report missing tables
        register_vector(conn)
    conn.rollback()


class Database:
    """Lazily opened pool; thread-safe (Step Functions Map iterations share a process locally)."""

    def __init__(self, conninfo: Callable[[], str], *, max_size: int = 4) -> None:
        self._conninfo = conninfo
        self._max_size = max_size
        self._pool: ConnectionPool[Any] | None = None
        self._lock = threading.Lock()

    def _get_pool(self) -> ConnectionPool[Any]:
        with self._lock:
            if self._pool is None:
                try:
                    self._pool = ConnectionPool(
                        self._conninfo(),
                        min_size=0,
                        max_size=self._max_size,
                        configure=_configure,
                        check=ConnectionPool.check_connection,
                        timeout=15,
                        open=True,
                    )
                except psycopg.Error as exc:
                    raise DatabaseUnavailableError(f"cannot open the database pool: {exc}") from exc
            return self._pool

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection inside one transaction: committed on success, rolled back on any exception."""
        try:
            with self._get_pool().connection() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise DatabaseUnavailableError(f"database unavailable: {exc}") from exc

    @contextmanager
    def schema_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A plain connection outside the pool, for migrations: the vector type may not exist yet."""
        try:
            with psycopg.connect(self._conninfo()) as conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise DatabaseUnavailableError(f"database unavailable: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
