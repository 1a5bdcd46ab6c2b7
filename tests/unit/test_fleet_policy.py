from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.policy import DEFAULT_POLICIES, Decision, TierPolicy, TierSignals, TierState, decide

GOLD = DEFAULT_POLICIES["gold"]
T0 = 1_700_000_000.0

# A quiet gold tier: 4 ready hosts at 50 % GPU (need 4 x 0.5 / 0.75 = 2.67 -> 3 hosts, ratio 0.67: not low).
QUIET = TierSignals(
    now_s=T0,
    visible=0,
    in_flight=0,
    oldest_age_s=0.0,
    arrival_rps=None,
    gpu_util=0.5,
    kv_cache_usage=0.3,
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
    """A fleet of `hosts` ready hosts with an empty queue and 5 % GPU: low demand."""
    return sig(**{"in_service": hosts, "desired": hosts, "gpu_util": 0.05, **changes})


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


def has_reason(decision: Decision, text: str) -> bool:
    return any(text in reason for reason in decision.reasons)


# --- intermediates and steady state -----------------------------------------------------------------------


def test_quiet_tier_holds_and_records_intermediates() -> None:
    d = decide(GOLD, sig(visible=30, in_flight=10, pending=1, desired=5), TierState())
    assert d.action == "hold" and d.desired == 5
    assert d.backlog == 40 and d.capacity_hosts == 5
    assert d.backlog_per_ready_host == 10.0
    assert d.required_hosts == 3  # GPU: ceil(4 x 0.5 / 0.75); queue: 40 / (4 x 10) = 1
    assert d.demand_ratio == pytest.approx((4 * 0.5 / 0.75) / 5)
    assert d.metrics_fresh and not d.panic and not d.capacity_at_max
    assert d.reasons and all(isinstance(r, str) and r for r in d.reasons)


def test_required_sums_arrivals_and_backlog_drain() -> None:
    # arrivals 20 req/s / 4 = 5 hosts; backlog 1200 drained over the 300 s boot window: 1200 / (4 x 300)
    # = 1 host; together 6.
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


def test_gpu_above_target_scales_proportionally() -> None:
    d = decide(GOLD, sig(in_service=8, desired=8, gpu_util=0.9), TierState())
    assert d.desired == 10  # ceil(8 x 0.9 / 0.75) = ceil(9.6)
    assert has_reason(d, "GPU utilisation 0.90 > target 0.75")


def test_latency_over_slo_adds_one_host_and_counts_a_booting_one() -> None:
    d = decide(GOLD, sig(latency_p95_s=1.3), TierState())
    assert d.action == "scale_out" and d.desired == 5 and not d.panic
    assert has_reason(d, "P95 latency 1.30 s > SLO 1 s")
    # The extra host is booting: the breach adds nothing more.
    d = decide(GOLD, sig(latency_p95_s=1.3, pending=1, desired=5), TierState())
    assert d.action == "hold" and d.desired == 5


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
    busy = decide(GOLD, sig(in_service=20, desired=20, gpu_util=0.6), state)  # ratio 0.8
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
    # 10 hosts at 40 % GPU need ceil(10 x 0.4 / 0.75) = 6: ratio 0.53 is low, but not below 6.
    d = decide(policy, idle(10, gpu_util=0.4), state)
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


@pytest.mark.parametrize("changes", [{"latency_p95_s": 1.3}, {"gpu_util": 0.8}])
def test_no_scale_in_under_a_scale_out_signal_even_if_booting_hosts_cover_it(changes: dict[str, Any]) -> None:
    # 2 ready + 8 booting: the breach needs only 3 hosts (ratio 0.3), yet nothing may be removed.
    covered = idle(2, pending=8, desired=10, **changes)
    d = decide(GOLD, covered, TierState(low_demand_since_s=T0 - 1000))
    assert d.action == "hold" and d.desired == 10


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
    # A stale latency spike and a stale hot GPU drive nothing.
    d = decide(GOLD, sig(latency_p95_s=5.0, gpu_util=1.0, **stale), TierState())
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


def test_default_policies() -> None:
    assert set(DEFAULT_POLICIES) == {"gold", "silver", "bronze"}
    assert all(policy.name == name for name, policy in DEFAULT_POLICIES.items())
    bounds = {name: (p.min_hosts, p.max_hosts) for name, p in DEFAULT_POLICIES.items()}
    assert bounds == {"gold": (1, 50), "silver": (1, 30), "bronze": (1, 8)}
    assert GOLD.target_wait_s == 10.0 and GOLD.latency_p95_slo_s == 1.0
    assert all(p.scale_in_cooldown_s == 900.0 for p in DEFAULT_POLICIES.values())


# --- properties -------------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=120, deadline=None)  # ~1 s in all per property


def reals(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


@st.composite
def policies(draw: st.DrawFn) -> TierPolicy:
    if draw(st.booleans()):
        return draw(st.sampled_from(list(DEFAULT_POLICIES.values())))
    low = draw(st.integers(0, 5))
    return TierPolicy(
        name="random",
        min_hosts=low,
        max_hosts=draw(st.integers(max(low, 1), 60)),
        host_throughput_rps=draw(reals(0.2, 10)),
        target_wait_s=draw(reals(1, 300)),
        gpu_util_target=draw(reals(0.3, 1.0)),
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
        low_demand_ratio=draw(reals(0.1, 1.0)),
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
        gpu_util=draw(reals(0, 0.3) | reals(0, 1) | st.none()),
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

    return TierState(
        low_demand_since_s=moment(),
        last_scale_out_s=moment(),
        last_scale_in_s=moment(),
        panic_until_s=moment(),
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
            gpu_util=draw(reals(0, 0.4)),
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
    gpu_hot = d.metrics_fresh and (s.gpu_util or 0) > policy.gpu_util_target
    if s.visible > 0 or not d.metrics_fresh or d.panic or latency_breach or gpu_hot:
        assert d.desired >= s.desired and d.action != "scale_in"
    if d.action == "scale_in":
        assert d.desired >= max(d.required_hosts, policy.min_hosts)
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
    )


@PROPERTY_SETTINGS
@given(st.data())
def test_monotone_in_demand(data: st.DataObject) -> None:
    policy, s, state = data.draw(cases(in_bounds=False))
    busier = data.draw(more_demand(s))
    assert decide(policy, busier, state).desired >= decide(policy, s, state).desired


@PROPERTY_SETTINGS
@given(cases(), st.sampled_from(["visible", "in_flight", "arrival_rps", "latency_p95_s", "gpu_util"]))
def test_monotone_in_each_signal(case: tuple[TierPolicy, TierSignals, TierState], name: str) -> None:
    policy, s, state = case
    value = getattr(s, name)
    if value is None:
        return
    bumped = min(value + 0.3, 1.0) if name == "gpu_util" else value + (7 if isinstance(value, int) else 1.7)
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
