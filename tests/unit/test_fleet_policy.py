from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.policy import DEFAULT_POLICIES, Decision, TierPolicy, TierSignals, TierState, decide

# The rule tests pin their own tier instead of the defaults, so the arithmetic in their comments does not
# move with the throughput estimates. No planning headroom (target_load 1, no sigma band) and a KV target of
# 0.75: a host carries exactly `host_throughput_rps`, and the saturation need is ceil(n x kv / 0.75).
GOLD = TierPolicy(
    name="gold",
    min_hosts=1,
    max_hosts=50,
    host_throughput_rps=4.0,
    target_load=1.0,
    arrival_sigmas=0.0,
    trend_weight=0.3,
    target_wait_s=10.0,
    gpu_busy_util=0.9,
    kv_cache_target=0.75,
    latency_p95_slo_s=1.0,
    panic_latency_factor=2.0,
    panic_backlog_factor=3.0,
    panic_wait_factor=3.0,
    panic_hold_s=300.0,
    scale_in_cooldown_s=900.0,
    scale_in_max_step=0.1,
    scale_in_interval_s=180.0,
    scale_out_max_step=4,
    stale_after_s=180.0,
    boot_time_s=300.0,
    low_demand_ratio=0.6,
    surplus_ratio=0.0,  # off: the surplus rule has its own tests (test_fleet_capacity)
)
T0 = 1_700_000_000.0

# A quiet gold tier: 4 ready hosts, GPUs busy (duty cycle 0.95) with the KV cache half full: the saturation
# need is 4 x 0.5 / 0.75 = 2.67 -> 3 hosts, ratio 0.67: not low.
QUIET = TierSignals(
    now_s=T0,
    visible=0,
    in_flight=0,
    oldest_age_s=0.0,
    arrival_rps=None,
    gpu_util=0.95,
    kv_cache_usage=0.5,
    latency_p95_s=0.5,
    metrics_time_s=T0 - 30,
    in_service=4,
    pending=0,
    draining=0,
    desired=4,
)


def sig(**changes: Any) -> TierSignals:
    """QUIET with changes; a new now_s moves metrics_time_s along unless it is given too."""
    if "now_s" in changes and "metrics_time_s" not in changes:
        changes["metrics_time_s"] = changes["now_s"] - 30
    return dataclasses.replace(QUIET, **changes)


def idle(hosts: int, **changes: Any) -> TierSignals:
    """A fleet of `hosts` ready hosts with an empty queue and GPUs mostly idle (5 %): low demand."""
    return sig(**{"in_service": hosts, "desired": hosts, "gpu_util": 0.05, "kv_cache_usage": 0.05, **changes})


def need(decision: Decision) -> float:
    """The demand in hosts behind a decision (before rounding up)."""
    return decision.demand_ratio * max(decision.capacity_hosts, 1)


def run_ticks(
    policy: TierPolicy, make: Any, start: float, ticks: int, state: TierState, step_s: float = 60.0
) -> list[Decision]:
    """Decide every `step_s` seconds, feeding each decision's desired count and state into the next."""
    decisions = []
    desired: int | None = None
    for i in range(ticks):
        signals: TierSignals = make(start + i * step_s)
        if desired is not None:
            signals = dataclasses.replace(signals, desired=desired, in_service=desired)
        decision = decide(policy, signals, state)
        decisions.append(decision)
        state, desired = decision.new_state, decision.desired
    return decisions


def arrivals_over_ticks(policy: TierPolicy, rates: list[float]) -> list[Decision]:
    """One decision a minute with these arrival rates, each from a datapoint 30 s old, state carried.

    GPU metrics are left out so the queue need alone is the demand."""
    state = TierState()
    decisions = []
    for i, rate in enumerate(rates):
        decision = decide(policy, sig(now_s=T0 + 60 * i, arrival_rps=rate, gpu_util=None), state)
        decisions.append(decision)
        state = decision.new_state
    return decisions


def has_reason(decision: Decision, text: str) -> bool:
    return any(text in reason for reason in decision.reasons)


# --- intermediates and steady state -----------------------------------------------------------------------


def test_quiet_tier_holds_and_records_intermediates() -> None:
    d = decide(GOLD, sig(visible=30, in_flight=10, pending=1, desired=5), TierState())
    assert d.action == "hold" and d.desired == 5
    assert d.backlog == 40 and d.capacity_hosts == 5
    assert d.backlog_per_ready_host == 10.0
    # KV saturation: ceil(4 x 0.5 / 0.75) = 3; queue: 40 / (4 x 300) = 0.03 -> 1.
    assert d.required_hosts == 3
    assert d.demand_ratio == pytest.approx((4 * 0.5 / 0.75) / 5)
    assert d.metrics_fresh and not d.panic and not d.capacity_at_max
    assert d.reasons and all(isinstance(r, str) and r for r in d.reasons)


def test_required_sums_arrivals_and_backlog_drain() -> None:
    # arrivals 20 req/s / 4 = 5 hosts; backlog 1200 drained over the 300 s boot window: 1200 / (4 x 300)
    # = 1 host; together 6. GPUs at 30 % are not busy, so the KV cache asks for nothing.
    d = decide(
        GOLD,
        sig(arrival_rps=20.0, visible=1000, in_flight=200, in_service=10, desired=10, gpu_util=0.3),
        TierState(),
    )
    assert d.required_hosts == 6
    assert d.action == "hold"


