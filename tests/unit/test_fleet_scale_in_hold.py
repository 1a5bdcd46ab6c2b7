"""The scale-in hold (FleetScaleInHoldSeconds): no tier removes a host before low demand has lasted it."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from fleet.config import TierTarget
from fleet.controller import policy_for
from fleet.errors import FleetConfigurationError
from fleet.policy import DEFAULT_POLICIES, TierSignals, TierState, decide, with_scale_in_hold
from fleet_sim import FleetPolicy, simulate
from fleet_sim.report import SCALE_DOWN_HOLD_S, first_scale_in_s, step_for

TARGET = {"name": "gold", "queue_url": "q", "asg": "g", "min": 1, "max": 50}


def test_a_hold_lengthens_both_cool_downs_and_zero_keeps_the_policy() -> None:
    gold = DEFAULT_POLICIES["gold"]
    assert with_scale_in_hold(gold, 0) is gold
    held = with_scale_in_hold(gold, 900)
    assert held.scale_in_cooldown_s == 900 and held.surplus_cooldown_s == 900
    # A hold shorter than a cool-down never shortens it.
    assert with_scale_in_hold(gold, 60).scale_in_cooldown_s == gold.scale_in_cooldown_s
    with pytest.raises(ValueError, match=">= 0"):
        with_scale_in_hold(gold, -1)


def test_the_tier_target_carries_the_hold_to_the_deployed_policy() -> None:
    assert TierTarget.from_json(json.dumps(TARGET)).scale_in_hold_s == 0  # older stacks' targets
    target = TierTarget.from_json(json.dumps({**TARGET, "scale_in_hold_s": 900}))
    assert policy_for(target).surplus_cooldown_s == 900
    for bad in (-5, 3601, "soon"):
        with pytest.raises(FleetConfigurationError, match=r"tier target|scale_in_hold_s"):
            TierTarget.from_json(json.dumps({**TARGET, "scale_in_hold_s": bad}))


@pytest.mark.parametrize("hold_s", [0.0, SCALE_DOWN_HOLD_S])
def test_after_a_step_down_the_first_scale_in_waits_for_the_hold(hold_s: float) -> None:
    step = step_for(1000)
    policies = {"gold": with_scale_in_hold(DEFAULT_POLICIES["gold"], hold_s)}
    result = simulate(step, {"ours": FleetPolicy}, tiers=("gold",), seed=0, tier_policies=policies)["ours"]
    drop_s = step.times_s[2]
    waited = first_scale_in_s(result.tiers["gold"], drop_s)
    if hold_s:
        assert hold_s <= waited < math.inf  # it does scale in, after the hold
    else:
        assert waited < SCALE_DOWN_HOLD_S  # the default trades this objective for GPU-hours


def test_a_surplus_never_waits_longer_than_ordinary_low_demand() -> None:
    # A surplus cool-down set above the ordinary one once kept more hosts for less demand.
    policy = dataclasses.replace(
        DEFAULT_POLICIES["gold"], min_hosts=0, max_hosts=2, scale_in_cooldown_s=60.0, surplus_cooldown_s=61.0
    )
    now = 1_700_000_000.0
    state = TierState(low_demand_since_s=now - 60)
    idle = TierSignals(
        now_s=now, visible=0, in_flight=0, oldest_age_s=0.0, arrival_rps=None, gpu_util=0.0,
        kv_cache_usage=None, latency_p95_s=0.0, metrics_time_s=now, in_service=2, pending=0, draining=0, desired=2,
    )  # fmt: skip
    assert decide(policy, idle, state).action == "scale_in"
