"""The fleet's cost and capacity report (`fleet report`, docs/cost-report.md, docs/capacity-planning.md).

For each player count (players online on average) ours runs two simulations per seed:

- **the day**: the built-in diurnal day rescaled so that its mean is the player count (trough and peak
  scale with it: 0.18 x and 1.82 x the mean). It gives, per tier, the hosts on average (GPU-hours / hours,
  booting and draining hosts included: what is billed) and at the peak (the most hosts billed in any
  minute), SLO-violation minutes, GPU-hours by purchase option, the cost scaled to a 730-hour month, and
  the On-Demand floor (the On-Demand hosts present in 99 % of the minutes) the commitment advice is
  computed from.
- **the step** (the status document's load test): the day's trough held for `hold_s`, a jump in one
  minute to the day's peak held for `hold_s`, then back to the trough for `hold_s`.
  *Scale-up time*: from the jump to the first world step (10 s) at which the tier's in-service hosts'
  true throughput at the latency objective (what they serve with their P95 within the SLO; booting hosts
  count nothing) covers the peak's expected arrival rate (players x the tier's requests per player-minute /
  60). Reported as the p95 over seeds (nearest rank: with fewer than 20 seeds, the slowest seed); a seed
  that never gets there within the hold counts as infinitely slow. Objective: under
  `SCALE_UP_OBJECTIVE_S` (5 min) for every tier.
  *Scale-down safety*: after the drop, the first scale-in (a tick after the drop lowers the desired
  count) comes at least `SCALE_DOWN_HOLD_S` (15 min) after it on every seed, no scale-in is decided while
  messages wait (over the whole step run) and no minute after the drop violates the SLO.

Every figure of the day is the mean over seeds, except the peak hosts and the vCPU peaks (the highest
seed) and the On-Demand floor (the lowest seed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any, Final

from fleet.policy import DEFAULT_POLICIES
from fleet_sim.baselines import FleetPolicy, PolicyFactory
from fleet_sim.costs import COMMITMENTS, HOURS_PER_MONTH, PlatformUsage, platform_costs
from fleet_sim.model import WorldModel, default_world
from fleet_sim.simulator import FleetWide, PolicyResult, TierResult, simulate
from fleet_sim.traces import Trace, diurnal

PLAYER_COUNTS: Final = (100, 500, 1_000, 5_000, 10_000)
SCALE_UP_OBJECTIVE_S: Final = 300.0  # status document: scale-up under 5 minutes
SCALE_DOWN_HOLD_S: Final = 900.0  # status document: scale-down safety over 15 minutes
STEP_HOLD_S: Final = 1800.0
# The platform status document's cost analysis (fleet plus services, knowledge base and monitoring):
# ~$8,000/month at 1,000 players online, ~$80,000 at 10,000, "$8/player/month at scale"; its GPU lines
# alone are $7,000-8,000 (10-15 GPUs) and $75,000-80,000 (50-80 GPUs).
STATUS_USD_PER_PLAYER_MONTH: Final = 8.0
STATUS_ESTIMATES: Final[Mapping[int, dict[str, Any]]] = {
    1_000: {"usd_per_month": 8_000.0, "gpus": "10-15", "gpu_usd_per_month": "7,000-8,000"},
    10_000: {"usd_per_month": 80_000.0, "gpus": "50-80", "gpu_usd_per_month": "75,000-80,000"},
}
# EC2 service quotas in us-east-1 that the groups launch against (Service Quotas, Amazon EC2).
ON_DEMAND_QUOTA: Final = "Running On-Demand G and VT instances (L-DB2E81BA), vCPUs"
SPOT_QUOTA: Final = "All G and VT Spot Instance Requests (L-3819A6DF), vCPUs"
FLOOR_SHARE: Final = 0.99
QUOTA_HEADROOM: Final = 1.25  # replacements of interrupted and slow hosts overlap the hosts they replace
QUOTA_ROUNDING: Final = 32


def day_for(players: float, day: Trace | None = None) -> Trace:
    """The diurnal day (or `day`) rescaled so that its mean players online is `players`."""
    base = day or diurnal()
    if players <= 0 or base.mean_players <= 0:
        raise ValueError("players and the day's mean must be > 0")
    factor = players / base.mean_players
    return replace(base, name=f"{base.name}-{players:g}", players=tuple(p * factor for p in base.players))


def step_for(players: float, day: Trace | None = None, hold_s: float = STEP_HOLD_S) -> Trace:
    """The day's trough for `hold_s`, its peak for `hold_s`, its trough again for `hold_s`."""
    scaled = day_for(players, day)
    low, high = min(scaled.players), max(scaled.players)
    return Trace(
        name=f"step-{players:g}",
        times_s=(0.0, hold_s, 2 * hold_s),
        players=(low, high, low),
        duration_s=3 * hold_s,
    )


