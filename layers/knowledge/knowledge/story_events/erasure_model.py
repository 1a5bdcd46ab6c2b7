"""The values of a player's erasure (docs/privacy.md): what is asked and what was erased.

A value module (no driver): the knowledge client builds its typed results from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from pydantic import BaseModel, Field

from knowledge.model import WORLD_ID_PATTERN

__all__ = ["AUDIT_MESSAGE", "PLAYER_ID_PATTERN", "PlayerErasure", "PlayerErasureRequest"]

# Opaque ids as game services issue them (UUIDs, account:number...); never an e-mail address, which the
# PII scrubber would store as [EMAIL] and no erasure could find.
PLAYER_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$"
AUDIT_MESSAGE: Final = "player data erased"


class PlayerErasureRequest(BaseModel):
    world_id: Annotated[str, Field(pattern=WORLD_ID_PATTERN, examples=["emberfall"])]
    player_id: Annotated[
        str,
        Field(
            pattern=PLAYER_ID_PATTERN,
            description="The player_id attribute of the player's story events",
            examples=["player-7f3c2a"],
        ),
    ]


class PlayerErasure(BaseModel):
    world_id: str
    player_ref: str = Field(description="Digest of the player id: what the audit record names")
    events_erased: int = Field(ge=0)
    concept_versions_erased: int = Field(ge=0)
    concepts_reverted: int = Field(ge=0, description="Concepts back at their latest remaining description")
    concepts_removed: int = Field(ge=0, description="Concepts only the erased events had introduced")
    erased_at: datetime
