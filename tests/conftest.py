"""Shared fixtures: one embedded PostgreSQL per test session, a fresh database per test that needs one."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Tests")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "tests")

_database_numbers = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def _stop_embedded_postgres() -> Iterator[None]:
    """Tests stop what they start: every embedded PostgreSQL server of the session ends with it."""
    yield
    from local_runtime.postgres import stop_started_servers

    stop_started_servers()


@pytest.fixture(scope="session")
def kb_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kb-home")


@pytest.fixture(scope="session")
def postgres(kb_home: Path) -> Any:
    from local_runtime.postgres import start_embedded_postgres

    return start_embedded_postgres(kb_home / "pg", "postgres")


@pytest.fixture
def database_name(postgres: Any) -> str:
    return f"kb_test_{os.getpid()}_{next(_database_numbers)}"


@pytest.fixture
def database(postgres: Any, database_name: str) -> Iterator[Any]:
    """A migrated, empty database (384-dim vectors) and its Database adapter."""
    from knowledge.adapters.postgres.database import Database
    from knowledge.adapters.postgres.migrations import apply_migrations
    from local_runtime.postgres import start_embedded_postgres

    start_embedded_postgres(postgres.data_dir, database_name)
    db = Database(lambda: postgres.conninfo(database_name))
    with db.schema_connection() as conn:
        apply_migrations(
            conn, embedding_model="sentence-transformers/all-MiniLM-L6-v2", embedding_dimension=384
        )
    yield db
    db.close()
