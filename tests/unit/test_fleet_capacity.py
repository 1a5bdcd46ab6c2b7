"""Learning what a host sustains within the latency objective (fleet.capacity) and using it (fleet.policy)."""

from __future__ import annotations

import dataclasses

import pytest

from fleet.capacity import HostTypeSignals, fleet_throughput, learn, prior, relative_speed
from fleet.policy import TierState, decide
from tests.unit.test_fleet_policy import GOLD, T0, has_reason, sig

SLO = 1.0


def _learn(estimate: float, per_host: float, p95: float, hosts: int = 4) -> float:
    observed = [
        HostTypeSignals(
            instance_type="g5.xlarge", in_service=hosts, completed_rps=per_host * hosts, latency_p95_s=p95
        )
    ]
    learned, _ = learn(
        {"g5.xlarge": estimate},
        observed,
        host_throughput_rps=8.0,
        reference_type="g5.xlarge",
        latency_slo_s=SLO,
        tier_latency_p95_s=p95,
    )
    return learned["g5.xlarge"]


def test_priors_follow_published_memory_bandwidth() -> None:
    assert relative_speed("g5.xlarge") == 1.0
    assert relative_speed("g6.xlarge") == pytest.approx(0.5)  # L4: 300 of the A10G's 600 GB/s
    assert relative_speed("g4dn.xlarge") == pytest.approx(320 / 600)
    assert relative_speed("g6e.xlarge") == pytest.approx(864 / 600)
    assert relative_speed("g5.12xlarge") == pytest.approx(1 + 3 * 0.7)  # four A10G, tensor parallel
    assert relative_speed("p9.imaginary") is None
    assert prior(8.0, "g5.xlarge", "g6.xlarge") == pytest.approx(4.0)
    assert prior(8.0, "g5.xlarge", "unknown") == 8.0 and prior(8.0, "", "g6.xlarge") == 8.0


def test_over_the_slo_the_estimate_comes_down_toward_what_hosts_did() -> None:
    # Hosts did 6 req/s each and breached the SLO: 8 was too much; 0.3 of the way to 6.
    assert _learn(8.0, 6.0, p95=1.4) == pytest.approx(8.0 + 0.3 * (6.0 - 8.0))
    # Over the SLO while doing more than the estimate says nothing new.
    assert _learn(8.0, 9.0, p95=1.4) == 8.0


def test_within_the_slo_what_hosts_did_is_sustainable() -> None:
    assert _learn(8.0, 9.5, p95=0.9) == 9.5
    # Headroom at the planned load: the estimate explores upward.
    assert _learn(8.0, 7.4, p95=0.6) == pytest.approx(8.0 * 1.05)
    # A quiet tier (hosts far below plan) teaches nothing.
    assert _learn(8.0, 1.0, p95=0.5) == 8.0
    # Between exploring and breaching: hold.
    assert _learn(8.0, 7.4, p95=0.9) == 8.0


def test_estimates_stay_within_bounds_of_the_prior() -> None:
    estimate = 8.0
    for _ in range(200):  # loaded hosts over the SLO, again and again
        estimate = _learn(estimate, 0.6 * estimate, p95=5.0)
    assert estimate == pytest.approx(8.0 * 0.25)
    estimate = 8.0
    for _ in range(200):
        estimate = _learn(estimate, estimate, p95=0.1)
    assert estimate == pytest.approx(8.0 * 4.0)


def test_nothing_is_learned_without_a_latency_or_a_completion_count() -> None:
    observed = [
        HostTypeSignals(instance_type="g5.xlarge", in_service=2, completed_rps=None, latency_p95_s=2.0)
    ]
    learned, reasons = learn(
        {},
        observed,
        host_throughput_rps=8.0,
        reference_type="g5.xlarge",
        latency_slo_s=SLO,
        tier_latency_p95_s=None,
    )
    assert learned == {} and reasons == []
    observed = [
        HostTypeSignals(instance_type="g5.xlarge", in_service=2, completed_rps=10.0, latency_p95_s=None)
    ]
    learned, _ = learn(
        {},
        observed,
        host_throughput_rps=8.0,
        reference_type="g5.xlarge",
        latency_slo_s=SLO,
        tier_latency_p95_s=None,
    )
    assert learned == {}