def test_float_rounding_does_not_add_a_host() -> None:
    # 0.1 x 30 rounds to 3.0000000000000004; that is still 3 hosts.
    policy = dataclasses.replace(GOLD, host_throughput_rps=0.1, target_wait_s=1.0)
    d = decide(policy, sig(arrival_rps=0.3, gpu_util=None), TierState())
    assert d.required_hosts == 3


# --- rule 1: headroom and trend ---------------------------------------------------------------------------


def test_target_load_plans_hosts_below_their_throughput() -> None:
    # 32 req/s at 4 req/s per host is 8 hosts; planned at 80 % of it (3.2 req/s), 10.
    assert decide(GOLD, sig(arrival_rps=32.0, gpu_util=None), TierState()).required_hosts == 8
    loaded = dataclasses.replace(GOLD, target_load=0.8)
    d = decide(loaded, sig(arrival_rps=32.0, gpu_util=None), TierState())
    assert d.required_hosts == 10 and need(d) == pytest.approx(10.0)
    assert has_reason(d, "at 3.2 req/s/host")


def test_sigma_band_gives_a_small_rate_relatively_more_headroom() -> None:
    policy = dataclasses.replace(GOLD, arrival_sigmas=2.0)

    def planned(rate: float) -> float:
        return (
            need(decide(policy, sig(arrival_rps=rate, gpu_util=None), TierState())) * GOLD.host_throughput_rps
        )

    # rate + 2 x sqrt(rate / 60): 0.6 + 0.2 (a third more) and 600 + 6.32 (about 1 % more).
    assert planned(0.6) == pytest.approx(0.8)
    assert planned(600.0) == pytest.approx(600.0 + 2 * math.sqrt(10.0))
    assert planned(0.6) / 0.6 > 1.3 > 1.02 > planned(600.0) / 600.0
    # No arrivals, no band; unknown arrivals count as none.
    assert planned(0.0) == 0.0
    assert decide(policy, sig(arrival_rps=None, gpu_util=None), TierState()).required_hosts == 0


def test_steady_ramp_plans_for_the_growth_during_a_boot() -> None:
    # +1 req/s every minute: a slope of 1/60 req/s per second, extrapolated over the 300 s boot: +5 req/s.
    # At 25 req/s: 30 / 4 = 7.5 -> 8 hosts, where 25 alone needs 7.
    decisions = arrivals_over_ticks(GOLD, [20.0, 21.0, 22.0, 23.0, 24.0, 25.0])
    assert decisions[0].new_state.arrival_trend is None  # one datapoint is no slope
    last = decisions[-1]
    assert last.new_state.arrival_trend == pytest.approx(1 / 60)
    assert need(last) == pytest.approx((25.0 + 5.0) / 4)
    assert last.required_hosts == 8
    assert decide(GOLD, sig(arrival_rps=25.0, gpu_util=None), TierState()).required_hosts == 7


def test_flat_rate_adds_no_growth_beyond_the_sigma_band() -> None:
    policy = dataclasses.replace(GOLD, arrival_sigmas=2.0)
    decisions = arrivals_over_ticks(policy, [30.0] * 5)
    band = 2 * math.sqrt(30.0 / 60)
    assert all(need(d) == pytest.approx((30.0 + band) / 4) for d in decisions)
    assert decisions[-1].new_state.arrival_trend == 0.0


def test_falling_rate_adds_no_growth_and_keeps_the_band() -> None:
    policy = dataclasses.replace(GOLD, arrival_sigmas=2.0)
    last = arrivals_over_ticks(policy, [40.0, 36.0, 32.0, 28.0])[-1]
    assert last.new_state.arrival_trend == pytest.approx(-4 / 60)
    assert need(last) == pytest.approx((28.0 + 2 * math.sqrt(28.0 / 60)) / 4)


def test_a_step_is_not_extrapolated_as_a_trend() -> None:
    # 10 -> 100 req/s in one minute is a step: no trend (one jump carries the whole rise), so the plan is
    # the new rate itself, 100 / 4 = 25 hosts, not a rise extrapolated over the boot.
    decisions = arrivals_over_ticks(GOLD, [10.0, 10.0, 10.0, 100.0])
    jump = decisions[-1]
    assert jump.new_state.arrival_trend == 0.0
    assert need(jump) == pytest.approx(100.0 / 4) and jump.required_hosts == 25
    # A steep steady ramp is a trend, its growth over a boot capped at max_growth (0.5) of the rate.
    ramp = arrivals_over_ticks(GOLD, [1.0, 61.0, 121.0])[-1]
    assert ramp.new_state.arrival_trend == pytest.approx(1.0)
    assert need(ramp) == pytest.approx(1.5 * 121.0 / 4)
    doubling = dataclasses.replace(GOLD, max_growth=1.0)
    assert need(arrivals_over_ticks(doubling, [1.0, 61.0, 121.0])[-1]) == pytest.approx(2.0 * 121.0 / 4)
    # Two points are no trend yet.
    assert arrivals_over_ticks(GOLD, [10.0, 20.0])[-1].new_state.arrival_trend is None


