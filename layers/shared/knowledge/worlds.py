"""World existence checks shared by the query functions."""

from __future__ import annotations

from typing import Any

import psycopg

from knowledge.errors import UnknownWorldError


def require_world(conn: psycopg.Connection[Any], world_id: str) -> None:
    """Raise UnknownWorldError unless the knowledge base holds `world_id`."""
    if conn.execute("SELECT 1 FROM worlds WHERE world_id = %s", (world_id,)).fetchone() is None:
        raise UnknownWorldError(world_id)
