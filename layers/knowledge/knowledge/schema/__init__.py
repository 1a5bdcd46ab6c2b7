"""The database schema: versioned SQL migrations in knowledge/schema/migrations/NNNN_name.sql.

Applied in order, each exactly once (`knowledge.adapters.postgres.migrations.apply_migrations`), at deploy
time by the MigrateDatabase custom resource and locally by the local runtime and `kb`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    folder = resources.files("knowledge.schema") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _FILE_PATTERN.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)
