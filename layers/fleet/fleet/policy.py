"""Desired-capacity decisions for one tier of vLLM inference hosts.

Pure: no AWS, no I/O, no clock reads (the time is `TierSignals.now_s`). The controller Lambda calls
`decide` once per tier per tick and stores `Decision.new_state` for the next tick; the trace simulator
calls it the same way. Rules, in the order they are applied:

1. Queue need (primary; SQS numbers are authoritative). A ready host completes `host_throughput_rps`
   requests/s within the latency objective. Hosts launched now only help once booted, so the backlog
   (visible + in flight) is sized to drain within max(`target_wait_s`, `boot_time_s`):

       planned arrivals = arrival_rps + max(growth over one boot, arrival_sigmas * sqrt(arrival_rps / 60))
       queue need = planned arrivals / (host_throughput_rps * target_load)
                    + backlog / (host_throughput_rps * max(target_wait_s, boot_time_s))

   i.e. hosts to keep up with arrivals at the planned load (headroom under the throughput at which P95
   reaches its objective) PLUS hosts to drain the backlog (a sum, not a max: hosts that only match
   arrivals never shrink the queue). Arrivals are planned where they will be when a host launched now is
   ready: growth = smoothed positive trend x boot_time_s (at most `max_growth` x arrivals: a step is not
   a trend), or at
   least the arrival noise band (a minute's Poisson count). Unknown arrivals count as 0. Sizing the drain to the
   wait objective alone would ask, after one boot's worth of backlog, for many times the hosts steady
   traffic needs; an urgent backlog is panic's job (rule 4).
2. GPU saturation (secondary, only when fresh): when the GPUs are busy (utilisation >= `gpu_busy_util`)
   and the KV cache is fuller than `kv_cache_target`, required >= ceil(in_service * kv_cache_usage /
   kv_cache_target), the hosts at which the running batches would fit the target. NVML's GPU utilisation
   is a duty cycle (share of time any kernel ran): a vLLM host reads ~100 % at a fraction of its
   throughput, so utilisation alone cannot say how many hosts are needed (a utilisation target would
   keep hosts nearly idle); it confirms the hosts are busy, and the KV cache, which vLLM fills with the
   sequences it runs, says how full they are.
3. Latency safeguard (only when fresh): P95 above `latency_p95_slo_s` requires at least one host more
   than are ready (in_service + 1). A host already booting satisfies that, so a breach that lasts
   through a boot adds one host per boot, not one per tick.
4. Panic: fresh P95 > `panic_latency_factor` x SLO, or oldest message older than `panic_wait_factor`
   x `target_wait_s`, or the hosts needed to drain the backlog within `target_wait_s` alone >
   `panic_backlog_factor` x capacity.
   Panic lifts the scale-out step bound (straight to the full requirement) and sets
   `panic_until_s = now + panic_hold_s`; until then the tier stays in panic: no scale-in.
5. Booting hosts count: capacity = in_service + pending, and scale-out compares `required` with the
   current desired count (which includes them), so hosts still loading the model are never added twice.
6. Scale out in one tick: desired = max(current, required), clamped to [min_hosts, max_hosts]. Outside
   panic one tick may at most double the current count and add `scale_out_max_step` hosts (None: no
   bound). Whenever any scale-out signal is present (required > current or > capacity, P95 over SLO,
   GPUs saturated, panic) the count never decreases in that tick.
7. Scale in only when all hold: GPU utilisation and P95 are present and fresh; no message is waiting
   (visible == 0; in-flight work does not block: a leaving host drains its own first); no panic;
   demand has been low (demand_ratio < `low_demand_ratio`) continuously for `scale_in_cooldown_s`
   (tracked in `low_demand_since_s`, reset by any tick that is not low, including ticks with stale
   metrics) and no scale-out happened within that time; the previous scale-in is at least
   `scale_in_interval_s` old (lets the metrics show the smaller fleet before the next step). One step
   removes at most ceil(`scale_in_max_step` x current) hosts, at least 1, and never goes below
   `required` or `min_hosts`.
8. Missing or stale GPU/latency metrics (no value, no `metrics_time_s`, or older than `stale_after_s`):
   they are ignored, scale-out still follows the queue, scale-in is held, and a reason says so.
9. Bounds always: min_hosts <= desired <= max_hosts (a current count outside them is brought inside,
   even against rules 6-7). required > max_hosts sets `capacity_at_max` and a reason starting
   "capacity at max" (the controller alarms on it); desired goes to max_hosts, in one tick in panic or
   when the step bound allows, else over the next ticks (doubling + step: 4 -> 12 -> 28 -> 50 for gold).

demand_ratio = max(queue need, GPU saturation need, latency need) / max(capacity, 1). Every rule is monotone in
demand: more backlog, arrivals, P95, GPU utilisation or KV-cache usage never gives a smaller desired count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

Action = Literal["scale_out", "scale_in", "hold"]

# Float sums like 0.1 * 30 land a hair above the integer; without the slack ceil would add a host.
_CEIL_SLACK: Final = 1e-9


@dataclass(frozen=True, slots=True, kw_only=True)
class TierPolicy:
    """How one tier scales. Times in seconds, rates in requests per second."""

    name: str
    min_hosts: int
    max_hosts: int
    host_throughput_rps: float  # requests/s one ready host completes within the latency objective
    # Hosts are planned to run at this share of host_throughput_rps: at the throughput itself P95 sits on
    # the objective, and arrival noise or demand that grows during a boot would breach it.
    target_load: float = 0.92
    # Arrivals are planned at their rate plus this many standard deviations of a minute's Poisson count
    # (sqrt(rate / 60) req/s): relative headroom where the rate is small, little where it is large.
    arrival_sigmas: float = 2.0
    # Growing arrivals are extrapolated over one boot (hosts launched now serve only then): the trend is
    # an exponentially weighted mean of the per-datapoint slope with this weight for the newest slope.
    trend_weight: float = 0.3
    max_growth: float = 0.5  # growth planned over a boot, at most this share of the current arrivals
    target_wait_s: float  # queue-wait objective
    gpu_busy_util: float = 0.9  # NVML duty cycle at which the GPUs count as busy (rule 2)
    kv_cache_target: float = 0.8  # KV-cache usage above this on busy GPUs asks for hosts (rule 2)
    latency_p95_slo_s: float = 1.0
    panic_latency_factor: float = 2.0  # P95 > factor x SLO -> panic
    panic_backlog_factor: float = 3.0  # backlog need > factor x capacity -> panic
    panic_wait_factor: float = 3.0  # oldest message > factor x target_wait_s -> panic
    panic_hold_s: float = 300.0  # no scale-in for this long after the last panic trigger
    scale_in_cooldown_s: float = 900.0  # continuous low demand before any scale-in
    scale_in_max_step: float = 0.5  # fraction of the current count one scale-in removes (at least 1 host)
    scale_in_interval_s: float = 180.0  # between two scale-in steps
    scale_out_max_step: int | None = 4  # outside panic: at most 2 x current + this; None: unbounded
    stale_after_s: float = 180.0  # GPU/latency datapoints older than this count as missing
    boot_time_s: float = 300.0  # launch to ready (vLLM start + model load); documentation only
    low_demand_ratio: float = 0.8  # demand / capacity below this is low demand

    def __post_init__(self) -> None:
        checks = {
            "min_hosts >= 0": self.min_hosts >= 0,
            "max_hosts >= max(min_hosts, 1)": self.max_hosts >= max(self.min_hosts, 1),
            "host_throughput_rps > 0": self.host_throughput_rps > 0,
            "0 < target_load <= 1": 0 < self.target_load <= 1,
            "arrival_sigmas >= 0": self.arrival_sigmas >= 0,
            "0 < trend_weight <= 1": 0 < self.trend_weight <= 1,
            "max_growth >= 0": self.max_growth >= 0,
            "target_wait_s > 0": self.target_wait_s > 0,
            "0 <= gpu_busy_util <= 1": 0 <= self.gpu_busy_util <= 1,
            "0 < kv_cache_target <= 1": 0 < self.kv_cache_target <= 1,
            "latency_p95_slo_s > 0": self.latency_p95_slo_s > 0,
            "panic_latency_factor >= 1": self.panic_latency_factor >= 1,
            "panic_backlog_factor > 0": self.panic_backlog_factor > 0,
            "panic_wait_factor > 0": self.panic_wait_factor > 0,
            "panic_hold_s >= 0": self.panic_hold_s >= 0,
            "scale_in_cooldown_s >= 0": self.scale_in_cooldown_s >= 0,
            "0 < scale_in_max_step <= 1": 0 < self.scale_in_max_step <= 1,
            "scale_in_interval_s >= 0": self.scale_in_interval_s >= 0,
            "scale_out_max_step is None or >= 0": self.scale_out_max_step is None
            or self.scale_out_max_step >= 0,
            "stale_after_s > 0": self.stale_after_s > 0,
            "boot_time_s >= 0": self.boot_time_s >= 0,
            "0 < low_demand_ratio <= 1": 0 < self.low_demand_ratio <= 1,
        }
        broken = [rule for rule, ok in checks.items() if not ok]
        if broken:
            raise ValueError(f"tier policy {self.name!r}: {', '.join(broken)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class TierSignals:
    """What the controller read for one tier at `now_s` (epoch seconds)."""

    now_s: float
    visible: int  # SQS ApproximateNumberOfMessagesVisible
    in_flight: int  # SQS ApproximateNumberOfMessagesNotVisible
    oldest_age_s: float  # SQS ApproximateAgeOfOldestMessage
    arrival_rps: float | None = None  # recent NumberOfMessagesSent per second; None: unknown
    gpu_util: float | None = None  # 0..1, mean over in-service hosts
    kv_cache_usage: float | None = None  # 0..1, mean over in-service hosts (rule 2)
    latency_p95_s: float | None = None
    metrics_time_s: float | None = None  # timestamp of the newest GPU/latency datapoint
    in_service: int  # ready hosts
    pending: int  # launched, still booting (vLLM start + model load)
    draining: int  # terminating / being drained; no longer capacity
    desired: int  # the Auto Scaling Group's current desired capacity

    def __post_init__(self) -> None:
        counts = {
            "visible": self.visible,
            "in_flight": self.in_flight,
            "in_service": self.in_service,
            "pending": self.pending,
            "draining": self.draining,
            "desired": self.desired,
        }
        negative = [name for name, value in counts.items() if value < 0]
        if negative:
            raise ValueError(f"negative counts: {', '.join(negative)}")
        if not math.isfinite(self.now_s):
            raise ValueError("now_s must be finite")
        if not (math.isfinite(self.oldest_age_s) and self.oldest_age_s >= 0):
            raise ValueError("oldest_age_s must be finite and >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class TierState:
    """What the controller keeps between ticks (epoch seconds; None: never / not now)."""

    low_demand_since_s: float | None = None
    last_scale_out_s: float | None = None
    last_scale_in_s: float | None = None
    panic_until_s: float | None = None
    arrival_rps: float | None = None  # the last arrival rate seen, and its datapoint's time
    arrival_time_s: float | None = None
    arrival_trend: float | None = None  # req/s per second, smoothed (rule 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The decided desired capacity, why, and the intermediates for the audit record."""

    desired: int
    action: Action
    reasons: tuple[str, ...]
    panic: bool
    new_state: TierState
    required_hosts: int  # before the [min, max] clamp, so it can exceed max_hosts
    capacity_hosts: int  # in_service + pending
    backlog: int  # visible + in_flight
    backlog_per_ready_host: float  # backlog / max(in_service, 1)
    demand_ratio: float  # demand in hosts / max(capacity, 1)
    capacity_at_max: bool  # required > max_hosts
    metrics_fresh: bool  # GPU utilisation and P95 both present and not stale