def test_the_fleet_throughput_weighs_each_type_by_its_hosts() -> None:
    groups = [
        HostTypeSignals(instance_type="g5.xlarge", in_service=3),
        HostTypeSignals(instance_type="g6.xlarge", in_service=1),
    ]
    # g5 learned at 10; g6 unlearned: its prior, 8 x 0.5 = 4.
    assert fleet_throughput(
        {"g5.xlarge": 10.0}, groups, host_throughput_rps=8.0, reference_type="g5.xlarge"
    ) == (pytest.approx((3 * 10.0 + 4.0) / 4))
    # No host reports a type: the most cautious estimate, or the configured value.
    assert fleet_throughput({"a": 5.0, "b": 7.0}, [], host_throughput_rps=8.0, reference_type="") == 5.0
    assert fleet_throughput({}, [], host_throughput_rps=8.0, reference_type="") == 8.0


# --- the policy with what it learned ----------------------------------------------------------------------


def test_learned_throughput_sizes_the_fleet_and_is_remembered() -> None:
    # Hosts finished 12 req/s each within the SLO: a host sustains 12, so 48 req/s needs 4 hosts, not 12.
    groups = (
        HostTypeSignals(instance_type="g5.xlarge", in_service=4, completed_rps=48.0, latency_p95_s=0.9),
    )
    d = decide(GOLD, sig(arrival_rps=48.0, host_types=groups, latency_p95_s=0.9), TierState())
    assert d.host_throughput_rps == pytest.approx(12.0)
    assert dict(d.new_state.throughput) == {"g5.xlarge": 12.0}
    assert d.required_hosts == 4
    assert has_reason(d, "throughput estimate 4.00 -> 12.00")
    # Next tick, no fresh metrics: the remembered estimate still sizes the fleet.
    stale = sig(now_s=T0 + 600, arrival_rps=48.0, host_types=groups, metrics_time_s=T0)
    assert decide(GOLD, stale, d.new_state).host_throughput_rps == pytest.approx(12.0)


def test_an_idle_tier_with_no_latency_to_report_scales_in() -> None:
    # Hosts alive (GPU metrics fresh), nothing waiting, nothing completed, hence no P95: low demand.
    idle_tier = sig(
        in_service=8, desired=8, gpu_util=0.0, kv_cache_usage=0.0, latency_p95_s=None, completed_rps=0.0
    )
    long_ago = TierState(low_demand_since_s=T0 - 3600)
    d = decide(GOLD, idle_tier, long_ago)
    assert d.metrics_fresh and d.action == "scale_in" and d.desired < 8
    assert has_reason(d, "idle")
    # Work waiting, or unknown completions with unknown arrivals: not idle, no scale-in.
    assert decide(GOLD, dataclasses.replace(idle_tier, visible=3), long_ago).action != "scale_in"
    unknown = dataclasses.replace(idle_tier, completed_rps=None, arrival_rps=None)
    assert decide(GOLD, unknown, long_ago).action == "hold"


def test_players_online_lead_the_arrivals() -> None:
    # 1,000 players made 10 req/s a minute ago; now 2,000 are online: plan for 20 req/s, not 10.
    state = TierState(players_history=((T0 - 90, 1000.0),), requests_per_player=0.01)
    d = decide(
        GOLD,
        sig(arrival_rps=10.0, players_online=2000.0, players_time_s=T0 - 5, gpu_util=None),
        state,
    )
    assert d.required_hosts == 5  # 20 / 4
    assert has_reason(d, "players online 2000")
    # Without the players metric (or with a stale one) the arrivals alone plan.
    assert decide(GOLD, sig(arrival_rps=10.0, gpu_util=None), state).required_hosts == 3
    stale = sig(arrival_rps=10.0, players_online=2000.0, players_time_s=T0 - 600, gpu_util=None)
    assert decide(GOLD, stale, state).required_hosts == 3