def test_trend_needs_the_datapoint_time_to_advance() -> None:
    first = decide(GOLD, sig(arrival_rps=20.0, gpu_util=None), TierState())
    # A tick later, the same datapoint time (a late CloudWatch datapoint): no slope, no growth.
    same_time = sig(now_s=T0 + 60, metrics_time_s=QUIET.metrics_time_s, arrival_rps=30.0, gpu_util=None)
    d = decide(GOLD, same_time, first.new_state)
    assert d.new_state.arrival_trend is None
    assert need(d) == pytest.approx(30.0 / 4) and d.required_hosts == 8
    # No datapoint time at all: the arrivals still count, the remembered datapoint is kept.
    d = decide(
        GOLD, sig(now_s=T0 + 60, metrics_time_s=None, arrival_rps=30.0, gpu_util=None), first.new_state
    )
    assert d.new_state.arrival_trend is None and need(d) == pytest.approx(30.0 / 4)
    assert (d.new_state.arrival_rps, d.new_state.arrival_time_s) == (20.0, QUIET.metrics_time_s)


def test_growth_horizon_is_one_boot_whatever_the_datapoint_age() -> None:
    # A steady rise of 1 req/s a minute over the 300 s boot (+5 req/s); the datapoint's age does not
    # stretch it, so the same datapoint read again a tick later plans the same arrivals.
    def planned(age_s: float) -> float:
        at = T0 - age_s
        state = TierState(
            arrival_rps=20.0,
            arrival_time_s=at,
            arrival_history=((at - 120, 18.0), (at - 60, 19.0), (at, 20.0)),
        )
        return need(decide(GOLD, sig(arrival_rps=20.0, gpu_util=None, metrics_time_s=at), state)) * 4

    assert planned(30.0) == pytest.approx(20.0 + 300 / 60)
    assert planned(90.0) == pytest.approx(20.0 + 300 / 60)


def test_new_state_carries_the_arrival_datapoints_and_trend() -> None:
    first = decide(GOLD, sig(arrival_rps=12.0), TierState(panic_until_s=T0 - 1))
    assert (first.new_state.arrival_rps, first.new_state.arrival_time_s) == (12.0, T0 - 30)
    assert first.new_state.arrival_history == ((T0 - 30, 12.0),)
    assert first.new_state.arrival_trend is None
    second = decide(GOLD, sig(now_s=T0 + 60, arrival_rps=18.0), first.new_state)
    assert (second.new_state.arrival_rps, second.new_state.arrival_time_s) == (18.0, T0 + 30)
    assert second.new_state.arrival_trend is None  # two datapoints are no trend yet
    third = decide(GOLD, sig(now_s=T0 + 120, arrival_rps=18.0), second.new_state)
    assert third.new_state.arrival_trend == 0.0  # 12, 18, 18: one jump, not a steady rise
    # Unknown arrivals leave the remembered datapoints and trend as they were.
    unknown = decide(GOLD, sig(now_s=T0 + 180, arrival_rps=None), third.new_state)
    assert unknown.new_state.arrival_rps == 18.0 and unknown.new_state.arrival_time_s == T0 + 90
    assert unknown.new_state.arrival_history == third.new_state.arrival_history
    assert unknown.new_state.arrival_trend == third.new_state.arrival_trend
    assert unknown.new_state.panic_until_s == T0 - 1
    # At most five datapoints are kept.
    state = third.new_state
    for minute in range(3, 10):
        state = decide(GOLD, sig(now_s=T0 + 60 * minute, arrival_rps=18.0), state).new_state
    assert len(state.arrival_history) == 5


def test_default_gold_plans_headroom_over_its_throughput() -> None:
    gold = DEFAULT_POLICIES["gold"]
    # 73.6 req/s is 9.2 hosts at 8 req/s; at the 92 % target load plus 2 sigmas of a minute's count
    # (2 x sqrt(73.6 / 60) = 2.2 req/s): 75.8 / 7.36 = 10.3 -> 11.
    d = decide(gold, sig(arrival_rps=73.6, gpu_util=None, in_service=10, desired=10), TierState())
    assert need(d) == pytest.approx((73.6 + 2 * math.sqrt(73.6 / 60)) / (8.0 * 0.92))
    assert d.required_hosts == 11 and d.action == "scale_out"


# --- scale out --------------------------------------------------------------------------------------------


def test_scale_out_reaches_requirement_in_one_tick() -> None:
    # arrivals 40 / 4 = 10 hosts + backlog 1200 / (4 x 300) = 1 host = 11; no panic (1200 / 40 = 30 <= 3 x 10).
    d = decide(
        GOLD, sig(in_service=10, desired=10, arrival_rps=40.0, visible=1200, oldest_age_s=5.0), TierState()
    )
    assert d.action == "scale_out" and d.desired == 11 == d.required_hosts
    assert not d.panic
    assert d.new_state.last_scale_out_s == T0
    assert d.new_state.low_demand_since_s is None


def test_scale_out_step_is_bounded_outside_panic() -> None:
    # 80 req/s needs 20 hosts; from 4 one tick may reach 2 x 4 + 4 = 12.
    d = decide(GOLD, sig(arrival_rps=80.0), TierState())
    assert not d.panic
    assert d.action == "scale_out" and d.desired == 12 and d.required_hosts == 20
    assert has_reason(d, "step bound")