def decide(policy: TierPolicy, signals: TierSignals, state: TierState) -> Decision:
    """Decide the tier's desired capacity for this tick (rules in the module docstring)."""
    p, s = policy, signals
    now = s.now_s
    reasons: list[str] = []
    capacity = s.in_service + s.pending
    backlog = s.visible + s.in_flight
    per_ready = backlog / max(s.in_service, 1)
    current = s.desired

    # --- freshness of the host metrics (queue numbers are always current) ---
    current_metrics = s.metrics_time_s is not None and now - s.metrics_time_s <= p.stale_after_s
    gpu = _usable(s.gpu_util) if current_metrics else None
    latency = _usable(s.latency_p95_s) if current_metrics else None
    metrics_fresh = gpu is not None and latency is not None
    stale_note = _metrics_problem(p, s)
    if stale_note is not None:
        reasons.append(f"{stale_note}: scale-out follows the queue only, no scale-in")

    # --- rule 1: queue need ---
    # New hosts only help once booted: size the backlog drain over max(wait objective, boot time), else a
    # backlog built up during one boot asks for many times the hosts steady traffic needs (panic, below,
    # still reacts at once to an urgent backlog measured against the wait objective alone).
    drain_window_s = max(p.target_wait_s, p.boot_time_s)
    per_host_window = p.host_throughput_rps * drain_window_s
    drain_need = backlog / per_host_window
    urgent_need = backlog / (p.host_throughput_rps * p.target_wait_s)
    arrival = _usable(s.arrival_rps)
    planned_rps = p.host_throughput_rps * p.target_load
    trend, seen_rps, seen_at = state.arrival_trend, state.arrival_rps, state.arrival_time_s
    if arrival is not None and s.metrics_time_s is not None:
        if seen_rps is not None and seen_at is not None and s.metrics_time_s > seen_at:
            slope = (arrival - seen_rps) / (s.metrics_time_s - seen_at)
            trend = slope if trend is None else trend + p.trend_weight * (slope - trend)
        seen_rps, seen_at = arrival, s.metrics_time_s
    growth = 0.0
    if arrival is not None and trend is not None and trend > 0:
        # Over one boot: a host launched now serves only then. Not counted from the datapoint's time: the
        # same datapoint read a tick later must ask for the same hosts (or a scale-in would be undone).
        growth = min(trend * p.boot_time_s, p.max_growth * arrival)  # a step in demand is not a trend
    # Headroom: the larger of the expected growth and the arrival noise band (a flat rate's slope is
    # noise of about that size, so the two are not added).
    planned_arrival = (
        None if arrival is None else arrival + max(growth, p.arrival_sigmas * math.sqrt(arrival / 60.0))
    )
    arrival_need = 0.0 if planned_arrival is None else planned_arrival / planned_rps
    queue_need = arrival_need + drain_need
    required = _ceil(queue_need)
    demand_hosts = queue_need
    arrivals_text = (
        "arrivals unknown"
        if arrival is None
        else f"arrivals {arrival:.2f} req/s need {arrival_need:.2f} hosts at {planned_rps:g} req/s/host"
    )
    reasons.append(
        f"queue: backlog {backlog} (visible {s.visible} + in flight {s.in_flight}) = {per_ready:.1f} per ready "
        f"host; a host completes {per_host_window:g} within the {drain_window_s:g} s drain window, so "
        f"draining needs {drain_need:.2f} hosts; {arrivals_text} -> {required} hosts"
    )

    # --- rule 2: GPU saturation ---
    gpu_hot = False
    kv = _usable(s.kv_cache_usage) if current_metrics else None
    if gpu is not None and kv is not None and gpu >= p.gpu_busy_util:
        kv_need = s.in_service * kv / p.kv_cache_target
        demand_hosts = max(demand_hosts, kv_need)
        required = max(required, _ceil(kv_need))
        gpu_hot = kv > p.kv_cache_target
        if gpu_hot:
            reasons.append(
                f"GPUs busy ({gpu:.2f}) with KV cache {kv:.2f} > target {p.kv_cache_target:.2f} on "
                f"{s.in_service} ready hosts -> {_ceil(kv_need)} hosts"
            )

    # --- rule 3: latency safeguard ---
    latency_breach = latency is not None and latency > p.latency_p95_slo_s
    if latency_breach:
        demand_hosts = max(demand_hosts, float(s.in_service + 1))
        required = max(required, s.in_service + 1)
        reasons.append(
            f"P95 latency {latency:.2f} s > SLO {p.latency_p95_slo_s:g} s -> at least {s.in_service + 1} "
            f"hosts (one more than {s.in_service} ready)"
        )

    # --- rule 4: panic ---
    triggers: list[str] = []
    if latency is not None and latency > p.panic_latency_factor * p.latency_p95_slo_s:
        triggers.append(f"P95 {latency:.2f} s > {p.panic_latency_factor:g} x SLO {p.latency_p95_slo_s:g} s")
    if s.oldest_age_s > p.panic_wait_factor * p.target_wait_s:
        triggers.append(
            f"oldest message {s.oldest_age_s:.0f} s > {p.panic_wait_factor:g} x wait objective {p.target_wait_s:g} s"
        )
    if urgent_need > p.panic_backlog_factor * capacity:
        triggers.append(
            f"backlog needs {urgent_need:.2f} hosts within the wait objective > "
            f"{p.panic_backlog_factor:g} x capacity {capacity}"
        )
    panic_until = state.panic_until_s
    if triggers:
        hold_until = now + p.panic_hold_s
        panic_until = hold_until if panic_until is None else max(panic_until, hold_until)
        reasons.append(
            f"panic ({'; '.join(triggers)}): full requirement at once, no scale-in until {panic_until:.0f}"
        )
    panic = bool(triggers) or (panic_until is not None and now < panic_until)
    if panic and not triggers:
        reasons.append(f"panic hold until {panic_until:.0f}: no step bound, no scale-in")

    demand_ratio = demand_hosts / max(capacity, 1)
    capacity_at_max = required > p.max_hosts
    if capacity_at_max:
        reasons.append(f"capacity at max: required {required} > max {p.max_hosts} hosts")

    # --- rules 5-6: scale out ---
    scale_out_signal = required > current or required > capacity or latency_breach or gpu_hot or panic
    low = metrics_fresh and not scale_out_signal and demand_ratio < p.low_demand_ratio
    low_since = state.low_demand_since_s
    low_since = (now if low_since is None else min(low_since, now)) if low else None

    if scale_out_signal:
        target = max(current, required)
        if not panic and p.scale_out_max_step is not None:
            limit = 2 * current + p.scale_out_max_step
            if target > limit:
                reasons.append(
                    f"step bound: {target} needed, at most {limit} (2 x {current} + {p.scale_out_max_step}) this tick"
                )
                target = limit
        new = _clamp(target, p)
        if s.pending and required <= current:
            reasons.append(f"{s.pending} booting hosts already count toward capacity {capacity}")
    else:
        # --- rule 7: scale in ---
        new = _clamp(current, p)
        floor = max(required, p.min_hosts)
        if new > floor:
            blockers = _scale_in_blockers(
                p, s, state, backlog, panic, metrics_fresh, low, low_since, demand_ratio
            )
            if blockers:
                reasons.append(f"scale-in held: {'; '.join(blockers)}")
            else:
                low_for = 0.0 if low_since is None else now - low_since
                step = max(1, math.ceil(p.scale_in_max_step * current - _CEIL_SLACK))
                new = max(new - step, floor)
                reasons.append(
                    f"low demand (ratio {demand_ratio:.2f} < {p.low_demand_ratio:g}) for {low_for:.0f} s "
                    f">= {p.scale_in_cooldown_s:g} s: remove up to {step} hosts, not below {floor}"
                )

    if new != current and not p.min_hosts <= current <= p.max_hosts:
        reasons.append(f"current {current} outside bounds [{p.min_hosts}, {p.max_hosts}]")
    action: Action = "scale_out" if new > current else "scale_in" if new < current else "hold"
    reasons.append(
        f"{action}: {current} -> {new} (in service {s.in_service}, booting {s.pending}, draining {s.draining})"
    )

    new_state = TierState(
        low_demand_since_s=None if action == "scale_out" else low_since,
        last_scale_out_s=now if action == "scale_out" else state.last_scale_out_s,
        last_scale_in_s=now if action == "scale_in" else state.last_scale_in_s,
        panic_until_s=panic_until,
        arrival_rps=seen_rps,
        arrival_time_s=seen_at,
        arrival_trend=trend,
    )
    return Decision(
        desired=new,
        action=action,
        reasons=tuple(reasons),
        panic=panic,
        new_state=new_state,
        required_hosts=required,
        capacity_hosts=capacity,
        backlog=backlog,
        backlog_per_ready_host=per_ready,
        demand_ratio=demand_ratio,
        capacity_at_max=capacity_at_max,
        metrics_fresh=metrics_fresh,
    )


