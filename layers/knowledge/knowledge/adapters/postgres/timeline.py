"""The story-events timeline of a world: chronological (oldest first), keyset-paginated.

Chronological order because a timeline is read forwards ("what happened since the last session"); a
cursor pins the exact position (occurred_at, event_id), so events sharing a timestamp are neither
skipped nor repeated across pages, and events added later simply appear on later pages.
"""

from __future__ import annotations

from typing import Any

import psycopg

from knowledge.adapters.postgres.worlds import require_world
from knowledge.queries.models import StoryEvent, Timeline, TimelineCursor, TimelineRequest

__all__ = ["events_timeline"]


def events_timeline(conn: psycopg.Connection[Any], request: TimelineRequest) -> Timeline:
    """Up to `limit` events from `since` (inclusive) or after `cursor`. Raises UnknownWorldError."""
    params: dict[str, Any] = {"world": request.world_id, "limit": request.limit + 1}
    if request.cursor is not None:
        cursor = TimelineCursor.decode(request.cursor)
        position = " AND (occurred_at, event_id) > (%(at)s, %(event)s)"
        params |= {"at": cursor.occurred_at, "event": cursor.event_id}
    elif request.since is not None:
        position = " AND occurred_at >= %(at)s"
        params["at"] = request.since
    else:
        position = ""
    rows = conn.execute(
        "SELECT event_id, occurred_at, kind, summary, concept_ids, payload FROM story_events"
        f" WHERE world_id = %(world)s{position} ORDER BY occurred_at, event_id LIMIT %(limit)s",
        params,
    ).fetchall()
    if not rows:
        require_world(conn, request.world_id)
    more = len(rows) > request.limit
    events = [
        StoryEvent(
            event_id=r[0], occurred_at=r[1], kind=r[2], summary=r[3], concept_ids=list(r[4]), payload=r[5]
        )
        for r in rows[: request.limit]
    ]
    next_cursor = (
        TimelineCursor(occurred_at=events[-1].occurred_at, event_id=events[-1].event_id).encode()
        if more
        else None
    )
    return Timeline(world_id=request.world_id, events=events, next_cursor=next_cursor)
