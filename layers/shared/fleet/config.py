"""Fleet controller settings, read once from the environment (names set in template.yaml)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from fleet.errors import FleetConfigurationError

METRICS_NAMESPACE = "AiGame/Fleet"


@dataclass(frozen=True, slots=True)
class TierTarget:
    name: str
    queue_url: str
    asg_name: str
    min_hosts: int
    max_hosts: int


@dataclass(frozen=True, slots=True)
class FleetSettings:
    tiers: tuple[TierTarget, ...]
    state_table: str
    hosts_table: str
    dry_run: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FleetSettings:
        env = os.environ if env is None else env
        try:
            raw = json.loads(env.get("FLEET_TIERS", "{}"))
            tiers = tuple(
                TierTarget(
                    name=name,
                    queue_url=spec["queue_url"],
                    asg_name=spec["asg"],
                    min_hosts=int(spec["min"]),
                    max_hosts=int(spec["max"]),
                )
                for name, spec in raw.items()
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise FleetConfigurationError(f"FLEET_TIERS is not a valid tier map: {exc}") from exc
        return cls(
            tiers=tiers,
            state_table=env.get("CONTROLLER_STATE_TABLE", ""),
            hosts_table=env.get("HOSTS_TABLE", ""),
            dry_run=env.get("DRY_RUN", "false").lower() == "true",
        )