def test_unbounded_step_policy_goes_straight_to_requirement() -> None:
    policy = dataclasses.replace(GOLD, scale_out_max_step=None)
    assert decide(policy, sig(arrival_rps=80.0), TierState()).desired == 20


def test_booting_hosts_are_not_added_again() -> None:
    # Need 11 hosts; 10 ready + 1 booting already give 11.
    booting = sig(in_service=10, pending=1, desired=11, arrival_rps=40.0, visible=1200, oldest_age_s=5.0)
    d = decide(GOLD, booting, TierState())
    assert d.action == "hold" and d.desired == 11 and d.capacity_hosts == 11
    assert has_reason(d, "booting")
    # Two more hosts of need (8 req/s more) add exactly two.
    d = decide(GOLD, dataclasses.replace(booting, arrival_rps=48.0), TierState())
    assert d.action == "scale_out" and d.desired == 13


def test_latency_over_slo_adds_one_host_and_counts_a_booting_one() -> None:
    d = decide(GOLD, sig(latency_p95_s=1.3), TierState())
    assert d.action == "scale_out" and d.desired == 5 and not d.panic
    assert has_reason(d, "P95 latency 1.30 s > SLO 1 s")
    # The extra host is booting: the breach adds nothing more.
    d = decide(GOLD, sig(latency_p95_s=1.3, pending=1, desired=5), TierState())
    assert d.action == "hold" and d.desired == 5


# --- rule 2: GPU saturation -------------------------------------------------------------------------------


def test_busy_gpus_with_kv_over_target_scale_out_proportionally() -> None:
    d = decide(GOLD, sig(in_service=8, desired=8, kv_cache_usage=0.9), TierState())
    assert d.action == "scale_out" and d.desired == d.required_hosts == 10  # ceil(8 x 0.9 / 0.75) = ceil(9.6)
    assert has_reason(d, "GPUs busy (0.95) with KV cache 0.90 > target 0.75 on 8 ready hosts -> 10 hosts")
    # gpu_busy_util itself counts as busy.
    assert (
        decide(GOLD, sig(in_service=8, desired=8, gpu_util=0.9, kv_cache_usage=0.9), TierState()).desired
        == 10
    )


def test_full_duty_cycle_with_a_light_kv_cache_adds_no_host() -> None:
    # NVML reads ~100 % at modest load; 8 hosts at KV 0.3 need ceil(8 x 0.3 / 0.75) = 4, fewer than are up.
    d = decide(GOLD, sig(in_service=8, desired=8, gpu_util=1.0, kv_cache_usage=0.3), TierState())
    assert d.action == "hold" and d.desired == 8 and d.required_hosts == 4
    assert not has_reason(d, "GPUs busy")


@pytest.mark.parametrize(
    "changes",
    [
        {"gpu_util": 0.85},  # below gpu_busy_util: a full KV cache on idle-ish GPUs is no saturation
        {"kv_cache_usage": None},
        {"kv_cache_usage": float("nan")},
        {"gpu_util": None},
    ],
)
def test_kv_needs_busy_gpus_and_a_reading(changes: dict[str, Any]) -> None:
    d = decide(GOLD, sig(**{"in_service": 8, "desired": 8, "kv_cache_usage": 0.95, **changes}), TierState())
    assert d.action == "hold" and d.desired == 8 and d.required_hosts == 0
    assert not has_reason(d, "GPUs busy")


def test_kv_at_target_is_a_floor_but_no_scale_out_signal() -> None:
    # 8 busy hosts at exactly the target need 8: nothing to add, nothing to remove.
    d = decide(GOLD, sig(in_service=8, pending=2, desired=10, kv_cache_usage=0.75), TierState())
    assert d.required_hosts == 8 and d.action == "hold" and not has_reason(d, "GPUs busy")


def test_kv_saturation_is_relative_to_the_kv_target() -> None:
    policy = dataclasses.replace(GOLD, kv_cache_target=0.9)
    d = decide(policy, sig(in_service=8, desired=8, kv_cache_usage=0.9), TierState())
    assert d.action == "hold" and d.required_hosts == 8
    d = decide(policy, sig(in_service=9, desired=9, kv_cache_usage=1.0), TierState())
    assert d.action == "scale_out" and d.desired == 10  # ceil(9 x 1.0 / 0.9)


# --- panic ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "trigger"),
    [
        ({"latency_p95_s": 2.5}, "P95 2.50 s > 2 x SLO"),
        ({"oldest_age_s": 45.0}, "oldest message 45 s > 3 x wait objective 10 s"),
        ({"visible": 600}, "backlog needs 15.00 hosts within the wait objective > 3 x capacity 4"),
    ],
)
def test_panic_scales_out_at_once_without_step_bound(changes: dict[str, Any], trigger: str) -> None:
    d = decide(GOLD, sig(arrival_rps=80.0, **changes), TierState())
    assert d.panic and has_reason(d, trigger)
    assert d.desired == d.required_hosts > 12  # beyond the 2 x 4 + 4 step bound
    assert d.new_state.panic_until_s == T0 + GOLD.panic_hold_s