def _scale_in_blockers(
    p: TierPolicy,
    s: TierSignals,
    state: TierState,
    backlog: int,
    panic: bool,
    metrics_fresh: bool,
    low: bool,
    low_since: float | None,
    demand_ratio: float,
) -> list[str]:
    """Every rule-7 condition that is not met, worded for the audit record."""
    now = s.now_s
    blockers: list[str] = []
    if not metrics_fresh:
        blockers.append("GPU/latency metrics missing or stale")
    if s.visible > 0:
        # Waiting work blocks scale-in; in-flight work does not (a leaving host drains its own first).
        blockers.append(f"{s.visible} messages waiting")
    if panic:
        blockers.append("panic")
    if metrics_fresh and not low:
        blockers.append(f"demand ratio {demand_ratio:.2f} >= {p.low_demand_ratio:g}")
    if low and low_since is not None and now - low_since < p.scale_in_cooldown_s:
        blockers.append(
            f"low demand for {now - low_since:.0f} s of the {p.scale_in_cooldown_s:g} s cool-down"
        )
    if state.last_scale_out_s is not None and now - state.last_scale_out_s < p.scale_in_cooldown_s:
        blockers.append(
            f"scaled out {now - state.last_scale_out_s:.0f} s ago (< {p.scale_in_cooldown_s:g} s)"
        )
    if state.last_scale_in_s is not None and now - state.last_scale_in_s < p.scale_in_interval_s:
        blockers.append(f"scaled in {now - state.last_scale_in_s:.0f} s ago (< {p.scale_in_interval_s:g} s)")
    return blockers


