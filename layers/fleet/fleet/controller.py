"""One controller tick: for every tier read signals, decide (fleet.policy), apply, remember, report.

The every-minute controller applies scale-out and holds; the five-minute scale-down check applies
scale-in through the drain path. Both decide with the same policy and state, so neither contradicts
the other. A dry run decides and records without acting. A tier whose signals cannot be read holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from fleet.config import FleetSettings, TierTarget
from fleet.errors import FleetError, StateConflictError
from fleet.policy import DEFAULT_POLICIES, Decision, TierPolicy, TierSignals, decide, with_scale_in_hold
from fleet.ports import Actuator, SignalReader, StateStore

Mode = Literal["scale_out", "scale_in"]


@dataclass(frozen=True, slots=True)
class TickResult:
    tier: str
    decision: Decision | None
    applied: str  # "scale_out" | "scale_in" | "backoff" | "none" | "dry_run" | "error"
    signals: TierSignals | None
    terminated: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    error: str | None = None


def policy_for(tier: TierTarget) -> TierPolicy:
    """The tier's default policy with the deployed bounds and scale-in hold (template parameters win)."""
    base = DEFAULT_POLICIES.get(tier.name) or DEFAULT_POLICIES["gold"]
    bounded = replace(base, name=tier.name, min_hosts=tier.min_hosts, max_hosts=tier.max_hosts)
    return with_scale_in_hold(bounded, tier.scale_in_hold_s)


def run_tick(
    settings: FleetSettings,
    *,
    mode: Mode,
    now: datetime,
    reader: SignalReader,
    store: StateStore,
    actuator: Actuator,
    report: Callable[[TickResult], None],
    policy: Callable[[TierTarget], TierPolicy] = policy_for,
) -> list[TickResult]:
    """One tick in `mode` over every tier; `policy` gives a tier's policy (default: the deployed one)."""
    results = []
    for tier in settings.tiers:
        try:
            result = _tick_tier(
                tier,
                settings,
                mode=mode,
                now=now,
                reader=reader,
                store=store,
                actuator=actuator,
                policy=policy(tier),
            )
        except FleetError as exc:
            result = TickResult(tier=tier.name, decision=None, applied="error", signals=None, error=str(exc))
        report(result)
        results.append(result)
    return results


def _tick_tier(
    tier: TierTarget,
    settings: FleetSettings,
    *,
    mode: Mode,
    now: datetime,
    reader: SignalReader,
    store: StateStore,
    actuator: Actuator,
    policy: TierPolicy,
) -> TickResult:
    # The state is written (conditionally) before anything is done, so a tick that lost the race with the
    # other scheduled function acts on nothing and decides again from what that one stored.
    for attempt in (1, 2):
        signals = reader.read(tier, now)
        state = store.load(tier.name)
        decision = decide(policy, signals, state)
        applied = "none"
        new_state = decision.new_state
        if decision.action == "scale_out" and mode == "scale_out":
            applied = "dry_run" if settings.dry_run else "scale_out"
        elif decision.action == "scale_in" and mode == "scale_in":
            applied = "dry_run" if settings.dry_run else "scale_in"
        elif decision.launch_backoff and decision.desired < signals.desired and mode == "scale_out":
            # Launches keep failing: desired falls to the hosts that exist, so none is launched again.
            applied = "dry_run" if settings.dry_run else "backoff"
        elif decision.action == "scale_in":
            # The scale-down check owns scale-in: remember everything but the step it did not take.
            new_state = replace(new_state, last_scale_in_s=state.last_scale_in_s)
        if settings.dry_run:
            break
        try:
            store.save(tier.name, new_state, {"action": applied})
            break
        except StateConflictError:
            if attempt == 2:
                raise
    terminated: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    if applied in ("scale_out", "backoff"):
        actuator.scale_out(tier, decision.desired)
    elif applied == "scale_in":
        terminated = tuple(actuator.scale_in(tier, signals.desired - decision.desired))
    if mode == "scale_out" and decision.replace_hosts and not settings.dry_run:
        # Slow hosts leave through their drain hook; the group launches their replacements at once.
        for instance_id in decision.replace_hosts:
            actuator.replace(instance_id)
        replaced = decision.replace_hosts
    return TickResult(
        tier=tier.name,
        decision=decision,
        applied=applied,
        signals=signals,
        terminated=terminated,
        replaced=replaced,
    )


def audit_record(result: TickResult, *, dry_run: bool, decided_at: datetime) -> dict[str, Any]:
    """The structured audit line for one tier: inputs, intermediates, reasons, what was done."""
    record: dict[str, Any] = {
        "tier": result.tier,
        "decided_at": decided_at.isoformat(),
        "applied": result.applied,
        "dry_run": dry_run,
        "error": result.error,
    }
    if result.signals is not None:
        s = result.signals
        record["signals"] = {
            "visible": s.visible,
            "in_flight": s.in_flight,
            "oldest_age_s": s.oldest_age_s,
            "arrival_rps": s.arrival_rps,
            "gpu_util": s.gpu_util,
            "kv_cache_usage": s.kv_cache_usage,
            "latency_p95_s": s.latency_p95_s,
            "metrics_time_s": s.metrics_time_s,
            "in_service": s.in_service,
            "pending": s.pending,
            "draining": s.draining,
            "desired": s.desired,
            "completed_rps": s.completed_rps,
            "players_online": s.players_online,
            "launch_failures": s.launch_failures,
            "host_types": [
                {
                    "instance_type": g.instance_type,
                    "in_service": g.in_service,
                    "completed_rps": g.completed_rps,
                    "latency_p95_s": g.latency_p95_s,
                }
                for g in s.host_types
            ],
        }
    if result.decision is not None:
        d = result.decision
        record |= {
            "action": d.action,
            "desired": d.desired,
            "required_hosts": d.required_hosts,
            "backlog": d.backlog,
            "backlog_per_ready_host": d.backlog_per_ready_host,
            "demand_ratio": d.demand_ratio,
            "panic": d.panic,
            "capacity_at_max": d.capacity_at_max,
            "metrics_fresh": d.metrics_fresh,
            "reasons": list(d.reasons),
            "terminated": list(result.terminated),
            "host_throughput_rps": round(d.host_throughput_rps, 4),
            "replaced": list(result.replaced),
            "launch_backoff": d.launch_backoff,
        }
    return record
