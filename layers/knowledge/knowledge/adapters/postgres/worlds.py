"""World existence checks shared by the query functions and the story-event store."""

from __future__ import annotations

from typing import Any

import psycopg

from knowledge.errors import UnknownWorldError


def world_exists(conn: psycopg.Connection[Any], world_id: str) -> bool:
    return conn.execute("SELECT 1 FROM worlds WHERE world_id = %s", (world_id,)).fetchone() is not None


def require_world(conn: psycopg.Connection[Any], world_id: str) -> None:
    """Raise UnknownWorldError unless the knowledge base holds `world_id`."""
    if not world_exists(conn, world_id):
        raise UnknownWorldError(world_id)
