"""`fleet`: replay one scaling decision from a snapshot, and compare scaling policies on player traces.

Commands (`--json` prints machine output only; bad input prints one line on stderr and exits 2):

`fleet decide --snapshot FILE.json [--json]`
    One dry-run `fleet.policy.decide` from a recorded snapshot (nothing is read from or sent to AWS)::

        {
          "tier": "gold",                       # a tier of fleet.policy.DEFAULT_POLICIES
          "now_s": 1795810500,                  # epoch seconds of the decision
          "signals": {                          # fleet.policy.TierSignals without now_s
            "visible": 420, "in_flight": 36, "oldest_age_s": 14.0,        # required
            "in_service": 4, "pending": 0, "draining": 0, "desired": 4,   # required
            "arrival_rps": 16.5, "gpu_util": 0.86, "kv_cache_usage": 0.71,  # optional (null: unknown)
            "latency_p95_s": 1.35, "metrics_time_s": 1795810410           # optional (null: unknown)
          },
          "state": {"low_demand_since_s": null, "last_scale_out_s": 1795808700,   # optional:
                    "last_scale_in_s": null, "panic_until_s": null},              # fleet.policy.TierState
          "policy": {"max_hosts": 20}           # optional: TierPolicy fields overriding the tier's defaults
        }

    `signals` takes the `signals` object of a controller audit record (`fleet.controller.audit_record`) as
    it is. A whole audit record is accepted too: its `decided_at` gives `now_s` when `now_s` is absent, and
    its decision keys (action, reasons, ...) are ignored. Counts are JSON integers >= 0, times and rates
    numbers; unknown keys are errors (a misspelt optional key would otherwise be silently "unknown").
    Prints the decision: action, desired, required_hosts, panic, capacity_at_max, reasons, new_state and the
    other `Decision` intermediates. Example: events/fleet-snapshot.json.

`fleet simulate --trace NAME_OR_CSV [--json] [--plot FILE.png] [--seed N] [--controller deployed|policy]
               [--host-speed FACTOR]`
    Runs a built-in or recorded trace (`fleet_sim.BUILTIN_TRACES`, `fleet_sim.traces.RECORDED_TRACES`: the
    Azure LLM inference 2023 traces `azure-conv` and `azure-code`) or a `t_s,players` CSV through ours
    (`controller`), the baselines `target-tracking-gpu70`, `target-tracking-requests` (swept over its
    targets; the cheapest that meets the SLO is reported, see `best_request_target`) and
    `sqs-backlog-per-instance`, and the `clairvoyant` bound, with the simulator's common random numbers for
    seed N (default 0). `--host-speed` scales every simulated host's true throughput (the policies keep
    their configuration). Ours is, by default, the deployed FleetControllerFunction and
    FleetScaleDownFunction of template.yaml, deployed into moto and invoked on their schedules against
    moto's SQS, CloudWatch, Auto Scaling and DynamoDB (`fleet_sim.deployed.DeployedController`: about 0.1 s
    per simulated minute); `--controller policy` runs the same controller tick code with in-memory adapters
    instead (`fleet_sim.FleetPolicy`, ~100x faster). `--json` prints::

        {"trace": {"name", "seed", "duration_s", "mean_players", "peak_players", "host_speed"},
         "policies": {POLICY: {"gpu_hours", "cost_usd", "slo_violation_minutes", "p95_queue_wait_s",
                               "scale_actions", "scale_ins_with_backlog"}},
         "target_tracking_requests_target": FRACTION,
         "cost_per_player_month": {POLICY: {PLAYERS: USD}}}

    POLICY is each of controller, target-tracking-gpu70, target-tracking-requests, sqs-backlog-per-instance
    and clairvoyant. A run meets the SLO when at most `SLO_MINUTES_SHARE` of its tier-minutes violate it.
    `scale_ins_with_backlog` is the simulator's `scale_ins_with_queue`: scale-ins decided while messages
    were waiting (visible > 0). The simulator's own `scale_ins_with_backlog` also counts in-flight work,
    which by design does not block scale-in (a leaving host drains its own first), so it is not reported.
    `cost_per_player_month` is `fleet_sim.cost_per_player_month` for the players the trace has: the run's
    cost scaled to a 730-hour month and divided by the trace's mean players online; PLAYERS is that mean,
    rounded (the object is empty for a trace with nobody online). For the cost at other player counts, with
    the fleet sized for them, see `fleet report`.
    `--plot` draws, per tier, demand, hosts (in service solid, desired dashed, scale decisions as ticks)
    and the per-minute P95 queue wait and P95 latency against the tier's objectives over time, one colour
    per policy, Spot interruption notices marked; the title holds each policy's GPU-hours, cost and
    SLO-violation minutes (matplotlib, Agg backend).

`fleet bench [--json] [--seeds N] [--controller deployed|policy] [--host-speed FACTOR]`
    Every built-in and recorded trace with seeds 0..N-1 (default 1; with N > 1 each figure is the mean
    over the seeds). Prints the Markdown tables the docs use: per trace and policy the figures above plus
    gpu_hours as a ratio of the clairvoyant's, the goal check per trace (ours: no more SLO-violation minutes
    than the best baseline, at most `CLAIRVOYANT_FACTOR` x the clairvoyant's GPU-hours, no scale-in while
    messages wait), and the cost per player-month at 1,000 and 10,000 players (the diurnal day rescaled to
    that many players online on average, the fleet sized for them).

`fleet report [--seeds N] [--json | --markdown] [--players LIST]`
    The cost and capacity report (`fleet_sim.report`, definitions there): for 100, 500, 1,000, 5,000 and
    10,000 players online (or LIST, comma-separated), ours (in memory, `--controller policy`) on the
    diurnal day rescaled to that mean and on the load-test step, seeds 0..N-1 (default 10): per tier hosts
    at mean and peak, scale-up time to the peak (p95 over seeds), SLO-violation minutes, GPU-hours by
    purchase option, $/month and $/player-month; the status document's estimates beside them; Savings
    Plan / Reserved Instance advice from the On-Demand floor; the knowledge base's and monitoring's cost
    (`fleet_sim.costs`); whether scale-up stays under 5 minutes and scale-down is safe over 15; the vCPU
    quotas to request. `--markdown` prints docs/cost-report.md (`make cost-report`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from rich import box
from rich.console import Console
from rich.table import Table

from fleet.policy import DEFAULT_POLICIES, Decision, TierPolicy, TierSignals, TierState, decide

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from fleet_sim import FleetWide, PolicyFactory, PolicyResult, Trace

OURS: Final = "controller"
DEPLOYED: Final = "deployed"  # --controller: the deployed functions on moto (default) or `policy` (in memory)
IN_MEMORY: Final = "policy"
CONTROLLERS: Final = (DEPLOYED, IN_MEMORY)
TARGET_TRACKING: Final = "target-tracking-gpu70"
REQUESTS_TRACKING: Final = "target-tracking-requests"
SQS_BACKLOG: Final = "sqs-backlog-per-instance"
CLAIRVOYANT: Final = "clairvoyant"
POLICY_NAMES: Final = (OURS, TARGET_TRACKING, REQUESTS_TRACKING, SQS_BACKLOG, CLAIRVOYANT)
# Column headings of the `simulate` table (the legend under it spells them out).
SHORT_NAMES: Final = {
    OURS: "ours",
    TARGET_TRACKING: "TT gpu70",
    REQUESTS_TRACKING: "TT req",
    SQS_BACKLOG: "SQS/host",
    CLAIRVOYANT: "oracle",
}
BASELINE_NAMES: Final = (TARGET_TRACKING, REQUESTS_TRACKING, SQS_BACKLOG)
# A run meets the SLO when at most this share of its tier-minutes violate it (99 % of minutes within).
SLO_MINUTES_SHARE: Final = 0.01
# Goal: ours within this factor of the clairvoyant's GPU-hours.
CLAIRVOYANT_FACTOR: Final = 1.2
BENCH_HOST_SPEEDS: Final = (0.75, 1.0, 1.5)
CONTROLLER_HELP: Final = (
    "ours as the deployed FleetController/FleetScaleDown functions invoked on moto (default), or "
    "`policy`: the same controller tick code with in-memory adapters (fast)"
)
HOST_SPEED_HELP: Final = (
    "scale the simulated hosts' true throughput by FACTOR (the policies keep their configured throughput)"
)
PLAYER_COUNTS: Final = (1_000, 10_000)  # bench's cost per player-month with the fleet sized for them
REPORT_SEEDS: Final = 10
# Decision keys of an audit record: present when a whole record is replayed, recomputed here, so ignored.
_AUDIT_KEYS: Final = frozenset(
    {
        "decided_at",
        "applied",
        "dry_run",
        "error",
        "action",
        "desired",
        "required_hosts",
        "backlog",
        "backlog_per_ready_host",
        "demand_ratio",
        "panic",
        "capacity_at_max",
        "metrics_fresh",
        "reasons",
        "terminated",
    }
)
_SNAPSHOT_KEYS: Final = frozenset({"tier", "now_s", "signals", "state", "policy"})
_POLICY_COLOURS: Final = {
    OURS: "tab:blue",
    TARGET_TRACKING: "tab:orange",
    REQUESTS_TRACKING: "tab:purple",
    SQS_BACKLOG: "tab:green",
    CLAIRVOYANT: "tab:grey",
}

stdout = Console()


class InputError(Exception):
    """Bad user input: reported as one line on stderr, exit code 2."""


# --- decide ----------------------------------------------------------------------------------------------------


def load_snapshot(path: Path) -> tuple[TierPolicy, TierSignals, TierState]:
    """The policy, signals and state a snapshot file describes (format in the module docstring)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"snapshot {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"snapshot {path}: cannot read: {exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"snapshot {path}: invalid JSON: {exc}") from None
    try:
        return parse_snapshot(raw)
    except (InputError, ValueError) as exc:  # ValueError: the dataclasses' own range checks
        raise InputError(f"snapshot {path}: {exc}") from None


