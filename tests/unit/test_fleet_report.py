"""The fleet's cost and capacity report: its definitions (scale-up time, first scale-in, p95 over seeds), the
purchase-option split it reads from the simulator, the platform cost estimate and the report's figures."""

from __future__ import annotations

import dataclasses
import math

import pytest

from fleet_sim import FleetPolicy, Trace, simulate, static_policy
from fleet_sim.costs import COMMITMENTS, PlatformUsage, platform_costs
from fleet_sim.report import (
    SCALE_DOWN_HOLD_S,
    capacity_report,
    day_for,
    first_scale_in_s,
    on_demand_floor,
    p95_nearest_rank,
    report_markdown,
    scale_up_s,
    step_for,
)
from fleet_sim.simulator import TierResult
from fleet_sim.traces import SpotStorm


def short_day() -> Trace:
    """A two-hour 'day': 1,000 players, then 3,000, then 1,000 (mean 5,000/3)."""
    return Trace(name="short", times_s=(0.0, 2400.0, 4800.0), players=(1000, 3000, 1000), duration_s=7200.0)


def with_capacity(tier: TierResult, capacity: list[float], desired: list[int] | None = None) -> TierResult:
    series = tier.series
    if desired is not None:
        series = dataclasses.replace(
            series, minute_s=tuple(60.0 * m for m in range(len(desired))), desired=tuple(desired)
        )
    return dataclasses.replace(tier, step_s=10.0, ready_capacity_rps=tuple(capacity), series=series)


@pytest.fixture(scope="module")
def gold() -> TierResult:
    flat = Trace(name="flat", times_s=(0.0,), players=(600,), duration_s=600.0)
    return simulate(flat, {"static": static_policy(2)}, tiers=("gold",))["static"].tiers["gold"]


# --- definitions ---------------------------------------------------------------------------------------------


def test_scale_up_time_is_the_first_step_whose_capacity_covers_the_demand(gold: TierResult) -> None:
    tier = with_capacity(gold, [10, 10, 10, 12, 15, 30, 31, 10])
    # The jump at 20 s; capacity reaches 30 req/s at step 5 (50 s): 30 s later.
    assert scale_up_s(tier, 20.0, 30.0, until_s=80.0) == 30.0
    assert scale_up_s(tier, 0.0, 10.0, until_s=80.0) == 0.0
    # Never enough before the window ends: infinitely slow, not a number that looks like a success.
    assert scale_up_s(tier, 20.0, 40.0, until_s=80.0) == math.inf
    assert scale_up_s(tier, 20.0, 30.0, until_s=50.0) == math.inf


def test_first_scale_in_counts_only_ticks_after_the_drop(gold: TierResult) -> None:
    tier = with_capacity(gold, [], desired=[5, 5, 4, 4, 4, 3, 3])
    # The decrease at minute 2 is at the drop itself (decided on the demand before it): the next is at 5.
    assert first_scale_in_s(tier, 120.0) == 180.0
    assert first_scale_in_s(tier, 0.0) == 120.0
    assert first_scale_in_s(tier, 300.0) == math.inf


def test_the_on_demand_floor_ignores_a_moment_without_the_base(gold: TierResult) -> None:
    counts = [2] * 150 + [1] * 48 + [0]  # one minute in 199 without an On-Demand host
    tier = dataclasses.replace(gold, series=dataclasses.replace(gold.series, on_demand=tuple(counts)))
    assert on_demand_floor(tier) == 1
    tier = dataclasses.replace(
        gold, series=dataclasses.replace(gold.series, on_demand=tuple([3] * 99 + [1] * 2))
    )
    assert on_demand_floor(tier) == 1  # two minutes in 101 is more than 1 %
    assert (
        on_demand_floor(dataclasses.replace(gold, series=dataclasses.replace(gold.series, on_demand=()))) == 0
    )


def test_p95_nearest_rank() -> None:
    assert p95_nearest_rank([3.0]) == 3.0
    assert p95_nearest_rank([5.0, 1.0, 2.0]) == 5.0  # under 20 seeds: the slowest
    assert p95_nearest_rank([float(v) for v in range(1, 21)]) == 19.0
    assert p95_nearest_rank([1.0, math.inf]) == math.inf


def test_day_and_step_keep_the_shape_and_take_the_mean() -> None:
    day = day_for(1_000)
    assert day.mean_players == pytest.approx(1_000)
    assert max(day.players) / min(day.players) == pytest.approx(10.0)
    step = step_for(1_000, hold_s=600.0)
    assert step.players == (min(day.players), max(day.players), min(day.players))
    assert step.times_s == (0.0, 600.0, 1200.0) and step.duration_s == 1800.0
    with pytest.raises(ValueError, match="must be > 0"):
        day_for(0)
    empty = Trace(name="nobody", times_s=(0.0,), players=(0.0,), duration_s=60.0)
    with pytest.raises(ValueError, match="must be > 0"):
        day_for(100, empty)


# --- what the simulator now reports --------------------------------------------------------------------------


