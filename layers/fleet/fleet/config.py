"""Fleet function settings, read once at cold start: names from the environment (set in template.yaml),
the tiers from the stack's tier-target parameters (one `<Tier>TierTarget` each, under FLEET_TIERS_PATH)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fleet.errors import FleetConfigurationError

METRICS_NAMESPACE = "AiGame/Fleet"
MAX_SCALE_IN_HOLD_S = 3600.0  # the template parameter's MaxValue


@dataclass(frozen=True, slots=True)
class TierTarget:
    name: str
    queue_url: str
    asg_name: str
    min_hosts: int
    max_hosts: int
    # Low demand held this long before any scale-in (the FleetScaleInHoldSeconds parameter); 0: the policy's own.
    scale_in_hold_s: float = 0.0

    @classmethod
    def from_json(cls, text: str) -> TierTarget:
        """One tier-target parameter's value: {"name", "queue_url", "asg", "min", "max"} and optionally
        "scale_in_hold_s"."""
        try:
            spec = json.loads(text)
            target = cls(
                name=str(spec["name"]),
                queue_url=str(spec["queue_url"]),
                asg_name=str(spec["asg"]),
                min_hosts=int(spec["min"]),
                max_hosts=int(spec["max"]),
                scale_in_hold_s=float(spec.get("scale_in_hold_s", 0)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FleetConfigurationError(f"not a valid tier target {text[:200]!r}: {exc}") from exc
        if not 0 <= target.scale_in_hold_s <= MAX_SCALE_IN_HOLD_S:
            raise FleetConfigurationError(
                f"tier {target.name}: scale_in_hold_s {target.scale_in_hold_s:g} is outside 0..{MAX_SCALE_IN_HOLD_S:g}"
            )
        return target


@dataclass(frozen=True, slots=True)
class FleetSettings:
    tiers: tuple[TierTarget, ...]
    state_table: str
    hosts_table: str
    dry_run: bool

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        read_tier_targets: Callable[[str], Mapping[str, str]],
    ) -> FleetSettings:
        """`read_tier_targets(path)` returns the parameters under the path, by name (the composition root
        passes the SSM adapter); tiers are ordered by name."""
        env = os.environ if env is None else env
        path = env.get("FLEET_TIERS_PATH", "")
        if not path:
            raise FleetConfigurationError("FLEET_TIERS_PATH is not set: the function knows no tiers")
        targets = read_tier_targets(path)
        if not targets:
            raise FleetConfigurationError(f"no tier targets under {path}")
        return cls(
            tiers=tuple(TierTarget.from_json(targets[name]) for name in sorted(targets)),
            state_table=env.get("CONTROLLER_STATE_TABLE", ""),
            hosts_table=env.get("HOSTS_TABLE", ""),
            dry_run=env.get("DRY_RUN", "false").lower() == "true",
        )