def test_a_slow_host_is_replaced_not_a_reason_to_grow() -> None:
    latencies = (("i-fast1", 0.4), ("i-fast2", 0.45), ("i-slow", 2.5))
    d = decide(GOLD, sig(latency_p95_s=0.5, host_latencies=latencies), TierState())
    assert d.replace_hosts == ("i-slow",)
    assert d.action == "hold"
    # Slow everywhere is load, not bad hosts: nobody is replaced (the tier's merged P95 is high too).
    busy = (("i-a", 2.5), ("i-b", 2.4))
    assert decide(GOLD, sig(latency_p95_s=2.4, host_latencies=busy), TierState()).replace_hosts == ()


def test_a_high_latency_on_quiet_hosts_is_not_load() -> None:
    # P95 over the SLO while each host did 1 of its 4 req/s: neither the estimate nor the fleet grows.
    assert _learn(8.0, 1.0, p95=3.0) == 8.0
    d = decide(GOLD, sig(latency_p95_s=1.6, completed_rps=4.0, in_service=4), TierState())
    assert d.action == "hold" and has_reason(d, "not load, no host added")
    # Loaded hosts (or a backlog) over the SLO still get one more.
    loaded = decide(GOLD, sig(latency_p95_s=1.6, completed_rps=15.0, in_service=4), TierState())
    assert loaded.action == "scale_out" and loaded.desired == 5


def test_failing_launches_stop_the_tier_adding_hosts_with_a_growing_backoff() -> None:
    # A backlog asks for hosts, but launches were just abandoned: desired falls to the 3 hosts that exist.
    backlog = {"visible": 4_000, "oldest_age_s": 5.0, "in_service": 2, "pending": 1, "desired": 6}
    first = decide(GOLD, sig(**backlog, launch_failures=3, launch_failure_time_s=T0 - 40), TierState())
    assert first.launch_backoff and first.desired == 3 and first.action == "hold"
    assert has_reason(first, "launch backoff: 3 launches abandoned")
    state = first.new_state
    assert state.launch_backoff_s == GOLD.launch_backoff_s
    assert state.launch_backoff_until_s == T0 + GOLD.launch_backoff_s
    # The same failure seen again does not extend it; within the backoff nothing is added.
    later = decide(
        GOLD,
        sig(**backlog | {"desired": 3}, now_s=T0 + 120, launch_failures=3, launch_failure_time_s=T0 - 40),
        state,
    )
    assert (
        later.launch_backoff
        and later.desired == 3
        and later.new_state.launch_backoff_s == GOLD.launch_backoff_s
    )
    # After it the tier tries again (the backlog scales it out) ...
    retry = decide(GOLD, sig(**backlog | {"desired": 3}, now_s=T0 + 400), later.new_state)
    assert not retry.launch_backoff and retry.action == "scale_out"
    # ... and a new failure soon after doubles the wait, up to the maximum.
    again = decide(
        GOLD,
        sig(**backlog, now_s=T0 + 700, launch_failures=1, launch_failure_time_s=T0 + 650),
        retry.new_state,
    )
    assert again.launch_backoff and again.new_state.launch_backoff_s == 2 * GOLD.launch_backoff_s
    capped = dataclasses.replace(again.new_state, launch_backoff_s=GOLD.launch_backoff_max_s)
    worst = decide(
        GOLD, sig(**backlog, now_s=T0 + 900, launch_failures=1, launch_failure_time_s=T0 + 880), capped
    )
    assert worst.new_state.launch_backoff_s == GOLD.launch_backoff_max_s
    # A failure long after the previous one starts over.
    fresh = decide(
        GOLD,
        sig(**backlog, now_s=T0 + 9_000, launch_failures=1, launch_failure_time_s=T0 + 8_990),
        worst.new_state,
    )
    assert fresh.new_state.launch_backoff_s == GOLD.launch_backoff_s