def scale_up_s(tier: TierResult, at_s: float, needed_rps: float, until_s: float) -> float:
    """Seconds from `at_s` to the first step whose in-service capacity covers `needed_rps`; inf if none
    before `until_s`."""
    first = math.ceil(at_s / tier.step_s - 1e-9)
    for i in range(first, len(tier.ready_capacity_rps)):
        t = i * tier.step_s
        if t >= until_s:
            break
        if tier.ready_capacity_rps[i] >= needed_rps:
            return t - at_s
    return math.inf


def first_scale_in_s(tier: TierResult, at_s: float) -> float:
    """Seconds from `at_s` to the first tick after it whose decision lowered the desired count (minute
    resolution; the tick at `at_s` itself still saw the demand before the change); inf if the tier never
    scales in after `at_s`."""
    s = tier.series
    for m in range(1, len(s.minute_s)):
        if s.minute_s[m] > at_s and s.desired[m] < s.desired[m - 1]:
            return s.minute_s[m] - at_s
    return math.inf


def on_demand_floor(tier: TierResult) -> int:
    """The On-Demand hosts the tier had in at least `FLOOR_SHARE` of the minutes: a commitment this size is
    used all but a few minutes a day (a host replaced or a group reshuffled for a moment does not lower it)."""
    counts = sorted(tier.series.on_demand)
    if not counts:
        return 0
    return counts[math.floor((1.0 - FLOOR_SHARE) * len(counts))]