def test_panic_hold_blocks_scale_in_until_it_expires() -> None:
    long_low = TierState(low_demand_since_s=T0 - 3600)
    d = decide(GOLD, idle(20), dataclasses.replace(long_low, panic_until_s=T0 + 100))
    assert d.panic and d.action == "hold" and d.desired == 20
    assert has_reason(d, "panic hold")
    d = decide(GOLD, idle(20, now_s=T0 + 100), dataclasses.replace(long_low, panic_until_s=T0 + 100))
    assert not d.panic and d.action == "scale_in"


def test_retrigger_extends_panic_hold() -> None:
    d = decide(GOLD, sig(oldest_age_s=60.0), TierState(panic_until_s=T0 + 10))
    assert d.new_state.panic_until_s == T0 + GOLD.panic_hold_s


# --- scale in ---------------------------------------------------------------------------------------------


def test_scale_in_only_after_fifteen_minutes_of_low_demand() -> None:
    decisions = run_ticks(GOLD, lambda t: idle(20, now_s=t), T0, 17, TierState())
    actions = [d.action for d in decisions]
    assert actions[:15] == ["hold"] * 15  # minutes 0..14
    assert actions[15] == "scale_in"  # 900 s after the first low tick
    assert decisions[0].new_state.low_demand_since_s == T0
    assert has_reason(decisions[14], "low demand for 840 s of the 900 s cool-down")


def test_a_busy_tick_restarts_the_cool_down() -> None:
    state = TierState(low_demand_since_s=T0 - 800)
    busy = decide(
        GOLD, sig(in_service=20, desired=20, kv_cache_usage=0.6), state
    )  # 20 x 0.6 / 0.75: ratio 0.8
    assert busy.action == "hold" and busy.new_state.low_demand_since_s is None
    d = decide(GOLD, idle(20, now_s=T0 + 200), busy.new_state)
    assert d.action == "hold" and d.new_state.low_demand_since_s == T0 + 200


def test_scale_in_steps_are_bounded_and_spaced() -> None:
    state = TierState(low_demand_since_s=T0 - 1000)
    first = decide(GOLD, idle(50), state)
    assert first.action == "scale_in" and first.desired == 45  # 10 % of 50
    assert first.new_state.last_scale_in_s == T0
    too_soon = decide(GOLD, idle(45, now_s=T0 + 60), first.new_state)
    assert too_soon.action == "hold" and has_reason(too_soon, "scaled in 60 s ago")
    second = decide(GOLD, idle(45, now_s=T0 + 180), first.new_state)
    assert second.action == "scale_in" and second.desired == 40  # ceil(4.5)
    small = decide(GOLD, idle(3), state)
    assert small.desired == 2  # at least one host


def test_scale_in_never_goes_below_required_or_min() -> None:
    state = TierState(low_demand_since_s=T0 - 1000)
    policy = dataclasses.replace(GOLD, scale_in_max_step=0.5)
    # 10 busy hosts at 40 % KV cache need ceil(10 x 0.4 / 0.75) = 6: ratio 0.53 is low, but not below 6.
    d = decide(policy, idle(10, gpu_util=0.95, kv_cache_usage=0.4), state)
    assert d.action == "scale_in" and d.desired == 6 == d.required_hosts
    d = decide(policy, idle(2), state)
    assert d.desired == 1  # min_hosts
    d = decide(policy, idle(1), state)
    assert d.action == "hold" and d.desired == 1


def test_no_scale_in_with_backlog() -> None:
    state = TierState(low_demand_since_s=T0 - 1000)
    d = decide(GOLD, idle(20, visible=1), state)
    assert d.action == "hold" and d.desired == 20
    assert has_reason(d, "1 messages waiting")
    # In-flight work alone does not block: leaving hosts drain their own first.
    assert decide(GOLD, idle(20, in_flight=3), state).action == "scale_in"


@pytest.mark.parametrize("changes", [{"latency_p95_s": 1.3}, {"gpu_util": 0.95, "kv_cache_usage": 0.8}])
def test_no_scale_in_under_a_scale_out_signal_even_if_booting_hosts_cover_it(changes: dict[str, Any]) -> None:
    # 2 ready + 8 booting: the breach needs only 3 hosts (ratio 0.3), yet nothing may be removed.
    covered = idle(2, pending=8, desired=10, **changes)
    d = decide(GOLD, covered, TierState(low_demand_since_s=T0 - 1000))
    assert d.action == "hold" and d.desired == 10


def test_the_same_datapoint_a_tick_later_does_not_undo_a_scale_in() -> None:
    # A rising trend (0.0113 req/s per second) over the 300 s boot: 16 + 3.39 = 19.39 req/s, 4.85 hosts
    # (ratio 0.48, low): 10 -> 5. Re-read 59 s later (CloudWatch has no newer datapoint): the same plan,
    # so the scale-in stands.
    policy = dataclasses.replace(GOLD, scale_in_max_step=0.5)
    at = T0 - 30
    state = TierState(low_demand_since_s=T0 - 1000, arrival_rps=16.0, arrival_time_s=at, arrival_trend=0.0113)
    signals = idle(10, arrival_rps=16.0, metrics_time_s=at)
    first = decide(policy, signals, state)
    assert first.action == "scale_in" and first.desired == 5
    again = dataclasses.replace(signals, desired=first.desired, in_service=first.desired, now_s=T0 + 59)
    assert decide(policy, again, first.new_state).action == "hold"