def _metrics_problem(p: TierPolicy, s: TierSignals) -> str | None:
    """Why the GPU/latency metrics cannot be trusted this tick, or None when they can."""
    missing = [
        name
        for name, value in (("GPU utilisation", s.gpu_util), ("P95 latency", s.latency_p95_s))
        if _usable(value) is None
    ]
    if s.metrics_time_s is None:
        return "GPU/latency metrics missing (no datapoint time)"
    age = s.now_s - s.metrics_time_s
    if age > p.stale_after_s:
        return f"GPU/latency metrics stale (newest datapoint {age:.0f} s old > {p.stale_after_s:g} s)"
    if missing:
        return f"{' and '.join(missing)} missing"
    return None


def _usable(value: float | None) -> float | None:
    """A metric value, or None when absent, NaN/infinite or negative (treated as missing)."""
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return value


def _ceil(hosts: float) -> int:
    return max(0, math.ceil(hosts - _CEIL_SLACK))


def _clamp(hosts: int, p: TierPolicy) -> int:
    return min(max(hosts, p.min_hosts), p.max_hosts)


# Default tiers. Throughputs are estimates to be replaced by load-test numbers; the trace simulator
# is where they should be checked. Underestimating throughput costs money, overestimating it costs
# latency, so each pick sits at the low end of its estimate.
DEFAULT_POLICIES: dict[str, TierPolicy] = {
    # gold: g5.xlarge (one A10G, 24 GB), Qwen2.5-3B-Instruct-AWQ, the low-latency tier.
    # Throughput: the platform status gives gold 9 ms/token for one stream; NPC lines are short (assumed
    # ~50 output tokens, ~0.45 s alone) and vLLM's continuous batching runs ~8 of them at ~12-15 ms/token on
    # an A10G, i.e. P95 under the 1 s objective at an estimated 8-10 req/s per host; 8 is the low end. Wait
    # objective 10 s and the 1 s P95 alarm threshold come from the platform's objectives. Boot ~5 min
    # (vLLM start + 2 GB AWQ weights).
    "gold": TierPolicy(
        name="gold",
        min_hosts=1,
        max_hosts=50,
        host_throughput_rps=8.0,
        target_wait_s=10.0,
        latency_p95_slo_s=1.0,
        panic_latency_factor=2.0,
        panic_backlog_factor=3.0,
        panic_wait_factor=3.0,  # oldest message > 30 s
        panic_hold_s=300.0,  # about one boot: the hosts a panic launched are ready before scale-in resumes
        scale_in_cooldown_s=900.0,
        scale_in_max_step=0.50,
        scale_in_interval_s=180.0,
        scale_out_max_step=4,
        stale_after_s=180.0,  # CloudWatch 1-minute datapoints: two may be missing or late
        boot_time_s=300.0,
        low_demand_ratio=0.8,
    ),
    # silver: g5.2xlarge (one A10G), Qwen2.5-7B-Instruct (~15 GB of fp16 weights), the quality tier.
    # Throughput: a 7B fp16 model decodes roughly 2-3x slower than the 3B AWQ model on the same GPU and has
    # less memory left for the KV cache (smaller batches), so an estimated 3-4 req/s for ~60-token
    # generations within its objective; 3 is the low end. The 30 s wait objective and the 2 s P95 SLO are
    # assumptions (the quality tier trades latency for quality), not given numbers.
    "silver": TierPolicy(
        name="silver",
        min_hosts=1,
        max_hosts=30,
        host_throughput_rps=3.0,
        target_wait_s=30.0,
        latency_p95_slo_s=2.0,
        panic_latency_factor=2.0,
        panic_backlog_factor=3.0,
        panic_wait_factor=3.0,  # oldest message > 90 s
        panic_hold_s=420.0,
        scale_in_cooldown_s=900.0,
        scale_in_max_step=0.50,
        scale_in_interval_s=180.0,
        scale_out_max_step=4,
        stale_after_s=180.0,
        boot_time_s=420.0,  # larger weights load longer than gold's
        low_demand_ratio=0.8,
    ),
    # bronze: batch / large model (instance type not fixed yet). Throughput: an estimated ~1 req/s per
    # host. Batch work tolerates queueing: the 120 s wait objective and the 5 s P95 SLO are
    # assumptions. A smaller outside-panic step suits an 8-host ceiling.
    "bronze": TierPolicy(
        name="bronze",
        min_hosts=1,
        max_hosts=8,
        host_throughput_rps=1.0,
        target_wait_s=120.0,
        latency_p95_slo_s=5.0,
        panic_latency_factor=2.0,
        panic_backlog_factor=3.0,
        panic_wait_factor=3.0,  # oldest message > 6 min
        panic_hold_s=600.0,
        scale_in_cooldown_s=900.0,
        scale_in_max_step=0.50,
        scale_in_interval_s=180.0,
        scale_out_max_step=2,
        stale_after_s=180.0,
        boot_time_s=600.0,  # a large model takes longest to load
        low_demand_ratio=0.8,
    ),
}
