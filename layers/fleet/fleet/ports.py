"""What the fleet domain needs from AWS, as protocols; `fleet.adapters` implements them with boto3.

The controller tick (fleet.controller) and the Spot replacement (fleet.spot) take these as arguments, so
the simulator and the tests hand in in-memory implementations.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from fleet.config import TierTarget
from fleet.policy import TierSignals, TierState


class SignalReader(Protocol):
    def read(self, tier: TierTarget, now: datetime) -> TierSignals: ...


class StateStore(Protocol):
    def load(self, tier: str) -> TierState: ...
    def save(self, tier: str, state: TierState, audit: dict[str, Any]) -> None: ...


class Actuator(Protocol):
    def scale_out(self, tier: TierTarget, desired: int) -> None: ...
    def scale_in(self, tier: TierTarget, remove: int) -> list[str]: ...
    def replace(self, instance_id: str) -> None:
        """Terminate the instance without lowering the group's desired capacity (a replacement launches)."""
        ...


class HostReplacer(Protocol):
    def group_of(self, instance_id: str) -> tuple[str, str] | None:
        """The instance's Auto Scaling group and lifecycle state; None when it is in no group."""
        ...

    def replace(self, instance_id: str) -> None:
        """Terminate the instance without lowering the group's desired capacity (a replacement launches)."""
        ...