def parse_snapshot(raw: Any) -> tuple[TierPolicy, TierSignals, TierState]:
    if not isinstance(raw, dict):
        raise InputError(f"expected a JSON object, got {_json_type(raw)}")
    unknown = sorted(set(raw) - _SNAPSHOT_KEYS - _AUDIT_KEYS)
    if unknown:
        raise InputError(f"unknown keys {', '.join(unknown)} (expected {', '.join(sorted(_SNAPSHOT_KEYS))})")
    tier = raw.get("tier")
    if not isinstance(tier, str):
        raise InputError("'tier' must be a string")
    if tier not in DEFAULT_POLICIES:
        raise InputError(f"unknown tier {tier!r} (known: {', '.join(DEFAULT_POLICIES)})")

    signals_raw = _object(raw, "signals", required=True)
    now_s = _now(raw, signals_raw)
    signal_fields = {k: v for k, v in signals_raw.items() if k != "now_s"}
    signals = TierSignals(**_typed_fields(TierSignals, signal_fields, "signals", skip={"now_s"}), now_s=now_s)
    state = TierState(**_typed_fields(TierState, _object(raw, "state"), "state"))
    overrides = _typed_fields(TierPolicy, _object(raw, "policy"), "policy", skip={"name"}, all_optional=True)
    policy = dataclasses.replace(DEFAULT_POLICIES[tier], **overrides)
    return policy, signals, state


