"""PostgreSQL access: small connection pools per process, pgvector registered on every connection.

Credentials come from Secrets Manager (Aurora's managed secret holds username/password; a full secret may
also hold host/port/dbname). psycopg failures that a retry can cure surface as DatabaseUnavailableError,
which the state machine retries with backoff.

Two pools, each opened on first use:

* `transaction()`: read-write, one transaction per checkout (ingestion, story events, migrations' callers).
* `read(fn)`: the query API's path. Autocommit and read-only, so a query is one round trip with no
  BEGIN/COMMIT around it, with a statement timeout bounding any one query.

Either pool skips its liveness check (a round trip) for a connection returned less than
`RECHECK_AFTER_S` ago: under load every checkout would otherwise pay it, while a connection that just
worked rarely breaks. A connection idle for longer (a Lambda thawed after minutes) is still checked.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from pgvector.psycopg import register_vector
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from knowledge.errors import DatabaseUnavailableError

T = TypeVar("T")

RECHECK_AFTER_S = 10.0
# Bounds the work any one API query can make the database do, whatever the input.
READ_STATEMENT_TIMEOUT = "5s"


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


def _configure_reader(conn: psycopg.Connection[Any]) -> None:
    with contextlib.suppress(psycopg.ProgrammingError):
        register_vector(conn)
    # Session settings, made once per connection. Iterative index scans let a filtered nearest-neighbour
    # query (concepts of one world, say) still find its k rows; searches set their own HNSW settings.
    conn.execute(
        "SELECT set_config('default_transaction_read_only', 'on', false),"
        " set_config('statement_timeout', %s, false),"
        " set_config('hnsw.iterative_scan', 'relaxed_order', false)",
        (READ_STATEMENT_TIMEOUT,),
    )


class _RecentUse:
    """The pool's check callback: check only connections that have not worked for a while.

    Recorded by `Database` itself as each use ends, not by the pool's `reset` callback: with one, the
    pool hands every returned connection to a worker thread, a cost per query of its own.
    """

    def __init__(self) -> None:
        self._used_at: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = weakref.WeakKeyDictionary()

    def worked(self, conn: psycopg.Connection[Any]) -> None:
        self._used_at[conn] = time.monotonic()

    def check(self, conn: psycopg.Connection[Any]) -> None:
        if time.monotonic() - self._used_at.get(conn, -math.inf) > RECHECK_AFTER_S:
            ConnectionPool.check_connection(conn)


def _is_broken(conn: psycopg.Connection[Any] | None) -> bool:
    return conn is not None and (conn.closed or conn.broken)


class Database:
    """Lazily opened pools; thread-safe (Step Functions Map iterations share a process locally)."""

    def __init__(self, conninfo: Callable[[], str], *, max_size: int = 4) -> None:
        self._conninfo = conninfo
        self._max_size = max_size
        self._pool: ConnectionPool[Any] | None = None
        self._read_pool: ConnectionPool[Any] | None = None
        self._recent = _RecentUse()
        self._lock = threading.Lock()

    def _open_pool(self, **kwargs: Any) -> ConnectionPool[Any]:
        try:
            return ConnectionPool(
                self._conninfo(),
                min_size=0,
                max_size=self._max_size,
                check=self._recent.check,
                timeout=15,
                open=True,
                **kwargs,
            )
        except psycopg.Error as exc:
            raise DatabaseUnavailableError(f"cannot open the database pool: {exc}") from exc

    def _get_pool(self) -> ConnectionPool[Any]:
        with self._lock:
            if self._pool is None:
                self._pool = self._open_pool(configure=_configure)
            return self._pool

    def _get_read_pool(self) -> ConnectionPool[Any]:
        with self._lock:
            if self._read_pool is None:
                self._read_pool = self._open_pool(configure=_configure_reader, kwargs={"autocommit": True})
            return self._read_pool

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection inside one transaction: committed on success, rolled back on any exception."""
        try:
            with self._get_pool().connection() as conn:
                yield conn
                self._recent.worked(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise DatabaseUnavailableError(f"database unavailable: {exc}") from exc

    def read(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """`fn(conn)` on a read-only autocommit connection: each statement is its own transaction.

        A connection that turns out broken (dropped by the server while idle, a failover) is discarded
        and `fn` runs once more on a fresh one; being read-only, running it twice is harmless.
        """
        pool = self._get_read_pool()
        for attempt in (1, 2):
            conn: psycopg.Connection[Any] | None = None
            try:
                with pool.connection() as conn:
                    result = fn(conn)
                    self._recent.worked(conn)
                    return result
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if attempt == 1 and _is_broken(conn):
                    continue
                raise DatabaseUnavailableError(f"database unavailable: {exc}") from exc
            except PoolTimeout as exc:
                raise DatabaseUnavailableError(f"database unavailable: {exc}") from exc
        raise AssertionError("unreachable")

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
            for pool in (self._pool, self._read_pool):
                if pool is not None:
                    pool.close()
            self._pool = self._read_pool = None