def test_no_scale_in_soon_after_a_scale_out() -> None:
    state = TierState(low_demand_since_s=T0 - 1000, last_scale_out_s=T0 - 300)
    d = decide(GOLD, idle(20), state)
    assert d.action == "hold" and has_reason(d, "scaled out 300 s ago")


# --- missing and stale metrics ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"metrics_time_s": T0 - 400}, "stale (newest datapoint 400 s old > 180 s)"),
        ({"metrics_time_s": None}, "missing (no datapoint time)"),
        ({"gpu_util": None}, "GPU utilisation missing"),
        ({"latency_p95_s": None}, "P95 latency missing"),
        ({"latency_p95_s": float("nan")}, "P95 latency missing"),
    ],
)
def test_missing_or_stale_metrics_hold_scale_in(changes: dict[str, Any], why: str) -> None:
    d = decide(GOLD, idle(20, **changes), TierState(low_demand_since_s=T0 - 1000))
    assert d.action == "hold" and d.desired == 20 and not d.metrics_fresh
    assert has_reason(d, why) and has_reason(d, "no scale-in")
    assert d.new_state.low_demand_since_s is None  # low demand is not proven


def test_stale_metrics_still_scale_out_on_the_queue_but_are_ignored() -> None:
    stale = {"metrics_time_s": T0 - 400}
    d = decide(GOLD, sig(visible=6000, in_service=4, desired=4, **stale), TierState())
    assert d.action == "scale_out" and d.desired == d.required_hosts == 5  # 6000 / (4 x 300)
    assert has_reason(d, "scale-out follows the queue only")
    # A stale latency spike and a stale full KV cache drive nothing.
    d = decide(GOLD, sig(latency_p95_s=5.0, gpu_util=1.0, kv_cache_usage=1.0, **stale), TierState())
    assert d.action == "hold" and not d.panic


# --- bounds -----------------------------------------------------------------------------------------------


def test_capacity_at_max() -> None:
    d = decide(GOLD, sig(in_service=40, desired=40, arrival_rps=1000.0), TierState())
    assert d.desired == 50 and d.required_hosts == 250 and d.capacity_at_max
    assert any(r.startswith("capacity at max: required 250 > max 50") for r in d.reasons)


def test_current_outside_bounds_is_brought_inside() -> None:
    assert decide(GOLD, sig(in_service=0, desired=0, gpu_util=0.0), TierState()).desired == 1
    d = decide(GOLD, sig(in_service=60, desired=60, visible=10), TierState())
    assert d.desired == 50 and d.action == "scale_in"


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="max_hosts"):
        dataclasses.replace(GOLD, min_hosts=5, max_hosts=4)
    with pytest.raises(ValueError, match="host_throughput_rps"):
        dataclasses.replace(GOLD, host_throughput_rps=0.0)
    with pytest.raises(ValueError, match="visible"):
        sig(visible=-1)


@pytest.mark.parametrize(
    ("field", "bad", "good"),
    [
        ("target_load", [0.0, -0.5, 1.01], [0.01, 1.0]),
        ("arrival_sigmas", [-0.1], [0.0, 5.0]),
        ("trend_weight", [0.0, -0.1, 1.5], [0.01, 1.0]),
        ("max_growth", [-0.1], [0.0, 0.5, 2.0]),
        ("gpu_busy_util", [-0.01, 1.01], [0.0, 1.0]),
        ("kv_cache_target", [0.0, 1.01], [0.01, 1.0]),
    ],
)
def test_new_policy_fields_are_bounded(field: str, bad: list[float], good: list[float]) -> None:
    def with_value(value: float) -> TierPolicy:
        changes: dict[str, Any] = {field: value}
        return dataclasses.replace(GOLD, **changes)

    for value in bad:
        with pytest.raises(ValueError, match=field):
            with_value(value)
    for value in good:
        assert getattr(with_value(value), field) == value


def test_default_policies_are_valid_and_ordered() -> None:
    assert set(DEFAULT_POLICIES) == {"gold", "silver", "bronze"}
    assert all(policy.name == name for name, policy in DEFAULT_POLICIES.items())
    gold, silver, bronze = (DEFAULT_POLICIES[name] for name in ("gold", "silver", "bronze"))
    bounds = {name: (p.min_hosts, p.max_hosts) for name, p in DEFAULT_POLICIES.items()}
    assert bounds == {"gold": (1, 50), "silver": (1, 30), "bronze": (1, 8)}
    assert gold.target_wait_s == 10.0 and gold.latency_p95_slo_s == 1.0
    # The low-latency tier runs the smallest model fastest; the batch tier tolerates the most waiting.
    assert gold.host_throughput_rps > silver.host_throughput_rps > bronze.host_throughput_rps > 0
    assert gold.target_wait_s < silver.target_wait_s < bronze.target_wait_s
    assert gold.latency_p95_slo_s < silver.latency_p95_slo_s < bronze.latency_p95_slo_s
    assert gold.boot_time_s <= silver.boot_time_s <= bronze.boot_time_s
    for p in DEFAULT_POLICIES.values():
        assert p.scale_in_cooldown_s == 600.0 and p.surplus_cooldown_s < p.scale_in_cooldown_s
        assert 0 < p.target_load < 1 and p.arrival_sigmas > 0  # hosts are planned with headroom
        assert 0 < p.kv_cache_target < 1 and 0.5 <= p.gpu_busy_util <= 1
        # Scale-in waits for demand clearly under the planned load, and a panic holds for a boot.
        assert p.low_demand_ratio < 1 and p.scale_in_max_step <= 0.5
        assert p.panic_hold_s >= p.boot_time_s


