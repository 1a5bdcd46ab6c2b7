"""Worlds: existence checks shared by the query functions and the story-event store, a world's lineage
(the worlds its reads cover), and writing a world with its parent (migration 0009)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from knowledge.errors import UnknownWorldError, WorldParentError

# A lineage holds at most this many worlds (the migration's trigger enforces it).
MAX_LINEAGE = 8

_CYCLE = "KBW01"
_TOO_DEEP = "KBW02"


@dataclass(frozen=True, slots=True)
class WorldRow:
    world_id: str
    name: str
    parent_world_id: str | None
    lineage: tuple[str, ...]  # the world, its parent, ... (nearest first)


def world_exists(conn: psycopg.Connection[Any], world_id: str) -> bool:
    return conn.execute("SELECT 1 FROM worlds WHERE world_id = %s", (world_id,)).fetchone() is not None


def require_world(conn: psycopg.Connection[Any], world_id: str) -> None:
    """Raise UnknownWorldError unless the knowledge base holds `world_id`."""
    if not world_exists(conn, world_id):
        raise UnknownWorldError(world_id)


def world_lineage(conn: psycopg.Connection[Any], world_id: str) -> list[str]:
    """The worlds a read of `world_id` covers, nearest first: [world_id] for a world without a parent.

    Raises UnknownWorldError."""
    row = conn.execute("SELECT world_lineage(%s)", (world_id,), prepare=True).fetchone()
    if row is None or row[0] is None:
        raise UnknownWorldError(world_id)
    return list(row[0])


def find_world(conn: psycopg.Connection[Any], world_id: str) -> WorldRow | None:
    row = conn.execute(
        "SELECT world_id, name, parent_world_id, world_lineage(world_id) FROM worlds WHERE world_id = %s",
        (world_id,),
    ).fetchone()
    return WorldRow(row[0], row[1], row[2], tuple(row[3])) if row else None


def default_name(world_id: str) -> str:
    return world_id.replace("-", " ").title()


_UNSET: Any = object()


def put_world(
    conn: psycopg.Connection[Any], world_id: str, *, name: str | None = None, parent: str | None = _UNSET
) -> tuple[WorldRow, bool]:
    """Create `world_id` or change it; (the world as stored, whether it was created).

    `name` None keeps the stored name (a new world gets one from its id); `parent` left out keeps the
    stored parent, None removes it. Raises WorldParentError; nothing is written then."""
    if parent is not _UNSET and parent is not None:
        _check_parent(conn, world_id, parent)
    existing = find_world(conn, world_id)
    try:
        with conn.transaction():  # a savepoint: a refused parent leaves the caller's transaction usable
            if existing is None:
                conn.execute(
                    "INSERT INTO worlds (world_id, name, parent_world_id) VALUES (%s, %s, %s)",
                    (world_id, name or default_name(world_id), None if parent is _UNSET else parent),
                )
            else:
                conn.execute(
                    "UPDATE worlds SET name = coalesce(%s, name),"
                    " parent_world_id = CASE WHEN %s THEN parent_world_id ELSE %s END WHERE world_id = %s",
                    (name, parent is _UNSET, None if parent is _UNSET else parent, world_id),
                )
    except psycopg.Error as exc:
        error = _parent_error(world_id, exc)
        if error is None:
            raise
        raise error from exc
    stored = find_world(conn, world_id)
    assert stored is not None  # written just above, in this transaction
    return stored, existing is None


def ensure_world(conn: psycopg.Connection[Any], world_id: str, parent: str | None) -> None:
    """The world a document is stored in: created (with `parent`) when new.

    An existing world keeps its parent; a document naming another parent than the stored one raises
    WorldParentError (reason parent_mismatch) rather than silently changing what the world reads."""
    if parent is None:
        conn.execute(
            "INSERT INTO worlds (world_id, name) VALUES (%s, %s) ON CONFLICT (world_id) DO NOTHING",
            (world_id, default_name(world_id)),
        )
        return
    existing = conn.execute("SELECT parent_world_id FROM worlds WHERE world_id = %s", (world_id,)).fetchone()
    if existing is None:
        put_world(conn, world_id, parent=parent)
    elif existing[0] != parent:
        stored = f"parent {existing[0]!r}" if existing[0] else "no parent"
        raise WorldParentError(
            world_id,
            "parent_mismatch",
            f"front matter says parent {parent!r} but world {world_id!r} already has {stored};"
            f" change a world's parent with `kb world create {world_id} --parent ...` or PUT /worlds/{world_id}",
        )


def _check_parent(conn: psycopg.Connection[Any], world_id: str, parent: str) -> None:
    if parent == world_id:
        raise WorldParentError(world_id, "cycle", f"world {world_id!r} cannot be its own parent")
    if not world_exists(conn, parent):
        raise WorldParentError(
            world_id, "unknown_parent", f"no world {parent!r} to be the parent of {world_id!r}"
        )


def _parent_error(world_id: str, exc: psycopg.Error) -> WorldParentError | None:
    """The trigger's and the foreign key's refusals as WorldParentError; None for anything else."""
    message = exc.diag.message_primary or str(exc)
    if exc.sqlstate == _CYCLE:
        return WorldParentError(world_id, "cycle", message)
    if exc.sqlstate == _TOO_DEEP:
        return WorldParentError(world_id, "too_deep", message)
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):  # the parent was deleted meanwhile
        return WorldParentError(world_id, "unknown_parent", f"the parent of {world_id!r} does not exist")
    return None
