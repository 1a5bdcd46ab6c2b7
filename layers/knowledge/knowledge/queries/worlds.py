"""Creating a world and setting its parent (docs/worlds.md): `PUT /worlds/{world_id}` and `kb world create`.

A world with a parent reads its ancestors' documents and concepts as well as its own (nearer worlds
shadow farther ones); what is written to it stays in it. The parent must exist, must not be the world or
one of its descendants, and a lineage holds at most MAX_LINEAGE worlds: otherwise WorldParentError, and
nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

import knowledge.adapters.postgres.worlds as world_rows
from knowledge.queries.models import Text200, WorldId

__all__ = ["MAX_LINEAGE", "World", "WorldSettings", "put_world"]

MAX_LINEAGE = world_rows.MAX_LINEAGE


class WorldSettings(BaseModel):
    """The body of PUT /worlds/{world_id}: each field left out keeps what is stored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Text200 | None = Field(default=None, description="Display name (a new world: from its id)")
    parent: WorldId | None = Field(
        default=None,
        description="The world this one diverges from; null: none. Left out: unchanged (a new world: none)",
    )


class World(BaseModel):
    model_config = ConfigDict(frozen=True)

    world_id: str
    name: str
    parent: str | None = Field(description="The parent world, if any")
    lineage: list[str] = Field(
        description=f"The worlds its reads cover, nearest first: itself, its parent, ... (at most {MAX_LINEAGE})"
    )


def put_world(
    transaction: Callable[[], AbstractContextManager[Any]], world_id: str, settings: WorldSettings
) -> tuple[World, bool]:
    """Create or change `world_id`: (the world as stored, whether it was created). Raises WorldParentError."""
    changes: dict[str, Any] = {"name": settings.name}
    if "parent" in settings.model_fields_set:
        changes["parent"] = settings.parent
    with transaction() as conn:
        row, created = world_rows.put_world(conn, world_id, **changes)
    world = World(world_id=row.world_id, name=row.name, parent=row.parent_world_id, lineage=list(row.lineage))
    return world, created