# --- properties -------------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=120, deadline=None)  # ~1 s in all per property


def reals(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


@st.composite
def policies(draw: st.DrawFn) -> TierPolicy:
    if draw(st.booleans()):
        return draw(st.sampled_from([*DEFAULT_POLICIES.values(), GOLD]))
    low = draw(st.integers(0, 5))
    low_demand = draw(reals(0.1, 1.0))
    return TierPolicy(
        name="random",
        min_hosts=low,
        max_hosts=draw(st.integers(max(low, 1), 60)),
        host_throughput_rps=draw(reals(0.2, 10)),
        target_load=draw(st.just(1.0) | reals(0.5, 1.0)),
        arrival_sigmas=draw(st.just(0.0) | reals(0, 4)),
        trend_weight=draw(st.just(1.0) | reals(0.05, 1.0)),
        max_growth=draw(st.just(0.0) | reals(0, 2)),
        target_wait_s=draw(reals(1, 300)),
        gpu_busy_util=draw(reals(0.0, 1.0)),
        kv_cache_target=draw(reals(0.3, 1.0)),
        latency_p95_slo_s=draw(reals(0.1, 10)),
        panic_latency_factor=draw(reals(1.0, 4.0)),
        panic_backlog_factor=draw(reals(0.5, 6.0)),
        panic_wait_factor=draw(reals(1.0, 10.0)),
        panic_hold_s=draw(reals(0, 900)),
        scale_in_cooldown_s=draw(reals(60, 1800)),
        scale_in_max_step=draw(reals(0.01, 1.0)),
        scale_in_interval_s=draw(reals(60, 600)),  # > the re-decide delay below
        scale_out_max_step=draw(st.none() | st.integers(0, 10)),
        stale_after_s=draw(reals(30, 600)),
        boot_time_s=draw(reals(0, 900)),
        low_demand_ratio=low_demand,
        surplus_ratio=draw(st.just(0.0) | reals(0.0, low_demand)),
        surplus_cooldown_s=draw(reals(0, 900)),
    )


@st.composite
def signals(draw: st.DrawFn, policy: TierPolicy, in_bounds: bool = True) -> TierSignals:
    # Each value is drawn from a calm range or from anywhere, so that fresh metrics, empty queues and
    # low demand (the scale-in paths) are as common as overload, missing data and panic.
    now = T0 + draw(reals(0, 10_000))
    desired = (
        draw(st.integers(policy.min_hosts, policy.max_hosts)) if in_bounds else draw(st.integers(0, 100))
    )
    in_service = draw(st.just(desired) | st.integers(max(desired - 3, 0), desired) | st.integers(0, 80))
    return TierSignals(
        now_s=now,
        visible=draw(st.just(0) | st.integers(0, 5000)),
        in_flight=draw(st.just(0) | st.integers(0, 500)),
        oldest_age_s=draw(reals(0, 5) | reals(0, 1000)),
        arrival_rps=draw(st.none() | reals(0, 1) | reals(0, 300)),
        gpu_util=draw(reals(0, 0.3) | reals(0, 1) | reals(0.9, 1) | st.none()),
        kv_cache_usage=draw(st.none() | reals(0, 1)),
        latency_p95_s=draw(reals(0, 0.5) | reals(0, 20) | st.none()),
        metrics_time_s=draw(reals(now - 60, now) | reals(now - 900, now) | st.none()),
        in_service=in_service,
        pending=draw(st.just(0) | st.integers(0, 20)),
        draining=draw(st.integers(0, 10)),
        desired=desired,
    )


@st.composite
def states(draw: st.DrawFn, now: float) -> TierState:
    def moment() -> float | None:
        return draw(st.none() | reals(now - 5000, now - 2000) | reals(now - 5000, now + 1000))

    arrival_rps = draw(st.none() | reals(0, 300))
    return TierState(
        low_demand_since_s=moment(),
        last_scale_out_s=moment(),
        last_scale_in_s=moment(),
        panic_until_s=moment(),
        # The last arrival datapoint (its time may be before, at or after this tick's) and its trend.
        arrival_rps=arrival_rps,
        arrival_time_s=None if arrival_rps is None else draw(reals(now - 900, now)),
        arrival_trend=draw(st.none() | reals(-1, 1) | reals(0, 0.05)),
    )


@st.composite
def cases(draw: st.DrawFn, in_bounds: bool = True) -> tuple[TierPolicy, TierSignals, TierState]:
    policy = draw(policies())
    s = draw(signals(policy, in_bounds))
    state = draw(states(s.now_s))
    if draw(st.booleans()):
        # A calm tier long past its cool-down: the case where scale-in is possible at all.
        s = dataclasses.replace(
            s,
            visible=0,
            in_flight=0,
            oldest_age_s=0.0,
            # GPUs idle-ish, or busy with a KV cache well under its target.
            gpu_util=draw(reals(0, 0.4) | reals(policy.gpu_busy_util, 1)),
            kv_cache_usage=draw(st.none() | reals(0, 0.5 * policy.kv_cache_target)),
            latency_p95_s=draw(reals(0, policy.latency_p95_slo_s)),
            metrics_time_s=s.now_s - draw(reals(0, policy.stale_after_s)),
        )
        state = dataclasses.replace(
            state, low_demand_since_s=s.now_s - draw(reals(0, 3000)), panic_until_s=None
        )
    return policy, s, state


@PROPERTY_SETTINGS
@given(cases(in_bounds=False))
def test_bounds_always_hold(case: tuple[TierPolicy, TierSignals, TierState]) -> None:
    policy, s, state = case
    d = decide(policy, s, state)
    assert policy.min_hosts <= d.desired <= policy.max_hosts
    assert d.action == (
        "scale_out" if d.desired > s.desired else "scale_in" if d.desired < s.desired else "hold"
    )
    assert d.capacity_at_max == (d.required_hosts > policy.max_hosts)
    assert d.reasons


@PROPERTY_SETTINGS
@given(cases())
def test_never_scale_in_with_backlog_missing_metrics_or_panic(
    case: tuple[TierPolicy, TierSignals, TierState],
) -> None:
    policy, s, state = case
    d = decide(policy, s, state)
    latency_breach = d.metrics_fresh and (s.latency_p95_s or 0) > policy.latency_p95_slo_s
    # Rule 2: busy GPUs (at or over gpu_busy_util) with the KV cache over its target, from a fresh datapoint.
    fresh = s.metrics_time_s is not None and s.now_s - s.metrics_time_s <= policy.stale_after_s
    gpu_hot = (
        fresh
        and s.gpu_util is not None
        and s.gpu_util >= policy.gpu_busy_util
        and s.kv_cache_usage is not None
        and s.kv_cache_usage > policy.kv_cache_target
    )
    if s.visible > 0 or not d.metrics_fresh or d.panic or latency_breach or gpu_hot:
        assert d.desired >= s.desired and d.action != "scale_in"
    if d.action == "scale_in":
        assert d.desired >= max(d.required_hosts, policy.min_hosts)
        # One step removes at most scale_in_max_step of the hosts, except from a large surplus (to the floor).
        if d.demand_ratio >= policy.surplus_ratio:
            assert s.desired - d.desired <= max(1, -(-s.desired * policy.scale_in_max_step // 1))


@PROPERTY_SETTINGS
@given(cases())
def test_panic_goes_to_the_full_requirement(case: tuple[TierPolicy, TierSignals, TierState]) -> None:
    policy, s, state = case
    d = decide(policy, s, state)
    if d.panic:
        assert d.desired == min(max(s.desired, d.required_hosts), policy.max_hosts)
    elif d.action == "scale_out":
        assert d.desired <= d.required_hosts or d.desired == policy.min_hosts


@st.composite
def more_demand(draw: st.DrawFn, s: TierSignals) -> TierSignals:
    """`s` with some demand signals raised (the ones present), everything else equal."""
    more = reals(0, 500)
    return dataclasses.replace(
        s,
        visible=s.visible + draw(st.integers(0, 2000)),
        in_flight=s.in_flight + draw(st.integers(0, 200)),
        oldest_age_s=s.oldest_age_s + draw(more),
        arrival_rps=None if s.arrival_rps is None else s.arrival_rps + draw(more),
        latency_p95_s=None if s.latency_p95_s is None else s.latency_p95_s + draw(reals(0, 5)),
        gpu_util=None if s.gpu_util is None else draw(reals(s.gpu_util, 1)),
        kv_cache_usage=None if s.kv_cache_usage is None else draw(reals(s.kv_cache_usage, 1)),
    )


@PROPERTY_SETTINGS
@given(st.data())
def test_monotone_in_demand(data: st.DataObject) -> None:
    policy, s, state = data.draw(cases(in_bounds=False))
    busier = data.draw(more_demand(s))
    assert decide(policy, busier, state).desired >= decide(policy, s, state).desired


@PROPERTY_SETTINGS
@given(
    cases(),
    st.sampled_from(["visible", "in_flight", "arrival_rps", "latency_p95_s", "gpu_util", "kv_cache_usage"]),
)
def test_monotone_in_each_signal(case: tuple[TierPolicy, TierSignals, TierState], name: str) -> None:
    policy, s, state = case
    value = getattr(s, name)
    if value is None:
        return
    bumped = (
        min(value + 0.3, 1.0)
        if name in ("gpu_util", "kv_cache_usage")
        else value + (7 if isinstance(value, int) else 1.7)
    )
    busier = dataclasses.replace(s, **{name: bumped})
    assert decide(policy, busier, state).desired >= decide(policy, s, state).desired


@PROPERTY_SETTINGS
@given(cases(in_bounds=False), reals(0, 59))
def test_deciding_again_does_not_oscillate(
    case: tuple[TierPolicy, TierSignals, TierState], later: float
) -> None:
    policy, s, state = case
    first = decide(policy, s, state)
    # Same signals, the ASG now at the decided count, the returned state; the same tick or the next minute.
    again = dataclasses.replace(s, desired=first.desired, now_s=s.now_s + later)
    second = decide(policy, again, first.new_state)
    if first.action == "scale_out":
        assert second.action != "scale_in"
    if first.action == "scale_in":
        assert second.action == "hold"
    if later == 0 and first.action == "hold":
        assert second.action == "hold"