def p95_nearest_rank(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def capacity_report(
    *,
    seeds: int = 5,
    player_counts: Sequence[int] = PLAYER_COUNTS,
    ours: PolicyFactory | FleetWide | None = None,
    day: Trace | None = None,
    hold_s: float = STEP_HOLD_S,
    world: WorldModel | None = None,
    usage: PlatformUsage | None = None,
) -> dict[str, Any]:
    """The report's figures (module docstring) for every player count, JSON-ready."""
    if seeds < 1:
        raise ValueError("seeds must be >= 1")
    if not player_counts or any(n <= 0 for n in player_counts):
        raise ValueError("player counts must be > 0")
    world = world or default_world()
    policy = ours if ours is not None else FleetPolicy
    base_day = day or diurnal()
    out: dict[str, Any] = {
        "seeds": list(range(seeds)),
        "day": {"name": base_day.name, "hours": base_day.duration_s / 3600.0},
        "step_hold_s": hold_s,
        "objectives": {"scale_up_s": SCALE_UP_OBJECTIVE_S, "scale_down_hold_s": SCALE_DOWN_HOLD_S},
        "players": {},
    }
    for n in player_counts:
        day_trace, step_trace = day_for(n, base_day), step_for(n, base_day, hold_s)
        days = [simulate(day_trace, {"ours": policy}, seed=s, world=world)["ours"] for s in range(seeds)]
        steps = [simulate(step_trace, {"ours": policy}, seed=s, world=world)["ours"] for s in range(seeds)]
        out["players"][str(n)] = _player_count(n, day_trace, step_trace, days, steps, world, hold_s, usage)
    return out


def _player_count(
    players: int,
    day: Trace,
    step: Trace,
    days: Sequence[PolicyResult],
    steps: Sequence[PolicyResult],
    world: WorldModel,
    hold_s: float,
    usage: PlatformUsage | None,
) -> dict[str, Any]:
    hours = days[0].duration_s / 3600.0
    month = HOURS_PER_MONTH / hours
    peak_players = max(step.players)
    tiers: dict[str, Any] = {}
    for name in days[0].tiers:
        model = world.tiers[name]
        day_runs = [d.tiers[name] for d in days]
        step_runs = [s.tiers[name] for s in steps]
        needed = model.arrival_rps(peak_players)
        ups = [scale_up_s(t, hold_s, needed, 2 * hold_s) for t in step_runs]
        downs = [first_scale_in_s(t, 2 * hold_s) for t in step_runs]
        after_drop = [
            sum(v for m, v in zip(t.series.minute_s, t.series.slo_violation, strict=True) if m >= 2 * hold_s)
            for t in step_runs
        ]
        cost = _mean(t.cost_usd for t in day_runs)
        floor = min(on_demand_floor(t) for t in day_runs)
        up_p95 = p95_nearest_rank(ups)
        tiers[name] = {
            "instance_type": model.instance.name,
            "hosts_mean": _mean(t.gpu_hours for t in day_runs) / hours,
            "hosts_peak": max(max(t.series.hosts, default=0) for t in day_runs),
            "max_hosts": model.policy.max_hosts,
            "gpu_hours_per_day": _mean(t.gpu_hours for t in day_runs),
            "on_demand_hours_per_day": _mean(t.on_demand_hours for t in day_runs),
            "spot_hours_per_day": _mean(t.spot_hours for t in day_runs),
            "on_demand_usd_per_month": _mean(t.on_demand_cost_usd for t in day_runs) * month,
            "spot_usd_per_month": _mean(t.spot_cost_usd for t in day_runs) * month,
            "usd_per_month": cost * month,
            "usd_per_player_month": cost * month / players,
            "slo_violation_minutes_per_day": _mean(t.slo_violation_minutes for t in day_runs),
            "spot_interruptions_per_day": _mean(t.spot_interruptions for t in day_runs),
            "scale_up_s": [_finite(u) for u in ups],
            "scale_up_s_p95": _finite(up_p95),
            "scale_up_met": up_p95 <= SCALE_UP_OBJECTIVE_S,
            # The controller asked for the group's maximum during the peak: the ceiling, not the speed.
            "step_at_max_hosts": any(max(t.series.desired) >= model.policy.max_hosts for t in step_runs),
            "first_scale_in_after_drop_s": [_finite(d) for d in downs],
            "slo_violation_minutes_after_drop": max(after_drop),
            "scale_ins_with_waiting_messages": max(t.scale_ins_with_queue for t in step_runs),
            "scale_down_met": min(downs) >= SCALE_DOWN_HOLD_S
            and max(after_drop) == 0
            and max(t.scale_ins_with_queue for t in step_runs) == 0,
            "on_demand_floor_hosts": floor,
            "commitments": _commitments(floor, model.instance.on_demand_usd_per_h),
        }
    fleet_month = sum(t["usd_per_month"] for t in tiers.values())
    mean_hosts = sum(t["hosts_mean"] for t in tiers.values())
    lines = platform_costs(players, mean_hosts, usage)
    platform_month = sum(line.usd_per_month for line in lines)
    total = fleet_month + platform_month
    status = STATUS_ESTIMATES.get(players)
    return {
        "players_online_mean": players,
        "players_online_peak": max(day.players),
        "step_players": [min(step.players), peak_players],
        "tiers": tiers,
        "fleet": {
            "gpu_hours_per_day": sum(t["gpu_hours_per_day"] for t in tiers.values()),
            "hosts_mean": mean_hosts,
            "usd_per_month": fleet_month,
            "usd_per_player_month": fleet_month / players,
            "slo_violation_minutes_per_day": sum(t["slo_violation_minutes_per_day"] for t in tiers.values()),
            "commitment_saving_usd_per_month": sum(
                t["commitments"][0]["saving_usd_per_month"] for t in tiers.values()
            ),
        },
        "platform": [asdict(line) for line in lines],
        "platform_usd_per_month": platform_month,
        "total_usd_per_month": total,
        "total_usd_per_player_month": total / players,
        "status_estimate": {
            "usd_per_month": status["usd_per_month"] if status else STATUS_USD_PER_PLAYER_MONTH * players,
            "source": "cost impact analysis" if status else "$8/player-month at scale x players",
            "gpus": status["gpus"] if status else None,
        },
        "load_test": {
            "scale_up_under_5_min": all(t["scale_up_met"] for t in tiers.values()),
            "scale_down_safe_over_15_min": all(t["scale_down_met"] for t in tiers.values()),
        },
        "quotas": _quotas(days, world),
    }


def _commitments(floor: int, on_demand_usd_per_h: float) -> list[dict[str, Any]]:
    """Each commitment covering the On-Demand floor: hosts that run every hour, so a commitment sized to
    them is always used."""
    rows = []
    for name, discount in COMMITMENTS:
        rows.append(
            {
                "option": name,
                "discount": discount,
                "commit_usd_per_hour": floor * on_demand_usd_per_h * (1 - discount),
                "saving_usd_per_month": floor * on_demand_usd_per_h * discount * HOURS_PER_MONTH,
            }
        )
    return rows


def _quotas(days: Sequence[PolicyResult], world: WorldModel) -> dict[str, Any]:
    """vCPUs at the busiest minute (On-Demand hosts of each tier's first type; Spot hosts counted at the
    largest of the tier's types, the pool capacity-optimized may land in), and what the groups' maxima
    would need."""
    on_demand_peak = spot_peak = 0
    for result in days:
        minutes = len(next(iter(result.tiers.values())).series.minute_s)
        for m in range(minutes):
            on_demand = spot = 0
            for name, tier in result.tiers.items():
                model = world.tiers[name]
                largest = max(x.vcpus for x in model.instance_types)
                od = tier.series.on_demand[m]
                on_demand += od * model.instance.vcpus
                spot += (tier.series.hosts[m] - od) * largest
            on_demand_peak, spot_peak = max(on_demand_peak, on_demand), max(spot_peak, spot)
    at_max_od = at_max_spot = 0
    for name in days[0].tiers:
        model = world.tiers[name]
        hosts = model.policy.max_hosts
        od = world.spot.on_demand_target(hosts, world.spot.base_for(model.policy))
        at_max_od += od * model.instance.vcpus
        at_max_spot += (hosts - od) * max(x.vcpus for x in model.instance_types)
    return {
        "on_demand_vcpus_peak": on_demand_peak,
        "spot_vcpus_peak": spot_peak,
        "on_demand_vcpus_request": _request(on_demand_peak),
        "spot_vcpus_request": _request(spot_peak),
        "on_demand_vcpus_at_max_hosts": at_max_od,
        "spot_vcpus_at_max_hosts": at_max_spot,
    }


def _request(vcpus: int) -> int:
    return max(QUOTA_ROUNDING, math.ceil(vcpus * QUOTA_HEADROOM / QUOTA_ROUNDING) * QUOTA_ROUNDING)


def _mean(values: Any) -> float:
    items = list(values)
    return sum(items) / len(items)


def _finite(value: float) -> float | None:
    """JSON has no infinity: a scale-up that never happened (or a tier that never scaled in) is null."""
    return value if math.isfinite(value) else None


# --- Markdown ----------------------------------------------------------------------------------------------


def report_markdown(report: Mapping[str, Any]) -> str:
    """docs/cost-report.md: the same sections and tables every run; numbers from `report`."""
    counts = report["players"]
    seeds = report["seeds"]
    tiers = list(next(iter(counts.values()))["tiers"]) if counts else list(DEFAULT_POLICIES)
    lines = [
        "# Cost and capacity report",
        "",
        "Generated by `make cost-report` (`fleet report --markdown`): do not edit by hand. Ours is the "
        "fleet controller's tick code with in-memory adapters (`--controller policy`) in the simulated world "
        "of `fleet_sim/model.py` (prices, Spot, instance types, demand per player: every constant there is "
        f"sourced or marked as an assumption). Seeds {seeds[0]}..{seeds[-1]}; the day is the `"
        f"{report['day']['name']}` trace ({report['day']['hours']:g} h) rescaled to each mean players online. "
        "Definitions: `fleet_sim/report.py`.",
        "",
        "## Fleet per tier",
        "",
        "Hosts: billed hosts (booting, serving, draining) on average over the day and at its busiest minute. "
        "Costs: the day scaled to a 730-hour month. SLO minutes: minutes of the day a tier violated its "
        "latency or queue-wait objective (mean over seeds).",
        "",
        "| players online | tier | hosts mean | hosts peak | GPU-h/day | On-Demand / Spot h/day "
        "| SLO min/day | $/month | $/player-month |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, data in counts.items():
        for tier, t in data["tiers"].items():
            lines.append(
                f"| {int(n):,} | {tier} | {t['hosts_mean']:.1f} | {t['hosts_peak']} | "
                f"{t['gpu_hours_per_day']:.1f} | {t['on_demand_hours_per_day']:.1f} / "
                f"{t['spot_hours_per_day']:.1f} | {t['slo_violation_minutes_per_day']:.1f} | "
                f"{_usd(t['usd_per_month'])} | {t['usd_per_player_month']:.2f} |"
            )
    lines += [
        "",
        "## Load-test points",
        "",
        f"The step: the day's trough held {report['step_hold_s'] / 60:g} min, a jump in one minute to its peak "
        f"held {report['step_hold_s'] / 60:g} min, the trough again. Scale-up: from the jump until the tier's "
        "in-service hosts' true throughput at the latency objective covers the peak's arrival rate, p95 over "
        'seeds (nearest rank); "max hosts": the tier asked for its group\'s maximum, which cannot serve the '
        "peak. Scale-down: minutes from the drop to the first scale-in (lowest seed); safe when "
        "that is at least 15 min, no scale-in is decided while messages wait and no minute after the drop "
        "violates the SLO.",
        "",
        "| players online | step (players) | "
        + " | ".join(f"{t} scale-up p95 s" for t in tiers)
        + " | scale-up < 5 min | "
        + " | ".join(f"{t} first scale-in min" for t in tiers)
        + " | scale-down safe > 15 min |",
        "|---:|---:|" + "---:|" * len(tiers) + "---|" + "---:|" * len(tiers) + "---|",
    ]
    for n, data in counts.items():
        low, high = data["step_players"]
        ups = [_scale_up(data["tiers"][t]) for t in tiers]
        downs = [_minutes(min_or_none(data["tiers"][t]["first_scale_in_after_drop_s"])) for t in tiers]
        lt = data["load_test"]
        lines.append(
            f"| {int(n):,} | {low:,.0f} -> {high:,.0f} | "
            + " | ".join(ups)
            + f" | {_met(lt['scale_up_under_5_min'])} | "
            + " | ".join(downs)
            + f" | {_met(lt['scale_down_safe_over_15_min'])} |"
        )
    lines += [
        "",
        "## Monthly cost against the status document",
        "",
        "Fleet: the simulated GPU hosts. Knowledge base and monitoring: the estimate of "
        "`fleet_sim/costs.py` (below). Status estimate: the status document's cost analysis (~$8,000 at 1,000 "
        'players, ~$80,000 at 10,000); for other counts its "$8/player/month at scale" times the players. '
        "The estimate prices 10-15 GPUs at 1,000 players and 50-80 at 10,000, all at On-Demand rates ($730-870 "
        "a month each); the simulated groups run 80 % of the hosts above the base on Spot, follow the day down "
        "at night, and size the tiers from the demand per player of `fleet_sim/model.py` "
        "(`REQUESTS_PER_PLAYER_MINUTE`, an assumption): the ratio moves with that assumption first.",
        "",
        "| players online | fleet $/month | KB + monitoring $/month | total $/month | total $/player-month "
        "| status estimate $/month | total / estimate |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, data in counts.items():
        estimate = data["status_estimate"]["usd_per_month"]
        lines.append(
            f"| {int(n):,} | {_usd(data['fleet']['usd_per_month'])} | {_usd(data['platform_usd_per_month'])} | "
            f"{_usd(data['total_usd_per_month'])} | {data['total_usd_per_player_month']:.2f} | "
            f"{_usd(estimate)} | {data['total_usd_per_month'] / estimate:.2f} |"
        )
    lines += [
        "",
        "## Savings Plans and Reserved Instances for the On-Demand base",
        "",
        "The On-Demand floor is the On-Demand hosts the tier had in 99 % of the day's minutes (lowest seed): "
        "hosts that run all but minutes a day, so a commitment sized to them is used. The groups launch their "
        "On-Demand hosts as the first instance type, so the commitment is for that type. Discount rates are "
        "assumptions (`fleet_sim/costs.py`: check the pricing pages for the exact type before buying); "
        "Spot hours are not covered by any commitment.",
        "",
        "| players online | tier | instance type | On-Demand floor | option | discount | commit $/h "
        "| saving $/month |",
        "|---:|---|---|---:|---|---:|---:|---:|",
    ]
    for n, data in counts.items():
        for tier, t in data["tiers"].items():
            for c in t["commitments"]:
                lines.append(
                    f"| {int(n):,} | {tier} | {t['instance_type']} | {t['on_demand_floor_hosts']} | "
                    f"{c['option']} | {c['discount']:.0%} | {c['commit_usd_per_hour']:.3f} | "
                    f"{_usd(c['saving_usd_per_month'])} |"
                )
    lines += [
        "",
        "## Knowledge base and monitoring",
        "",
        "A documented estimate, not a simulation: published us-east-1 list prices and the usage parameters of "
        "`fleet_sim.costs.PlatformUsage` (each an assumption to replace with the bill). Prices: Amazon Aurora "
        "pricing (Serverless v2, $0.12 per ACU-hour), AWS Lambda pricing (arm64), Amazon API Gateway pricing "
        "(REST, $3.50 per million), Amazon Bedrock pricing (Titan Text Embeddings V2, $0.00002 per 1,000 "
        "tokens), Amazon CloudWatch pricing (metrics $0.30, alarms $0.10, dashboards $3.00 beyond three, "
        "Logs $0.50 per GB), AWS Secrets Manager and AWS PrivateLink pricing.",
        "",
        "| players online | group | item | $/month | basis |",
        "|---:|---|---|---:|---|",
    ]
    for n, data in counts.items():
        for line in data["platform"]:
            lines.append(
                f"| {int(n):,} | {line['group']} | {line['item']} | {line['usd_per_month']:,.2f} | "
                f"{line['basis']} |"
            )
    lines += [
        "",
        "## EC2 quotas",
        "",
        f"vCPUs at the day's busiest minute (highest seed): On-Demand hosts as their first type, Spot hosts "
        f"as the largest of their tier's types. Request: the peak x {QUOTA_HEADROOM:g}, rounded up to "
        f"{QUOTA_ROUNDING}. At max hosts: what the groups' maxima could launch. Quotas: {ON_DEMAND_QUOTA}; "
        f"{SPOT_QUOTA}.",
        "",
        "| players online | On-Demand vCPUs peak | request | Spot vCPUs peak | request "
        "| On-Demand at max hosts | Spot at max hosts |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, data in counts.items():
        q = data["quotas"]
        lines.append(
            f"| {int(n):,} | {q['on_demand_vcpus_peak']} | {q['on_demand_vcpus_request']} | "
            f"{q['spot_vcpus_peak']} | {q['spot_vcpus_request']} | {q['on_demand_vcpus_at_max_hosts']} | "
            f"{q['spot_vcpus_at_max_hosts']} |"
        )
    return "\n".join(lines) + "\n"


def min_or_none(values: Sequence[float | None]) -> float | None:
    """The smallest value, None counting as infinite (a tier that never scaled in)."""
    finite = [v for v in values if v is not None]
    return min(finite) if finite else None


def _usd(value: float) -> str:
    return f"{value:,.0f}"


def _scale_up(tier: Mapping[str, Any]) -> str:
    value = tier["scale_up_s_p95"]
    if value is not None:
        return f"{value:.0f}"
    return "not reached (max hosts)" if tier["step_at_max_hosts"] else "not reached"


def _minutes(value: float | None) -> str:
    return "none" if value is None else f"{value / 60:.0f}"


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


__all__ = [
    "PLAYER_COUNTS",
    "capacity_report",
    "day_for",
    "first_scale_in_s",
    "p95_nearest_rank",
    "report_markdown",
    "scale_up_s",
    "step_for",
]
