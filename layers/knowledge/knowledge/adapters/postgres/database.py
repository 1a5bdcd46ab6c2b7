"""PostgreSQL access: small connection pools per process, pgvector registered on every connection.

Credentials come from Secrets Manager (each job's role has its own secret holding username/password; a
full secret may also hold host/port/dbname). The `conninfo` callable is asked again for every new
connection, so a rotated password is picked up at the next connect; when the server refuses the password,
`on_auth_failure` (the secret cache's invalidation) runs and the pool's next attempt reads the secret anew.
psycopg failures that a retry can cure surface as DatabaseUnavailableError, which the state machine retries
with backoff; a statement over its time limit is one of them, with that said in the message.

Two pools, each opened on first use:

* `transaction()`: read-write, one transaction per checkout (ingestion, story events, migrations' callers).
* `read(fn)`: the query API's path. Autocommit and read-only, so a query is one round trip with no
  BEGIN/COMMIT around it.

Every connection of either pool gets the same `SessionTimeouts` (statement, lock wait and idle in
transaction), sized per function from its settings so that no query outlives the function that asked.

Either pool skips its liveness check (a round trip) for a connection returned less than
`RECHECK_AFTER_S` ago: under load every checkout would otherwise pay it, while a connection that just
worked rarely breaks. A connection idle for longer (a Lambda thawed after minutes) is still checked.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from pgvector.psycopg import register_vector
from psycopg.conninfo import make_conninfo
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from knowledge.errors import ConfigurationError, DatabaseUnavailableError

T = TypeVar("T")

RECHECK_AFTER_S = 10.0
CONNECT_TIMEOUT_S = 5
POOL_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class SessionTimeouts:
    """Server-side limits of every session: a statement, a wait for a lock, a transaction left idle."""

    statement_s: float = 15.0
    lock_s: float | None = None  # None: as long as a statement may run
    idle_in_transaction_s: float = 60.0

    def sql(self) -> bytes:
        return session_timeouts_sql(
            statement_s=self.statement_s,
            lock_s=self.statement_s if self.lock_s is None else self.lock_s,
            idle_in_transaction_s=self.idle_in_transaction_s,
        )


def session_timeouts_sql(*, statement_s: float, lock_s: float, idle_in_transaction_s: float) -> bytes:
    """One statement setting the three timeouts for the session (milliseconds, so no unit parsing)."""
    values = [int(statement_s * 1000), int(lock_s * 1000), int(idle_in_transaction_s * 1000)]
    if min(values) <= 0:
        raise ValueError(f"timeouts must be positive, got {values} ms")
    return (
        "SELECT set_config('statement_timeout', '{}', false), set_config('lock_timeout', '{}', false),"
        " set_config('idle_in_transaction_session_timeout', '{}', false)".format(*values).encode()
    )


def conninfo_from_secret(
    secret: dict[str, Any],
    *,
    host: str = "",
    port: int = 5432,
    dbname: str = "",
    sslmode: str = "verify-full",
    sslrootcert: str = "",
) -> str:
    """libpq connection string from a Secrets Manager secret, verifying the server's certificate.

    `sslmode="verify-full"` checks the certificate against `sslrootcert` (the RDS CA bundle, or "system"
    for RDS Proxy) and the host name against it; the local runtime's embedded server has no TLS and is
    reached with "disable".
    """
    tls: dict[str, Any] = {"sslmode": sslmode}
    if sslmode in ("verify-ca", "verify-full"):
        if not sslrootcert:
            raise ConfigurationError(f"sslmode={sslmode} needs the CA bundle (DB_SSLROOTCERT)")
        # "system": the operating system's trust store (RDS Proxy's certificates are issued by ACM).
        if sslrootcert != "system" and not os.path.isfile(sslrootcert):
            raise ConfigurationError(
                f"the CA bundle {sslrootcert} is missing: `make rds-ca-bundle` fetches RDS's"
                " (knowledge/adapters/postgres/certs/README.md)"
            )
        tls["sslrootcert"] = sslrootcert
    return make_conninfo(
        host=secret.get("host") or host,
        port=int(secret.get("port") or port),
        dbname=secret.get("dbname") or dbname or "postgres",
        user=secret.get("username") or secret.get("user") or "postgres",
        password=secret.get("password") or "",
        connect_timeout=CONNECT_TIMEOUT_S,
        application_name="knowledge-base",
        **tls,
    )


def is_authentication_failure(exc: BaseException) -> bool:
    """The server refused the credentials (libpq reports it as text, without an SQLSTATE)."""
    if isinstance(exc, psycopg.errors.InvalidPassword | psycopg.errors.InvalidAuthorizationSpecification):
        return True
    text = str(exc)
    return "password authentication failed" in text or "SASL authentication failed" in text


def _unavailable(exc: BaseException) -> DatabaseUnavailableError:
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return DatabaseUnavailableError(f"a database statement ran past its time limit: {exc}")
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return DatabaseUnavailableError(f"a database lock was not granted in time: {exc}")
    if isinstance(exc, psycopg.errors.IdleInTransactionSessionTimeout):
        return DatabaseUnavailableError(f"a transaction was left idle past its time limit: {exc}")
    return DatabaseUnavailableError(f"database unavailable: {exc}")


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


def _configure(timeouts: SessionTimeouts, *, reader: bool) -> Callable[[psycopg.Connection[Any]], None]:
    def configure(conn: psycopg.Connection[Any]) -> None:
        with contextlib.suppress(psycopg.ProgrammingError):  # not migrated yet: queries report missing tables
            register_vector(conn)
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.rollback()
        conn.execute(timeouts.sql())
        if reader:
            # Iterative index scans let a filtered nearest-neighbour query (concepts of one world, say) still
            # find its k rows; searches set their own HNSW settings.
            conn.execute(
                "SELECT set_config('default_transaction_read_only', 'on', false),"
                " set_config('hnsw.iterative_scan', 'relaxed_order', false)"
            )
        # End the settings' transaction so the pool gets an idle connection.
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.commit()

    return configure


def _is_broken(conn: psycopg.Connection[Any] | None) -> bool:
    return conn is not None and (conn.closed or conn.broken)


class Database:
    """Lazily opened pools; thread-safe (Step Functions Map iterations share a process locally)."""

    def __init__(
        self,
        conninfo: Callable[[], str],
        *,
        max_size: int = 4,
        timeouts: SessionTimeouts | None = None,
        on_auth_failure: Callable[[], None] | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._max_size = max_size
        self.timeouts = timeouts or SessionTimeouts()
        self._on_auth_failure = on_auth_failure
        self._pool: ConnectionPool[Any] | None = None
        self._read_pool: ConnectionPool[Any] | None = None
        self._recent = _RecentUse()
        self._lock = threading.Lock()

    def _current_conninfo(self) -> str:
        """Asked by the pool for every new connection: the secret as it is now (see the module doc)."""
        try:
            return self._conninfo()
        except DatabaseUnavailableError:
            raise
        except Exception as exc:
            if isinstance(exc, ConfigurationError):
                raise
            raise DatabaseUnavailableError(f"cannot read the database credentials: {exc}") from exc

    def _connection_class(self) -> type[psycopg.Connection[Any]]:
        database = self

        class SecretConnection(psycopg.Connection[Any]):
            @classmethod
            def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
                try:
                    return super().connect(conninfo, **kwargs)
                except psycopg.OperationalError as exc:
                    if is_authentication_failure(exc):
                        database.credentials_refused(exc)
                    raise

        return SecretConnection

    def credentials_refused(self, exc: BaseException) -> None:
        """The server refused the password: the secret was rotated since it was read."""
        if self._on_auth_failure is not None:
            self._on_auth_failure()

    def _open_pool(self, *, reader: bool) -> ConnectionPool[Any]:
        try:
            return ConnectionPool(
                self._current_conninfo,
                connection_class=self._connection_class(),
                min_size=0,
                max_size=self._max_size,
                check=self._recent.check,
                configure=_configure(self.timeouts, reader=reader),
                kwargs={"autocommit": True} if reader else None,
                timeout=POOL_TIMEOUT_S,
                open=True,
            )
        except psycopg.Error as exc:
            raise DatabaseUnavailableError(f"cannot open the database pool: {exc}") from exc

    def _get_pool(self) -> ConnectionPool[Any]:
        with self._lock:
            if self._pool is None:
                self._pool = self._open_pool(reader=False)
            return self._pool

    def _get_read_pool(self) -> ConnectionPool[Any]:
        with self._lock:
            if self._read_pool is None:
                self._read_pool = self._open_pool(reader=True)
            return self._read_pool

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection inside one transaction: committed on success, rolled back on any exception."""
        try:
            with self._get_pool().connection() as conn:
                yield conn
                self._recent.worked(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise _unavailable(exc) from exc

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
                raise _unavailable(exc) from exc
            except PoolTimeout as exc:
                raise _unavailable(exc) from exc
        raise AssertionError("unreachable")

    @contextmanager
    def schema_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A plain connection outside the pool, for migrations: the vector type may not exist yet.

        Its session timeouts are the migrator's own (`apply_migrations` sets them)."""
        try:
            with self._connection_class().connect(self._current_conninfo()) as conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise _unavailable(exc) from exc

    def close(self) -> None:
        with self._lock:
            for pool in (self._pool, self._read_pool):
                if pool is not None:
                    pool.close()
            self._pool = self._read_pool = None
