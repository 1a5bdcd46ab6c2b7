"""Erasing one player's personal data from a world (a GDPR/CCPA request; docs/privacy.md).

What a player leaves in the knowledge base is the story events a game service published about them, marked
by the `player_id` attribute, and what those events wrote: concept descriptions (versions) and the concepts
only they introduced. An erasure deletes all of it in one transaction and reports counts. Every erasure is
an audit record (who, when, world, counts); the player id itself is never logged, only a digest of it, so
the audit trail holds no personal data yet a request can be matched to its record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Final

import knowledge.adapters.postgres.erasure as erasure_rows
from knowledge.adapters.postgres.worlds import require_world
from knowledge.story_events.erasure_model import AUDIT_MESSAGE, PlayerErasure, PlayerErasureRequest

__all__ = ["PLAYER_ID_ATTRIBUTE", "PlayerErasure", "PlayerErasureRequest", "erase_player", "player_ref"]

PLAYER_ID_ATTRIBUTE: Final = erasure_rows.PLAYER_ID_ATTRIBUTE


def player_ref(world_id: str, player_id: str) -> str:
    """A stable digest that names the player in audit records without being the id."""
    return hashlib.sha256(f"{world_id}\x00{player_id}".encode()).hexdigest()[:24]


def erase_player(
    transaction: Callable[[], AbstractContextManager[Any]],
    request: PlayerErasureRequest,
    *,
    requested_by: str,
    audit: Callable[[str, dict[str, Any]], None],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> PlayerErasure:
    """Erase the player's events and what they wrote in one transaction; once it committed, audit it.

    Raises UnknownWorldError for a world the knowledge base does not hold. Erasing twice erases nothing
    the second time (and is audited again: the request was made)."""
    with transaction() as conn:
        require_world(conn, request.world_id)
        rows = erasure_rows.erase_player_rows(conn, request.world_id, request.player_id)
    result = PlayerErasure(
        world_id=request.world_id,
        player_ref=player_ref(request.world_id, request.player_id),
        events_erased=rows.events,
        concept_versions_erased=rows.concept_versions,
        concepts_reverted=rows.concepts_reverted,
        concepts_removed=rows.concepts_removed,
        erased_at=now(),
    )
    audit(AUDIT_MESSAGE, {"requested_by": requested_by, **result.model_dump(mode="json")})
    return result
