"""The database schema: versioned SQL migrations in knowledge/schema/migrations/NNNN_name.sql.

Applied in order, each exactly once (`knowledge.adapters.postgres.migrations.apply_migrations`), at deploy
time by the MigrateDatabase custom resource and locally by the local runtime and `kb`.

CloudFormation re-runs a custom resource only when one of its properties changes, so the template's
`DatabaseMigration` carries `MigrationsDigest`, the digest of these files (`migrations_digest()`): a new or
edited migration changes it, and `tests/template` fails until the template says the new value.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

_FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def file_name(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


def available_migrations() -> list[Migration]:
    folder = resources.files("knowledge.schema") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _FILE_PATTERN.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def migrations_digest(migrations: list[Migration] | None = None) -> str:
    """`sha256:<hex>` over every migration's file name and text, in version order."""
    digest = hashlib.sha256()
    for migration in available_migrations() if migrations is None else migrations:
        for part in (migration.file_name, migration.sql):
            encoded = part.encode("utf-8")
            digest.update(len(encoded).to_bytes(8, "big"))
            digest.update(encoded)
    return f"sha256:{digest.hexdigest()}"