def _now(raw: dict[str, Any], signals: dict[str, Any]) -> float:
    """now_s: top level, else inside signals, else an audit record's decided_at."""
    if "now_s" in raw and "now_s" in signals and raw["now_s"] != signals["now_s"]:
        raise InputError("now_s given twice with different values (top level and signals)")
    value = raw.get("now_s", signals.get("now_s"))
    if value is None and isinstance(raw.get("decided_at"), str):
        try:
            decided = datetime.fromisoformat(raw["decided_at"])
        except ValueError:
            raise InputError(f"decided_at {raw['decided_at']!r} is not an ISO 8601 time") from None
        if decided.tzinfo is None:
            raise InputError(f"decided_at {raw['decided_at']!r} has no time zone")
        return decided.timestamp()
    if value is None:
        raise InputError("missing 'now_s' (epoch seconds of the decision)")
    return _coerce(value, float, "now_s")


def _object(raw: dict[str, Any], key: str, *, required: bool = False) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        if required:
            raise InputError(f"missing '{key}' object")
        return {}
    if not isinstance(value, dict):
        raise InputError(f"'{key}' must be an object, got {_json_type(value)}")
    return value


def _typed_fields(
    cls: type,
    values: Mapping[str, Any],
    where: str,
    *,
    skip: frozenset[str] | set[str] = frozenset(),
    all_optional: bool = False,
) -> dict[str, Any]:
    """`values` checked against the dataclass `cls`'s field types: keyword arguments for it."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise InputError(f"{where}: unknown keys {', '.join(unknown)} (expected {', '.join(fields)})")
    if not all_optional:
        missing = [
            name
            for name, f in fields.items()
            if name not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise InputError(f"{where}: missing {', '.join(missing)}")
    return {name: _coerce(value, hints[name], f"{where}.{name}") for name, value in values.items()}


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` as the JSON form of `hint` (int, float, or X | None); InputError if it is not."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise InputError(f"{where} must not be null")
    # bool is an int subclass in Python; true/false for a count or a rate is a mistake.
    if int in options and isinstance(value, int) and not isinstance(value, bool):
        return value
    if float in options and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise InputError(f"{where} must be a finite number")
        return float(value)
    wanted = " or ".join(
        "null" if o is type(None) else "an integer" if o is int else "a number" for o in options
    )
    raise InputError(f"{where} must be {wanted}, got {_json_type(value)} {json.dumps(value)}")


def _json_type(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def decision_json(tier: str, signals: TierSignals, decision: Decision) -> dict[str, Any]:
    return {
        "tier": tier,
        "current_desired": signals.desired,
        "action": decision.action,
        "desired": decision.desired,
        "required_hosts": decision.required_hosts,
        "capacity_hosts": decision.capacity_hosts,
        "backlog": decision.backlog,
        "backlog_per_ready_host": decision.backlog_per_ready_host,
        "demand_ratio": decision.demand_ratio,
        "panic": decision.panic,
        "capacity_at_max": decision.capacity_at_max,
        "metrics_fresh": decision.metrics_fresh,
        "host_throughput_rps": decision.host_throughput_rps,
        "replace_hosts": list(decision.replace_hosts),
        "launch_backoff": decision.launch_backoff,
        "reasons": list(decision.reasons),
        "new_state": dataclasses.asdict(decision.new_state),
    }


def _cell(value: object) -> str:
    """A state value for the table: times whole, rates to 3 digits, histories as (time, value) pairs."""
    if value is None or value == ():
        return "-"
    if isinstance(value, int | float):
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    if isinstance(value, list | tuple):
        return ", ".join(
            _cell(v) if not isinstance(v, list | tuple) else f"({', '.join(_cell(x) for x in v)})"
            for v in value
        )
    return str(value)


def cmd_decide(args: argparse.Namespace) -> int:
    policy, signals, state = load_snapshot(Path(args.snapshot))
    decision = decide(policy, signals, state)
    out = decision_json(policy.name, signals, decision)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    colour = {"scale_out": "green", "scale_in": "yellow", "hold": "cyan"}[decision.action]
    stdout.print(
        f"[bold]{policy.name}[/]: [{colour}]{decision.action}[/] {signals.desired} -> {decision.desired}",
        highlight=False,
    )
    table = Table("field", "value")
    for key in ("required_hosts", "capacity_hosts", "backlog", "panic", "capacity_at_max", "metrics_fresh"):
        table.add_row(key, str(out[key]))
    table.add_row("backlog_per_ready_host", f"{decision.backlog_per_ready_host:.2f}")
    table.add_row("demand_ratio", f"{decision.demand_ratio:.2f}")
    table.add_row("host_throughput_rps", f"{decision.host_throughput_rps:.2f}")
    for key, value in out["new_state"].items():
        table.add_row(f"new_state.{key}", _cell(value))
    stdout.print(table)
    stdout.print("[bold]reasons[/]")
    for i, reason in enumerate(decision.reasons, start=1):
        stdout.print(f"{i}. {reason}", markup=False, highlight=False)
    return 0


# --- simulate --------------------------------------------------------------------------------------------------


def ours_with_hold(controller: str = DEPLOYED, scale_in_hold_s: float = 0.0) -> PolicyFactory | FleetWide:
    """Ours: the deployed functions on moto (the hold as the stack's FleetScaleInHoldSeconds), or the same
    tick code in memory (the hold applied to each tier's policy as the functions apply it)."""
    from fleet.policy import with_scale_in_hold
    from fleet_sim import FleetPolicy
    from fleet_sim.deployed import DeployedController

    if controller == DEPLOYED:
        return DeployedController(parameters={"FleetScaleInHoldSeconds": f"{scale_in_hold_s:g}"})
    if not scale_in_hold_s:
        return FleetPolicy
    return lambda tier: FleetPolicy(with_scale_in_hold(tier, scale_in_hold_s))


def compared_policies(
    controller: str = DEPLOYED, scale_in_hold_s: float = 0.0
) -> dict[str, PolicyFactory | FleetWide]:
    """Ours (see `ours_with_hold`), the baselines (requests target tracking at every target of its sweep,
    `REQUESTS_TRACKING@FRACTION`) and the clairvoyant."""
    from fleet_sim import sqs_backlog_per_instance, target_tracking_gpu70
    from fleet_sim.baselines import REQUEST_TARGET_FRACTIONS, Clairvoyant, requests_target

    ours = ours_with_hold(controller, scale_in_hold_s)
    sweep = {f"{REQUESTS_TRACKING}@{f:g}": requests_target(f) for f in REQUEST_TARGET_FRACTIONS}
    return {
        OURS: ours,
        TARGET_TRACKING: target_tracking_gpu70,
        **sweep,
        SQS_BACKLOG: sqs_backlog_per_instance,
        CLAIRVOYANT: Clairvoyant,
    }


def load_trace_arg(name_or_csv: str) -> Trace:
    from fleet_sim import TraceError, load_trace

    try:
        return load_trace(name_or_csv)
    except TraceError as exc:
        raise InputError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"trace {name_or_csv}: cannot read: {exc}") from None


def run(
    trace: Trace, seed: int, controller: str = DEPLOYED, host_speed: float = 1.0, scale_in_hold_s: float = 0.0
) -> dict[str, PolicyResult]:
    """Every compared policy on one trace and seed, in a world whose hosts serve `host_speed` x the
    default true throughput (the policies keep their configuration; ours gets `scale_in_hold_s`)."""
    from fleet_sim import default_world, simulate

    world = default_world(host_speed=host_speed)
    return simulate(trace, compared_policies(controller, scale_in_hold_s), seed=seed, world=world)


def slo_budget_minutes(result: PolicyResult) -> float:
    """Violation minutes a run may have and still meet the SLO (`SLO_MINUTES_SHARE` of its tier-minutes)."""
    return SLO_MINUTES_SHARE * len(result.tiers) * result.duration_s / 60.0


def best_request_target(runs: Sequence[Mapping[str, PolicyResult]]) -> str:
    """The sweep entry a team would keep: the cheapest (mean GPU-hours over the runs) that meets the SLO on
    average; when none does, the one with the fewest violation minutes."""
    names = [name for name in runs[0] if name.startswith(f"{REQUESTS_TRACKING}@")]

    def mean(name: str, field: str) -> float:
        return sum(float(getattr(r[name], field)) for r in runs) / len(runs)

    budget = sum(slo_budget_minutes(r[OURS]) for r in runs) / len(runs)
    meeting = [n for n in names if mean(n, "slo_violation_minutes") <= budget]
    if meeting:
        return min(meeting, key=lambda n: (mean(n, "gpu_hours"), n))
    return min(names, key=lambda n: (mean(n, "slo_violation_minutes"), mean(n, "gpu_hours")))


def reported(runs: Sequence[Mapping[str, PolicyResult]]) -> tuple[list[dict[str, PolicyResult]], float]:
    """The runs with the sweep folded into `REQUESTS_TRACKING` (its best target), and that target."""
    best = best_request_target(runs)
    folded = [
        {name: r[best] if name == REQUESTS_TRACKING else r[name] for name in POLICY_NAMES} for r in runs
    ]
    return folded, float(best.rpartition("@")[2])


def metrics(result: PolicyResult) -> dict[str, float | int]:
    return {
        "gpu_hours": result.gpu_hours,
        "cost_usd": result.cost_usd,
        "slo_violation_minutes": result.slo_violation_minutes,
        "p95_queue_wait_s": result.p95_queue_wait_s,
        "scale_actions": result.scale_actions,
        # Waiting messages only (see the module docstring).
        "scale_ins_with_backlog": result.scale_ins_with_queue,
    }


def player_costs(result: PolicyResult, trace: Trace) -> dict[str, float]:
    """USD per player-month for the players the trace has (its mean online), keyed by that mean rounded;
    empty when nobody is online."""
    from fleet_sim import cost_per_player_month

    players = trace.mean_players
    if players <= 0:
        return {}
    return {f"{players:.0f}": cost_per_player_month(result, players)}


def cmd_simulate(args: argparse.Namespace) -> int:
    trace = load_trace_arg(args.trace)
    [results], target = reported(
        [run(trace, args.seed, args.controller, args.host_speed, args.scale_in_hold)]
    )
    if args.plot:
        plot(trace, results, Path(args.plot), seed=args.seed)
    if args.json:
        out = {
            "trace": {
                "name": trace.name,
                "seed": args.seed,
                "duration_s": trace.duration_s,
                "mean_players": trace.mean_players,
                "peak_players": trace.peak_players,
                "host_speed": args.host_speed,
            },
            "policies": {name: metrics(r) for name, r in results.items()},
            "target_tracking_requests_target": target,
            "cost_per_player_month": {name: player_costs(r, trace) for name, r in results.items()},
        }
        print(json.dumps(out, indent=2))
        return 0
    stdout.print(
        f"[bold]{trace.name}[/]: {trace.duration_s / 3600:.1f} h, mean {trace.mean_players:,.0f} players, "
        f"peak {trace.peak_players:,.0f}, seed {args.seed}, host speed {args.host_speed:g}; "
        f"{REQUESTS_TRACKING} at its best target, {target:g} x the configured host throughput",
        highlight=False,
    )
    # One column per policy, under a short heading and a legend (five policies by nine metrics must fit
    # 80 columns: piped output is 80 wide).
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("", no_wrap=True)
    for name in results:
        table.add_column(SHORT_NAMES.get(name, name), justify="right", no_wrap=True)
    rows: list[tuple[str, Callable[[PolicyResult], str]]] = [
        ("GPU hours", lambda r: f"{r.gpu_hours:.1f}"),
        ("cost USD", lambda r: f"{r.cost_usd:.2f}"),
        ("SLO violation min", lambda r: str(r.slo_violation_minutes)),
        ("P95 queue wait s", lambda r: f"{r.p95_queue_wait_s:.1f}"),
        ("scale actions", lambda r: str(r.scale_actions)),
        ("scale-ins, queue>0", lambda r: str(metrics(r)["scale_ins_with_backlog"])),
    ]
    if trace.mean_players > 0:
        # Per player the trace has; `fleet report` sizes the fleet for other player counts.
        rows.append(("$/player-month", lambda r: f"{next(iter(player_costs(r, trace).values())):.2f}"))
    for label, cell in rows:
        table.add_row(label, *(cell(r) for r in results.values()))
    stdout.print(table)
    legend = "; ".join(f"{SHORT_NAMES[name]}: {name}" for name in results if name in SHORT_NAMES)
    stdout.print(legend, markup=False, highlight=False)
    if trace.mean_players > 0:
        stdout.print(
            f"$/player-month: the run's cost scaled to a 730-hour month / the trace's mean "
            f"{trace.mean_players:,.0f} players online (other player counts: fleet report)",
            markup=False,
            highlight=False,
        )
    else:
        stdout.print("no $/player-month: nobody is online in this trace", markup=False, highlight=False)
    if args.plot:
        stdout.print(f"plot written to {args.plot}", markup=False, highlight=False)
    return 0


def plot(trace: Trace, results: Mapping[str, PolicyResult], path: Path, *, seed: int) -> None:
    """Write `plot_figure` to `path` (the format from its suffix)."""
    fig = plot_figure(trace, results, seed=seed)
    try:
        fig.savefig(path, dpi=90)
    except (OSError, ValueError) as exc:  # a missing folder, an unknown image format
        raise InputError(f"cannot write plot {path}: {exc}") from None


def plot_figure(trace: Trace, results: Mapping[str, PolicyResult], *, seed: int) -> Figure:
    """Per tier (rows): demand and served, hosts, P95 queue wait and P95 latency over time (columns), one
    colour per policy everywhere. The objectives are dashed red lines on every tier's wait and latency axes
    (symlog scales with the objective inside, so a baseline's hour-long waits cannot flatten them); Spot
    interruption notices are crosses along the foot of the hosts axis; ours' scale decisions are triangles
    on its desired line; each policy's GPU-hours, cost and SLO-violation minutes head the figure. Artists
    carry gids (`wait-objective-<tier>`, `latency-slo-<tier>`, `spot-interruptions-<tier>-<policy>`,
    `scale-out-<tier>`, `scale-in-<tier>`) so tests find them without reading pixels."""
    # Imported here: matplotlib is a development dependency and slow to import; decide does not need it.
    # The Agg canvas renders without a display and without pyplot's global figure state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    first = next(iter(results.values()))
    tiers = list(first.tiers)
    fig = Figure(figsize=(20, 3.4 * len(tiers) + 1.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(tiers), 4, sharex=True, squeeze=False)
    colours = {name: _POLICY_COLOURS.get(name, f"C{i}") for i, name in enumerate(results)}
    for row, tier in zip(axes, tiers, strict=True):
        demand_ax, hosts_ax, wait_ax, latency_ax = row
        base = first.tiers[tier].series
        hours = [t / 3600 for t in base.minute_s]
        # Arrivals are common random numbers: the same for every policy, so one line.
        demand_ax.plot(hours, base.demand_rps, color="black", linewidth=1.2, zorder=3)
        for name, result in results.items():
            tier_result = result.tiers[tier]
            s = tier_result.series
            colour = colours[name]
            width = 1.6 if name == OURS else 0.9
            demand_ax.plot(hours, s.served_rps, color=colour, linewidth=0.8, alpha=0.8)
            hosts_ax.plot(hours, s.in_service, color=colour, linewidth=width)
            hosts_ax.plot(hours, s.desired, color=colour, linewidth=0.7, linestyle="--")
            wait_ax.plot(hours, s.p95_wait_s, color=colour, linewidth=width)
            latency_ax.plot(hours, s.p95_latency_s, color=colour, linewidth=width)
            if tier_result.spot_interruption_s:
                hosts_ax.plot(
                    [t / 3600 for t in tier_result.spot_interruption_s],
                    [0.02] * len(tier_result.spot_interruption_s),
                    linestyle="none",
                    marker="x",
                    markersize=5,
                    color=colour,
                    transform=hosts_ax.get_xaxis_transform(),  # x in hours, y along the axis' foot
                    gid=f"spot-interruptions-{tier}-{name}",
                    clip_on=False,
                )
            if name == OURS:
                _mark_decisions(hosts_ax, tier, hours, s.desired, colour)
        policy = DEFAULT_POLICIES.get(tier)
        if policy is not None:
            _objective(
                wait_ax, policy.target_wait_s, f"wait-objective-{tier}", _largest(results, tier, "wait")
            )
            _objective(
                latency_ax,
                policy.latency_p95_slo_s,
                f"latency-slo-{tier}",
                _largest(results, tier, "latency"),
            )
        demand_ax.set_ylabel(f"{tier}\nrequests/s")
        demand_ax.set_title(f"{tier}: demand (black) and served", fontsize=10)
        hosts_ax.set_title(f"{tier}: hosts in service (solid) / desired (dashed)", fontsize=10)
        hosts_ax.set_ylabel("hosts")
        wait_ax.set_title(f"{tier}: P95 queue wait per minute", fontsize=10)
        wait_ax.set_ylabel("seconds (symlog)")
        latency_ax.set_title(f"{tier}: P95 latency per minute", fontsize=10)
        latency_ax.set_ylabel("seconds (symlog)")
    for ax in axes[-1]:
        ax.set_xlabel("hours")
    handles = [
        Line2D([], [], color=colours[name], linewidth=1.6 if name == OURS else 0.9, label=name)
        for name in results
    ]
    handles += [
        Line2D([], [], color="black", linewidth=1.2, label="demand"),
        Line2D([], [], color="red", linestyle="--", label="objective (wait / latency P95)"),
        Line2D([], [], color="grey", linestyle="none", marker="x", label="Spot interruption notice"),
        Line2D([], [], color=colours.get(OURS, "C0"), linestyle="none", marker="^", label="ours: scale-out"),
        Line2D([], [], color=colours.get(OURS, "C0"), linestyle="none", marker="v", label="ours: scale-in"),
    ]
    fig.legend(handles=handles, loc="outside right upper", fontsize=9)
    headline = [
        f"{name:<26} {r.gpu_hours:8.1f} GPU-h  ${r.cost_usd:10,.2f}  {r.slo_violation_minutes:5d} SLO-violation min"
        for name, r in results.items()
    ]
    fig.suptitle(
        f"trace {trace.name}, seed {seed}: {trace.duration_s / 3600:.1f} h, mean {trace.mean_players:,.0f} "
        f"players online, peak {trace.peak_players:,.0f}\n" + "\n".join(headline),
        x=0.01,
        ha="left",
        fontsize=10,
        family="monospace",
    )
    return fig


def _largest(results: Mapping[str, PolicyResult], tier: str, which: str) -> float:
    """The largest per-minute P95 wait or latency any policy had on the tier (NaN minutes skipped)."""
    values = [
        v
        for r in results.values()
        for v in (r.tiers[tier].series.p95_wait_s if which == "wait" else r.tiers[tier].series.p95_latency_s)
        if math.isfinite(v)
    ]
    return max(values, default=0.0)


def _objective(ax: Any, objective: float, gid: str, largest: float) -> None:
    """The objective as a dashed red line, on a symlog scale linear up to it, the axis reaching at least
    twice the objective (so the line is inside whatever the data)."""
    ax.axhline(objective, color="red", linestyle="--", linewidth=1.0, gid=gid, zorder=4)
    ax.set_yscale("symlog", linthresh=objective)
    ax.set_ylim(0, max(2 * objective, 1.2 * largest))


def _mark_decisions(ax: Any, tier: str, hours: Sequence[float], desired: Sequence[int], colour: str) -> None:
    """Triangles where ours changed the desired count: up for a scale-out, down for a scale-in."""
    outs = [(h, d) for h, d, before in zip(hours[1:], desired[1:], desired, strict=False) if d > before]
    ins = [(h, d) for h, d, before in zip(hours[1:], desired[1:], desired, strict=False) if d < before]
    for points, marker, gid in ((outs, "^", f"scale-out-{tier}"), (ins, "v", f"scale-in-{tier}")):
        ax.plot(
            [h for h, _ in points],
            [d for _, d in points],
            linestyle="none",
            marker=marker,
            markersize=5,
            color=colour,
            markeredgecolor="black",
            markeredgewidth=0.4,
            gid=gid,
            zorder=5,
        )


# --- bench -----------------------------------------------------------------------------------------------------


def bench(
    seeds: int, controller: str = DEPLOYED, host_speed: float = 1.0, scale_in_hold_s: float = 0.0
) -> dict[str, Any]:
    """Every built-in and recorded trace x policy, each figure the mean over seeds 0..seeds-1, and the goal
    check per trace (see `goal`)."""
    from fleet_sim import BUILTIN_TRACES
    from fleet_sim.traces import RECORDED_TRACES

    out: dict[str, Any] = {
        "seeds": list(range(seeds)),
        "host_speed": host_speed,
        "controller": controller,
        "scale_in_hold_s": scale_in_hold_s,
        "traces": {},
    }
    for name in (*BUILTIN_TRACES, *RECORDED_TRACES):
        trace = load_trace_arg(name)
        runs, target = reported(
            [run(trace, seed, controller, host_speed, scale_in_hold_s) for seed in range(seeds)]
        )
        policies = {policy: _mean([metrics(r[policy]) for r in runs]) for policy in POLICY_NAMES}
        bound = policies[CLAIRVOYANT]["gpu_hours"]
        for figures in policies.values():
            figures["gpu_hours_vs_clairvoyant"] = figures["gpu_hours"] / bound if bound else None
        out["traces"][name] = {
            "mean_players": trace.mean_players,
            "policies": policies,
            "target_tracking_requests_target": target,
            "slo_budget_minutes": sum(slo_budget_minutes(r[OURS]) for r in runs) / len(runs),
            "goal": goal(policies),
            "cost_per_player_month": {OURS: _mean([player_costs(r[OURS], trace) for r in runs])}
            if trace.mean_players > 0
            else {OURS: {}},
        }
    out["player_month"] = player_month_costs(seeds, controller, host_speed, scale_in_hold_s)
    return out


def goal(policies: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Ours against the goal: no more SLO-violation minutes than the best baseline, at most
    `CLAIRVOYANT_FACTOR` x the clairvoyant's GPU-hours, no scale-in while messages wait."""
    ours = policies[OURS]
    best = min(BASELINE_NAMES, key=lambda n: (policies[n]["slo_violation_minutes"], policies[n]["gpu_hours"]))
    ratio = ours["gpu_hours_vs_clairvoyant"]
    checks = {
        "slo_vs_best_baseline": ours["slo_violation_minutes"] <= policies[best]["slo_violation_minutes"],
        "gpu_hours_vs_clairvoyant": ratio is not None and ratio <= CLAIRVOYANT_FACTOR,
        "no_scale_in_with_waiting_messages": ours["scale_ins_with_backlog"] == 0,
    }
    return {"met": all(checks.values()), "best_baseline": best, **checks}


def player_month_costs(
    seeds: int, controller: str = DEPLOYED, host_speed: float = 1.0, scale_in_hold_s: float = 0.0
) -> dict[str, dict[str, float]]:
    """USD per player-month with the fleet sized for that many players: the diurnal day rescaled so that
    N players are online on average, its cost scaled to a 730-hour month and divided by N."""
    from dataclasses import replace

    from fleet_sim import cost_per_player_month

    day = load_trace_arg("diurnal")
    costs: dict[str, dict[str, float]] = {}
    for n in PLAYER_COUNTS:
        scaled = replace(
            day, name=f"diurnal-{n}", players=tuple(p * n / day.mean_players for p in day.players)
        )
        runs, _ = reported(
            [run(scaled, seed, controller, host_speed, scale_in_hold_s) for seed in range(seeds)]
        )
        costs[str(n)] = {
            policy: sum(cost_per_player_month(r[policy], n) for r in runs) / len(runs)
            for policy in POLICY_NAMES
        }
    return costs


def _mean(rows: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    return {key: sum(row[key] for row in rows) / len(rows) for key in rows[0]}


def bench_markdown(out: Mapping[str, Any]) -> str:
    seeds = out["seeds"]
    several = len(seeds) > 1
    counts = ".1f" if several else ".0f"  # means of counts over several seeds are fractional
    lines = [
        (f"Seeds {seeds[0]}..{seeds[-1]} (mean over seeds)" if several else f"Seed {seeds[0]}")
        + f", host speed {out['host_speed']:g} (true throughput x the default world's; policies keep their "
        f"configuration), ours: `{out['controller']}`.",
        "scale_ins_with_backlog: scale-ins decided while messages were waiting (visible > 0). "
        f"{REQUESTS_TRACKING}: its best target of the sweep (x the configured host throughput).",
        "",
        "| trace | policy | gpu_hours | cost_usd | slo_violation_minutes | p95_queue_wait_s | scale_actions "
        f"| scale_ins_with_backlog | gpu_hours / {CLAIRVOYANT} |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for trace, data in out["traces"].items():
        for policy, f in data["policies"].items():
            ratio = f["gpu_hours_vs_clairvoyant"]
            label = (
                f"{policy} ({data['target_tracking_requests_target']:g})"
                if policy == REQUESTS_TRACKING
                else policy
            )
            lines.append(
                f"| {trace} | {label} | {f['gpu_hours']:.1f} | {f['cost_usd']:.2f} "
                f"| {f['slo_violation_minutes']:{counts}} | {f['p95_queue_wait_s']:.1f} "
                f"| {f['scale_actions']:{counts}} | {f['scale_ins_with_backlog']:{counts}} "
                f"| {'-' if ratio is None else f'{ratio:.2f}'} |"
            )
    lines += [
        "",
        f"Goal per trace: ours has no more SLO-violation minutes than the best baseline, at most "
        f"{CLAIRVOYANT_FACTOR:g} x the clairvoyant's GPU-hours, and no scale-in while messages wait.",
        "",
        "| trace | best baseline | SLO min: ours / best | GPU-h: ours / clairvoyant | scale-ins, queue > 0 | goal |",
        "|---|---|---:|---:|---:|---|",
    ]
    for trace, data in out["traces"].items():
        g, policies = data["goal"], data["policies"]
        ours, best = policies[OURS], policies[g["best_baseline"]]
        lines.append(
            f"| {trace} | {g['best_baseline']} | {ours['slo_violation_minutes']:{counts}} / "
            f"{best['slo_violation_minutes']:{counts}} | {ours['gpu_hours_vs_clairvoyant']:.2f} "
            f"| {ours['scale_ins_with_backlog']:{counts}} | {'met' if g['met'] else 'not met'} |"
        )
    lines += [
        "",
        "Cost per player-month with the fleet sized for that many players (the diurnal day rescaled to that "
        "mean number online; USD):",
        "",
        "| players online (mean) | " + " | ".join(POLICY_NAMES) + " |",
        "|---:|" + "---:|" * len(POLICY_NAMES),
    ]
    for n, by_policy in out.get("player_month", {}).items():
        lines.append(f"| {int(n):,} | " + " | ".join(f"{by_policy[p]:.2f}" for p in POLICY_NAMES) + " |")
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    out = bench(args.seeds, args.controller, args.host_speed, args.scale_in_hold)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        # Plain print: the Markdown is pasted into the docs as is, without rich's markup or wrapping.
        print(bench_markdown(out))
    return 0


# --- report --------------------------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from fleet_sim.report import PLAYER_COUNTS, capacity_report, report_markdown

    out = capacity_report(
        seeds=args.seeds,
        player_counts=args.players or PLAYER_COUNTS,
        ours=ours_with_hold(IN_MEMORY, args.scale_in_hold),
    )
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    if args.markdown:
        # Plain print: docs/cost-report.md is this output as is.
        print(report_markdown(out), end="")
        return 0
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"fleet report, seeds 0..{args.seeds - 1}: US dollars per month (status: the status document)",
    )
    for heading in ("players", "fleet $", "total $", "$/player", "status $", "up<5min", "down>15min"):
        table.add_column(heading, justify="right", no_wrap=True)
    for n, data in out["players"].items():
        lt = data["load_test"]
        table.add_row(
            f"{int(n):,}",
            f"{data['fleet']['usd_per_month']:,.0f}",
            f"{data['total_usd_per_month']:,.0f}",
            f"{data['total_usd_per_player_month']:.2f}",
            f"{data['status_estimate']['usd_per_month']:,.0f}",
            "met" if lt["scale_up_under_5_min"] else "not met",
            "met" if lt["scale_down_safe_over_15_min"] else "not met",
        )
    stdout.print(table)
    stdout.print("Per tier, commitments, quotas: fleet report --markdown", markup=False, highlight=False)
    return 0


def _player_counts(text: str) -> tuple[int, ...]:
    counts = []
    for part in text.split(","):
        try:
            value = int(part.strip().replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not a whole number of players") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{value} players: must be at least 1")
        counts.append(value)
    if len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"{text!r} repeats a player count")
    return tuple(counts)


# --- CLI -------------------------------------------------------------------------------------------------------


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and 0.05 <= value <= 20):
        raise argparse.ArgumentTypeError(f"{value:g} is outside 0.05..20")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleet", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    decide_cmd = sub.add_parser("decide", help="one dry-run scaling decision from a recorded snapshot")
    decide_cmd.add_argument("--snapshot", required=True, metavar="FILE.json")
    decide_cmd.add_argument("--json", action="store_true")
    decide_cmd.set_defaults(func=cmd_decide)

    simulate_cmd = sub.add_parser("simulate", help="compare ours with the baselines on one trace")
    simulate_cmd.add_argument("--trace", required=True, metavar="NAME_OR_CSV")
    simulate_cmd.add_argument("--json", action="store_true")
    simulate_cmd.add_argument("--plot", metavar="FILE.png")
    simulate_cmd.add_argument("--seed", type=_int_at_least(0), default=0, metavar="N")
    simulate_cmd.add_argument("--controller", choices=CONTROLLERS, default=DEPLOYED, help=CONTROLLER_HELP)
    simulate_cmd.add_argument(
        "--host-speed", type=_positive_float, default=1.0, metavar="FACTOR", help=HOST_SPEED_HELP
    )
    _add_scale_in_hold(simulate_cmd)
    simulate_cmd.set_defaults(func=cmd_simulate)

    bench_cmd = sub.add_parser("bench", help="every built-in trace x policy, as Markdown tables")
    bench_cmd.add_argument("--json", action="store_true")
    bench_cmd.add_argument("--seeds", type=_int_at_least(1), default=1, metavar="N")
    bench_cmd.add_argument("--controller", choices=CONTROLLERS, default=DEPLOYED, help=CONTROLLER_HELP)
    bench_cmd.add_argument(
        "--host-speed", type=_positive_float, default=1.0, metavar="FACTOR", help=HOST_SPEED_HELP
    )
    _add_scale_in_hold(bench_cmd)
    bench_cmd.set_defaults(func=cmd_bench)

    report_cmd = sub.add_parser("report", help="cost and capacity per player count (docs/cost-report.md)")
    report_output = report_cmd.add_mutually_exclusive_group()
    report_output.add_argument("--json", action="store_true")
    report_output.add_argument("--markdown", action="store_true", help="docs/cost-report.md as is")
    report_cmd.add_argument("--seeds", type=_int_at_least(1), default=REPORT_SEEDS, metavar="N")
    report_cmd.add_argument(
        "--players",
        type=_player_counts,
        default=None,  # fleet_sim.report.PLAYER_COUNTS (not imported here: decide does not load the simulator)
        metavar="LIST",
        help="players online on average, comma-separated (default: 100,500,1000,5000,10000)",
    )
    _add_scale_in_hold(report_cmd)
    report_cmd.set_defaults(func=cmd_report)
    return parser


def _add_scale_in_hold(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scale-in-hold",
        type=_hold_seconds,
        default=0.0,
        metavar="SECONDS",
        help="ours holds low demand this long before any scale-in, as the stack parameter "
        "FleetScaleInHoldSeconds does (0 to 3600; default 0: the controller's own cool-downs)",
    )


def _hold_seconds(text: str) -> float:
    from fleet.config import MAX_SCALE_IN_HOLD_S

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= MAX_SCALE_IN_HOLD_S:
        raise argparse.ArgumentTypeError(f"{text} is outside 0..{MAX_SCALE_IN_HOLD_S:g} seconds")
    return value


def _run_failures() -> tuple[type[Exception], ...]:
    """What simulate and bench report as one line with exit status 1: the deployed controller's failures (a
    handler's error, moto's, the local stack's) and a trace's. Imported only once something failed: decide
    does not load the simulator."""
    from fleet_sim import TraceError
    from fleet_sim.deployed import DeployedControllerError

    return (DeployedControllerError, TraceError)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors (2) and --help (0): argparse has already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.func(args))
    except InputError as exc:
        print(f"fleet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader closed the pipe (`fleet bench | head`): stop quietly. Pointing stdout at /dev/null keeps
        # the interpreter's final flush from raising the same error again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        if not isinstance(exc, _run_failures()):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"fleet: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