def test_a_launch_backoff_keeps_the_minimum_and_allows_scale_in() -> None:
    # Nothing exists: the group still holds its minimum (it launches that one).
    empty = decide(
        GOLD,
        sig(visible=50, in_service=0, pending=0, desired=4, launch_failures=4, launch_failure_time_s=T0 - 30),
        TierState(),
    )
    assert empty.desired == GOLD.min_hosts
    # Backoff never adds, but a quiet tier still scales in through the usual rules.
    quiet = dataclasses.replace(
        TierState(),
        low_demand_since_s=T0 - 2_000,
        launch_failure_time_s=T0 - 100,
        launch_backoff_s=300.0,
        launch_backoff_until_s=T0 + 200,
    )
    d = decide(GOLD, sig(in_service=6, desired=6, gpu_util=0.05, kv_cache_usage=0.05), quiet)
    assert d.launch_backoff and d.action == "scale_in" and d.desired < 6


def test_a_large_surplus_goes_after_a_short_cool_down_in_one_step() -> None:
    surplus = dataclasses.replace(GOLD, surplus_ratio=0.5, surplus_cooldown_s=180.0)
    # 20 idle hosts: far below half of capacity, low for 200 s: past the short cool-down, down to the floor.
    state = TierState(low_demand_since_s=T0 - 200)
    d = decide(surplus, sig(in_service=20, desired=20, gpu_util=0.05, kv_cache_usage=0.05), state)
    assert d.action == "scale_in" and d.desired == max(d.required_hosts, surplus.min_hosts)
    assert has_reason(d, "for 200 s >= 180 s")
    # A modest surplus (ratio between the two marks) waits for the full cool-down and steps.
    modest = decide(
        surplus,
        sig(in_service=20, desired=20, arrival_rps=44.0, gpu_util=0.5, kv_cache_usage=0.05),
        state,
    )
    assert modest.action == "hold" and has_reason(
        modest, f"of the {surplus.scale_in_cooldown_s:g} s cool-down"
    )


def test_latency_measured_while_messages_waited_adds_no_host_and_no_panic() -> None:
    # The previous tick saw messages waiting, after this P95 datapoint began: the P95 is the backlog's.
    state = TierState(last_waiting_s=T0 - 60)
    d = decide(GOLD, sig(latency_p95_s=3.0, metrics_time_s=T0 - 90, in_service=4, desired=4), state)
    assert not d.panic and d.action == "hold" and has_reason(d, "the backlog's symptom")
    # Long after the queue emptied, the same P95 is a load signal again.
    later = decide(GOLD, sig(latency_p95_s=3.0, metrics_time_s=T0 - 30, in_service=4, desired=4), TierState())
    assert later.panic and later.action == "scale_out"


def test_completions_under_a_backlog_are_what_hosts_can_do() -> None:
    # Messages waited through the whole datapoint minute: the hosts did 3 of the 4 req/s believed, at
    # a P95 within the objective; the estimate comes half way down.
    state = TierState(waiting_since_s=T0 - 300, throughput=(("g5.xlarge", 4.0),))
    types = (HostTypeSignals(instance_type="g5.xlarge", in_service=4, completed_rps=12.0, latency_p95_s=0.8),)
    d = decide(GOLD, sig(visible=500, oldest_age_s=20.0, host_types=types, in_service=4, desired=4), state)
    assert dict(d.new_state.throughput)["g5.xlarge"] == pytest.approx(3.5)
    # Completions are per reporting host: two of the four joined during the minute.
    half = (
        HostTypeSignals(
            instance_type="g5.xlarge", in_service=4, reporting_hosts=2.0, completed_rps=8.0, latency_p95_s=0.8
        ),
    )
    d = decide(GOLD, sig(visible=500, oldest_age_s=20.0, host_types=half, in_service=4, desired=4), state)
    assert dict(d.new_state.throughput)["g5.xlarge"] == 4.0  # 4 req/s each: nothing to lower