def test_purchase_options_split_the_hours_and_cost_and_interruptions_have_times() -> None:
    storm = SpotStorm(start_s=600.0, end_s=1500.0, interrupted_fraction=0.9)
    trace = Trace(name="storm", times_s=(0.0,), players=(4_000,), duration_s=2400.0, spot_storm=storm)
    result = simulate(trace, {"ours": FleetPolicy}, tiers=("gold",))["ours"].tiers["gold"]
    assert result.on_demand_hours > 0 and result.spot_hours > 0
    assert result.on_demand_hours + result.spot_hours == pytest.approx(result.gpu_hours)
    assert result.on_demand_cost_usd + result.spot_cost_usd == pytest.approx(result.cost_usd)
    assert len(result.spot_interruption_s) == result.spot_interruptions > 0
    assert all(600.0 <= t < 2400.0 for t in result.spot_interruption_s)
    assert len(result.ready_capacity_rps) == 240  # one per 10 s step
    series = result.series
    assert len(series.hosts) == len(series.on_demand) == len(series.minute_s)
    assert all(od <= hosts for od, hosts in zip(series.on_demand, series.hosts, strict=True))
    assert min(series.on_demand) >= 1  # the group's On-Demand base


# --- platform costs ------------------------------------------------------------------------------------------


def test_platform_costs_grow_with_players_and_hosts_and_name_their_basis() -> None:
    small = platform_costs(1_000, 5.0)
    large = platform_costs(10_000, 50.0)
    assert {line.group for line in small} == {"knowledge base", "monitoring"}
    assert [line.item for line in small] == [line.item for line in large]
    assert sum(line.usd_per_month for line in large) > sum(line.usd_per_month for line in small) > 0
    api = {line.item: line for line in small}["API Gateway (REST)"]
    # 1,000 players x 0.25 queries a minute x 43,800 minutes = 10.95 M requests at $3.50 a million.
    assert api.usd_per_month == pytest.approx(10.95 * 3.50)
    assert "10.95 M requests" in api.basis
    nobody = platform_costs(0, 0.0, PlatformUsage(alarms=0, dashboards=0))
    assert all(line.usd_per_month >= 0 for line in nobody)
    with pytest.raises(ValueError, match=">= 0"):
        platform_costs(-1, 1.0)


# --- the report ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report() -> dict[str, object]:
    return capacity_report(seeds=2, player_counts=(1_000,), day=short_day(), hold_s=1200.0)


def test_the_report_has_every_figure_per_tier(report: dict[str, object]) -> None:
    data = report["players"]["1000"]  # type: ignore[index]
    assert set(data["tiers"]) == {"gold", "silver", "bronze"}
    for tier in data["tiers"].values():
        assert tier["hosts_peak"] >= tier["hosts_mean"] > 0
        assert tier["gpu_hours_per_day"] == pytest.approx(
            tier["on_demand_hours_per_day"] + tier["spot_hours_per_day"]
        )
        # Two hours scaled to 730; per player-month divides by the 1,000 players.
        assert tier["usd_per_player_month"] == pytest.approx(tier["usd_per_month"] / 1_000)
        assert len(tier["scale_up_s"]) == len(tier["first_scale_in_after_drop_s"]) == 2
        assert tier["on_demand_floor_hosts"] >= 1
        assert [c["option"] for c in tier["commitments"]] == [name for name, _ in COMMITMENTS]
        best = tier["commitments"][0]
        # The floor's hours at the On-Demand price of the group's first type, the discount off.
        price = {"g5.xlarge": 1.006, "g5.2xlarge": 1.212, "g6e.xlarge": 1.861}[tier["instance_type"]]
        assert best["saving_usd_per_month"] == pytest.approx(
            tier["on_demand_floor_hosts"] * price * 0.37 * 730
        )
        holds = [v for v in tier["first_scale_in_after_drop_s"] if v is not None]
        if tier["scale_down_met"]:
            assert all(v >= SCALE_DOWN_HOLD_S for v in holds)
        else:
            assert (
                any(v < SCALE_DOWN_HOLD_S for v in holds)
                or tier["slo_violation_minutes_after_drop"] > 0
                or tier["scale_ins_with_waiting_messages"] > 0
            )
    assert data["total_usd_per_month"] == pytest.approx(
        data["fleet"]["usd_per_month"] + data["platform_usd_per_month"]
    )
    assert data["status_estimate"] == {
        "usd_per_month": 8_000.0,
        "source": "cost impact analysis",
        "gpus": "10-15",
    }
    assert set(data["load_test"]) == {"scale_up_under_5_min", "scale_down_safe_over_15_min"}
    quotas = data["quotas"]
    assert quotas["on_demand_vcpus_request"] >= quotas["on_demand_vcpus_peak"] * 1.25
    assert quotas["spot_vcpus_request"] % 32 == 0


def test_other_counts_are_compared_with_the_per_player_figure() -> None:
    out = capacity_report(seeds=1, player_counts=(300,), day=short_day(), hold_s=600.0)
    assert out["players"]["300"]["status_estimate"]["usd_per_month"] == pytest.approx(8.0 * 300)


def test_the_report_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="seeds"):
        capacity_report(seeds=0)
    with pytest.raises(ValueError, match="player counts"):
        capacity_report(player_counts=(0,))


def test_markdown_has_the_sections_and_a_row_per_count_and_tier(report: dict[str, object]) -> None:
    text = report_markdown(report)
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == [
        "# Cost and capacity report",
        "## Fleet per tier",
        "## Load-test points",
        "## Monthly cost against the status document",
        "## Savings Plans and Reserved Instances for the On-Demand base",
        "## Knowledge base and monitoring",
        "## EC2 quotas",
    ]
    assert sum(1 for line in text.splitlines() if line.startswith("| 1,000 | gold |")) == 1 + len(COMMITMENTS)
