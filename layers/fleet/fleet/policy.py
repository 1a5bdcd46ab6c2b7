"""Desired-capacity decisions for one tier of vLLM inference hosts.

Pure: no AWS, no I/O, no clock reads (the time is `TierSignals.now_s`). The controller Lambda calls
`decide` once per tier per tick and stores `Decision.new_state` for the next tick; the trace simulator
calls it the same way. Rules, in the order they are applied:

0. Capacity is learned (fleet.capacity): what a host sustains within the latency objective, per instance
   type, from what the hosts report (completions per reporting host, the tier's and each type's P95), with
   `host_throughput_rps` (for `reference_instance_type`, scaled to other types by GPU memory bandwidth) as
   the prior. The estimates travel in `TierState.throughput`; `host_rps` below is their mean over the
   in-service hosts. Messages that waited through a whole metrics minute mean the hosts ran flat out: what
   they completed is what they can do (the estimate comes down toward it).
1. Queue need (primary; SQS numbers are authoritative). Hosts launched now only help once booted, so the
   backlog (visible + in flight) is sized to drain within max(`target_wait_s`, `boot_time_s`):

       planned arrivals = arrivals + max(growth over one boot, arrival_sigmas * sqrt(arrivals / 60))
       queue need = planned arrivals / (host_rps * target_load)
                    + backlog / (host_rps * max(target_wait_s, boot_time_s))

   i.e. hosts to keep up with arrivals at the planned load PLUS hosts to drain the backlog (a sum: hosts
   that only match arrivals never shrink the queue). Arrivals are NumberOfMessagesSent, 1-2 minutes old;
   when game services publish players online (fresh, docs/host-contract.md) the arrivals per player are
   learned and players x that rate leads them (the larger of the two counts). Growth = the least-squares
   slope of a steady rise (at least three datapoints, a straight line explains it, no one step carries most
   of it) x `boot_time_s`, at most `max_growth` x arrivals: a step is not a trend. Unknown arrivals count
   as 0. An urgent backlog is panic's job (rule 4).
2. GPU saturation (secondary, only when fresh): when the GPUs are busy (utilisation >= `gpu_busy_util`)
   and the KV cache is fuller than `kv_cache_target`, required >= ceil(in_service * kv_cache_usage /
   kv_cache_target). NVML's utilisation is a duty cycle (~100 % at a fraction of a vLLM host's
   throughput), so it only confirms the hosts are busy; the KV cache says how full they are. At the host
   agent's concurrency a real host's cache stays a few per cent full, so this rule rarely fires.
3. Latency safeguard (only when fresh and about load): the tier's P95 is the median of its hosts' P95s
   (never the maximum: one slow host must not ratchet the tier). Above `latency_p95_slo_s` on loaded hosts
   (a backlog, or hosts doing at least half of `host_rps`) it requires in_service + 1 hosts; a host
   already booting satisfies that. A P95 over the SLO on quiet hosts is not load (no host added), nor is
   one measured while messages waited (the backlog's symptom: the queue rule sizes for it).
4. Panic: P95 about load > `panic_latency_factor` x SLO, or oldest message older than `panic_wait_factor`
   x `target_wait_s`, or the hosts needed to drain the backlog within `target_wait_s` alone >
   `panic_backlog_factor` x capacity. Panic lifts the scale-out step bound (straight to the full
   requirement) and sets `panic_until_s = now + panic_hold_s`; until then the tier stays in panic: no
   scale-in.
5. Booting hosts count: capacity = in_service + pending, and scale-out compares `required` with the
   current desired count (which includes them), so hosts still loading the model are never added twice.
6. Scale out in one tick: desired = max(current, required), clamped to [min_hosts, max_hosts]. Outside
   panic one tick may at most double the current count and add `scale_out_max_step` hosts (None: no
   bound). Whenever any scale-out signal is present (required > current or > capacity, P95 over SLO,
   GPUs saturated, panic) the count never decreases in that tick.
7. Scale in only when all hold: GPU utilisation and P95 are present and fresh (or the tier is idle: hosts
   reporting, nothing waiting, nothing completed, so no P95 to report); no message is waiting (visible ==
   0; in-flight work does not block: a leaving host drains its own first); no panic; demand has been low
   (demand_ratio < `low_demand_ratio`) continuously for `scale_in_cooldown_s` and no scale-out happened
   within that time; the previous scale-in is at least `scale_in_interval_s` old. One step removes at most
   ceil(`scale_in_max_step` x current) hosts, at least 1, never below `required` or `min_hosts`. A large
   surplus (demand_ratio < `surplus_ratio`, e.g. after a spike) waits only `surplus_cooldown_s` and goes
   to that floor in one step. Scale-in is applied by the scale-down check, through the drain hook.
8. Missing or stale GPU/latency metrics (no value, no `metrics_time_s`, or older than `stale_after_s`):
   they are ignored, scale-out still follows the queue, scale-in is held, and a reason says so.
9. Slow hosts: a host whose own P95 is over the SLO and over `slow_host_factor` x the tier's is
   unhealthy: it is replaced (at most one in ten hosts a tick), not a reason to grow the tier.
10. Launch backoff: a launch the launch workflow abandoned (LaunchFailures) stops the tier adding hosts for
   `launch_backoff_s`, doubled for each further failure within `launch_backoff_max_s`, up to that; desired
   falls to the hosts that exist (the group stops relaunching) but never below `min_hosts`. After the
   backoff the rules above apply again: the tier tries again.
11. Bounds always: min_hosts <= desired <= max_hosts (a current count outside them is brought inside,
   even against rules 6-7). required > max_hosts sets `capacity_at_max` and a reason starting
   "capacity at max" (the controller alarms on it); desired goes to max_hosts, in one tick in panic or
   when the step bound allows, else over the next ticks (doubling + step: 4 -> 12 -> 28 -> 50 for gold).

demand_ratio = max(queue need, GPU saturation need, latency need) / max(capacity, 1). Every rule is monotone in
demand: more backlog, arrivals, P95, GPU utilisation or KV-cache usage never gives a smaller desired count.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

from fleet.capacity import HostTypeSignals, fleet_throughput, learn

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
    scale_in_cooldown_s: float = 600.0  # continuous low demand before any scale-in
    scale_in_max_step: float = 0.5  # fraction of the current count one scale-in removes (at least 1 host)
    scale_in_interval_s: float = 180.0  # between two scale-in steps
    scale_out_max_step: int | None = 4  # outside panic: at most 2 x current + this; None: unbounded
    stale_after_s: float = 180.0  # GPU/latency datapoints older than this count as missing
    boot_time_s: float = 300.0  # launch to ready (vLLM start + model load); documentation only
    low_demand_ratio: float = 0.8  # demand / capacity below this is low demand
    # Far below (demand under this share of capacity, e.g. after a spike or a drained backlog) the
    # cool-down is this shorter one and one step goes to the floor: the surplus is large, and holding it
    # costs more than a relaunch. 0 turns this off.
    surplus_ratio: float = 0.75
    surplus_cooldown_s: float = 180.0
    # A scale-in keeps the most hosts any tick of this window required (a stabilization window: demand
    # that falls and comes back within it finds its hosts still there). 0 turns it off.
    scale_in_window_s: float = 0.0
    # The instance type host_throughput_rps was estimated on (the first of the group's types): the prior of
    # other types is scaled from it by decode speed (fleet.capacity).
    reference_instance_type: str = ""
    # A host whose P95 is over the SLO and over this many times the tier's is slow: it is replaced rather
    # than counted as a reason to grow the tier.
    slow_host_factor: float = 1.5
    # Abandoned launches (a bootstrap that failed, a host never ready) stop the tier adding hosts for this
    # long, doubled for each failure within `launch_backoff_max_s` of the previous one, up to that maximum.
    launch_backoff_s: float = 300.0
    launch_backoff_max_s: float = 3600.0

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
            "0 <= surplus_ratio <= low_demand_ratio": 0 <= self.surplus_ratio <= self.low_demand_ratio,
            "surplus_cooldown_s >= 0": self.surplus_cooldown_s >= 0,
            "scale_in_window_s >= 0": self.scale_in_window_s >= 0,
            "slow_host_factor > 1": self.slow_host_factor > 1,
            "0 < launch_backoff_s <= launch_backoff_max_s": 0
            < self.launch_backoff_s
            <= self.launch_backoff_max_s,
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
    # Requests the tier's hosts completed per second over the newest metrics minute (0: none; None: unknown).
    completed_rps: float | None = None
    # The in-service hosts by instance type, with what each type reported (fleet.capacity).
    host_types: tuple[HostTypeSignals, ...] = ()
    # Hosts whose own P95 is far over the tier's (instance id, P95 s): candidates for replacement.
    host_latencies: tuple[tuple[str, float], ...] = ()
    # Players online in the tier's games, as game services publish it (docs/host-contract.md), and when.
    players_online: float | None = None
    players_time_s: float | None = None
    # The newest minute in which the tier abandoned a launch (LaunchFailures > 0), and how many it
    # abandoned over the controller's look-back; None: none seen.
    launch_failure_time_s: float | None = None
    launch_failures: int = 0

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
    arrival_trend: float | None = None  # req/s per second of a steady rise or fall, else 0 (rule 1)
    arrival_history: tuple[tuple[float, float], ...] = ()  # the last (datapoint time, req/s), oldest first
    players_history: tuple[tuple[float, float], ...] = ()  # the last (time, players online), oldest first
    required_history: tuple[tuple[float, float], ...] = ()  # (tick, hosts required) within scale_in_window_s
    requests_per_player: float | None = None  # arrivals per player online per second, smoothed
    throughput: tuple[tuple[str, float], ...] = ()  # learned req/s per host by instance type (fleet.capacity)
    waiting_since_s: float | None = None  # messages have been waiting at every tick since (None: none now)
    last_waiting_s: float | None = None  # the last tick at which messages were waiting
    launch_failure_time_s: float | None = None  # the newest launch failure acted on
    launch_backoff_s: float = 0.0  # the current backoff length (0: none)
    launch_backoff_until_s: float | None = None  # no hosts added before this
    version: int = 0  # the stored record's version (state writes are conditional on it); carried as is


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
    metrics_fresh: bool  # GPU utilisation and P95 both present and not stale (or the tier is idle)
    host_throughput_rps: float = 0.0  # what a host is taken to sustain within the objective this tick
    replace_hosts: tuple[str, ...] = ()  # slow hosts to replace (terminated without lowering desired)
    launch_backoff: bool = False  # launches keep failing: no hosts added this tick


def with_scale_in_hold(policy: TierPolicy, hold_s: float) -> TierPolicy:
    """`policy` with no scale-in before `hold_s` of low demand, a large surplus included, and none below the
    hosts required at any tick of the last `hold_s` (the status document's "scale-down safety over 15
    minutes" is a hold of 900 s); 0 keeps the policy's own cool-downs.
    A longer hold costs idle GPU-hours after every spike: docs/capacity-planning.md measures it."""
    if hold_s < 0:
        raise ValueError("a scale-in hold is >= 0 seconds")
    if hold_s == 0:
        return policy
    return replace(
        policy,
        scale_in_cooldown_s=max(policy.scale_in_cooldown_s, hold_s),
        surplus_cooldown_s=max(policy.surplus_cooldown_s, hold_s),
        scale_in_window_s=max(policy.scale_in_window_s, hold_s),
    )


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
    # A P95 measured while messages waited (at an earlier tick, within two minutes of the datapoint) is the
    # backlog's symptom: the hosts ran flat out, and the queue rule already sizes for draining it. It adds
    # no host (rule 3) and no panic; a backlog's own panic triggers (age, size) still apply.
    backlog_latency = (
        state.last_waiting_s is not None
        and s.metrics_time_s is not None
        and state.last_waiting_s >= s.metrics_time_s - _BACKLOG_LATENCY_S
    )
    load_latency = None if backlog_latency else latency
    arrival = _usable(s.arrival_rps)
    completed = _usable(s.completed_rps) if current_metrics else None
    # An idle tier (hosts alive and reporting, nothing waiting, nothing done) has no latency to report:
    # that is low demand, not missing data.
    idle = (
        gpu is not None
        and latency is None
        and backlog == 0
        and (completed == 0.0 or (completed is None and arrival == 0.0))
    )
    metrics_fresh = gpu is not None and (latency is not None or idle)
    stale_note = None if idle else _metrics_problem(p, s)
    if stale_note is not None:
        reasons.append(f"{stale_note}: scale-out follows the queue only, no scale-in")
    if idle:
        reasons.append("idle: hosts report no requests and none are waiting (no latency to measure)")

    # --- capacity: what a host sustains within the objective, learned from the hosts' reports ---
    estimates = dict(state.throughput)
    # Messages waiting at every tick through the metrics minute: the hosts ran flat out in it, so what
    # they completed is all they can do (queue numbers are current, host metrics 1-2 minutes old).
    waiting_since = (
        (now if state.waiting_since_s is None else state.waiting_since_s) if s.visible > 0 else None
    )
    saturated = (
        waiting_since is not None
        and s.metrics_time_s is not None
        and waiting_since <= s.metrics_time_s - _METRICS_PERIOD_S
    )
    if current_metrics:
        estimates, learned = learn(
            estimates,
            s.host_types,
            host_throughput_rps=p.host_throughput_rps,
            reference_type=p.reference_instance_type,
            latency_slo_s=p.latency_p95_slo_s,
            tier_latency_p95_s=latency,
            saturated=saturated,
            backlog_latency=backlog_latency,
        )
        reasons.extend(learned)
    host_rps = fleet_throughput(
        estimates,
        s.host_types,
        host_throughput_rps=p.host_throughput_rps,
        reference_type=p.reference_instance_type,
    )

    # --- rule 1: queue need ---
    # New hosts only help once booted: size the backlog drain over max(wait objective, boot time), else a
    # backlog built up during one boot asks for many times the hosts steady traffic needs (panic, below,
    # still reacts at once to an urgent backlog measured against the wait objective alone).
    drain_window_s = max(p.target_wait_s, p.boot_time_s)
    per_host_window = host_rps * drain_window_s
    drain_need = backlog / per_host_window
    urgent_need = backlog / (host_rps * p.target_wait_s)
    planned_rps = host_rps * p.target_load
    seen_rps, seen_at = state.arrival_rps, state.arrival_time_s
    history = state.arrival_history
    if arrival is not None and s.metrics_time_s is not None:
        if seen_at is None or s.metrics_time_s > seen_at:
            history = (*history, (s.metrics_time_s, arrival))[-_HISTORY:]
        seen_rps, seen_at = arrival, s.metrics_time_s
    trend = _ramp_slope(history)
    # Players online (when game services publish it) lead the arrivals, which CloudWatch has 1-2 min late:
    # arrivals per player are learned, and the players now say what the arrivals are about to be.
    players = _usable(s.players_online)
    players_fresh = (
        players is not None and s.players_time_s is not None and now - s.players_time_s <= p.stale_after_s
    )
    players_history = state.players_history
    per_player = state.requests_per_player
    projected: float | None = None
    players_trend = None
    if players_fresh and players is not None and s.players_time_s is not None:
        if not players_history or s.players_time_s > players_history[-1][0]:
            players_history = (*players_history, (s.players_time_s, players))[-_HISTORY:]
        then = _steady_at(players_history, s.metrics_time_s) if s.metrics_time_s is not None else None
        if arrival is not None and then is not None and then > 0:
            observed = arrival / then
            per_player = (
                observed if per_player is None else per_player + p.trend_weight * (observed - per_player)
            )
        if per_player is not None:
            projected = players * per_player
            players_trend = _ramp_slope(players_history)
    base_arrival = arrival if projected is None else max(projected, arrival or 0.0)
    growth = 0.0
    rise = max(trend or 0.0, (players_trend or 0.0) * (per_player or 0.0))
    if base_arrival is not None and rise > 0:
        # Over one boot: a host launched now serves only then. Only a steady rise counts (_ramp_slope): a
        # step in demand is not a trend, and extrapolating it would buy hosts for demand that never comes.
        growth = min(rise * p.boot_time_s, p.max_growth * base_arrival)
    # Headroom: the larger of the expected growth and the arrival noise band (a flat rate's slope is
    # noise of about that size, so the two are not added).
    planned_arrival = (
        None
        if base_arrival is None
        else base_arrival + max(growth, p.arrival_sigmas * math.sqrt(base_arrival / 60.0))
    )
    if (
        projected is not None
        and players is not None
        and per_player is not None
        and projected > (arrival or 0.0)
    ):
        reasons.append(
            f"players online {players:.0f} x {per_player * 60:.3f} req/min each project {projected:.2f} req/s "
            f"(arrivals {arrival or 0.0:.2f} req/s as of the last datapoint)"
        )
    arrival_need = 0.0 if planned_arrival is None else planned_arrival / planned_rps
    queue_need = arrival_need + drain_need
    required = _ceil(queue_need)
    demand_hosts = queue_need
    arrivals_text = (
        "arrivals unknown"
        if base_arrival is None
        else f"arrivals {base_arrival:.2f} req/s need {arrival_need:.2f} hosts at {planned_rps:g} req/s/host"
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
    # Only on loaded hosts: a P95 over the SLO at a fraction of the hosts' throughput is not load (one more
    # host would not lower it), and growing for it would ratchet the tier to its maximum.
    per_host_done = None if completed is None else completed / max(s.in_service, 1)
    loaded = backlog > 0 or per_host_done is None or per_host_done >= 0.5 * host_rps
    latency_breach = load_latency is not None and load_latency > p.latency_p95_slo_s and loaded
    if latency is not None and latency > p.latency_p95_slo_s and backlog_latency:
        reasons.append(
            f"P95 {latency:.2f} s > SLO {p.latency_p95_slo_s:g} s measured while messages waited: the backlog's "
            "symptom, sized by the queue rule"
        )
    elif latency is not None and latency > p.latency_p95_slo_s and not loaded:
        reasons.append(
            f"P95 {latency:.2f} s > SLO {p.latency_p95_slo_s:g} s on lightly loaded hosts "
            f"({per_host_done:.2f} of {host_rps:.2f} req/s each): not load, no host added"
        )
    if latency_breach:
        demand_hosts = max(demand_hosts, float(s.in_service + 1))
        required = max(required, s.in_service + 1)
        reasons.append(
            f"P95 latency {latency:.2f} s > SLO {p.latency_p95_slo_s:g} s -> at least {s.in_service + 1} "
            f"hosts (one more than {s.in_service} ready)"
        )

    # --- rule 4: panic ---
    triggers: list[str] = []
    if load_latency is not None and load_latency > p.panic_latency_factor * p.latency_p95_slo_s:
        triggers.append(
            f"P95 {load_latency:.2f} s > {p.panic_latency_factor:g} x SLO {p.latency_p95_slo_s:g} s"
        )
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

    # --- slow hosts: replaced, not a reason to grow the tier (its P95 is the merged one) ---
    replace_hosts: tuple[str, ...] = ()
    if current_metrics and latency is not None:
        slow = sorted(
            (
                host
                for host, p95 in s.host_latencies
                if p95 > p.latency_p95_slo_s and p95 > p.slow_host_factor * latency
            ),
        )
        # At most one in ten hosts a tick: a fleet-wide slowdown is load, not a few bad hosts.
        replace_hosts = tuple(slow[: max(1, s.in_service // 10)]) if slow else ()
        if replace_hosts:
            reasons.append(
                f"slow hosts (P95 over {p.slow_host_factor:g} x the tier's {latency:.2f} s and over the SLO): "
                f"replace {', '.join(replace_hosts)}"
            )

    demand_ratio = demand_hosts / max(capacity, 1)
    capacity_at_max = required > p.max_hosts
    if capacity_at_max:
        reasons.append(f"capacity at max: required {required} > max {p.max_hosts} hosts")

    # --- launch backoff: a tier whose launches keep failing stops adding hosts (each would fail, billed) ---
    backoff_s, backoff_until = state.launch_backoff_s, state.launch_backoff_until_s
    failure_seen = state.launch_failure_time_s
    if s.launch_failure_time_s is not None and (
        failure_seen is None or s.launch_failure_time_s > failure_seen
    ):
        recent = failure_seen is not None and s.launch_failure_time_s - failure_seen <= p.launch_backoff_max_s
        backoff_s = (
            min(2 * backoff_s, p.launch_backoff_max_s) if recent and backoff_s > 0 else p.launch_backoff_s
        )
        backoff_until = now + backoff_s
        failure_seen = s.launch_failure_time_s
    launch_backoff = backoff_until is not None and now < backoff_until

    required_history: tuple[tuple[float, float], ...] = ()
    if p.scale_in_window_s > 0:
        kept = tuple((t, v) for t, v in state.required_history if now - t < p.scale_in_window_s)
        required_history = (*kept, (now, float(required)))
    window_peak = int(max((v for _, v in required_history), default=0))

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
        if window_peak > floor and new > floor:
            reasons.append(
                f"scale-in window: {window_peak} hosts required within the last {p.scale_in_window_s:g} s stay"
            )
            floor = window_peak
        if new > floor:
            blockers = _scale_in_blockers(
                p, s, state, backlog, panic, metrics_fresh, low, low_since, demand_ratio
            )
            if blockers:
                reasons.append(f"scale-in held: {'; '.join(blockers)}")
            else:
                low_for = 0.0 if low_since is None else now - low_since
                step = max(1, math.ceil(p.scale_in_max_step * current - _CEIL_SLACK))
                if demand_ratio < p.surplus_ratio:
                    # A surplus this large (after a spike, a drained backlog) goes in one step: the floor
                    # still keeps the planned arrivals' hosts.
                    step = current - floor
                new = max(new - step, floor)
                cooldown = _scale_in_cooldown(p, demand_ratio)
                reasons.append(
                    f"low demand (ratio {demand_ratio:.2f} < {p.low_demand_ratio:g}) for {low_for:.0f} s "
                    f">= {cooldown:g} s: remove up to {step} hosts, not below {floor}"
                )

    if launch_backoff and backoff_until is not None and failure_seen is not None:
        # Desired falls to the hosts that exist: the group stops replacing the launches it abandoned and
        # terminates nothing (its count already equals that). At the minimum it still launches.
        existing = _clamp(capacity, p)
        if new > existing:
            new = existing
        reasons.append(
            f"launch backoff: {s.launch_failures} launches abandoned (newest at {failure_seen:.0f}); no hosts "
            f"added until {backoff_until:.0f} ({backoff_s:g} s), desired at most the {existing} hosts that exist"
        )
    if new != current and not p.min_hosts <= current <= p.max_hosts:
        reasons.append(f"current {current} outside bounds [{p.min_hosts}, {p.max_hosts}]")
    action: Action = "scale_out" if new > current else "scale_in" if new < current else "hold"
    if launch_backoff and action == "scale_in" and new >= min(_clamp(capacity, p), current):
        # Lowered only to the hosts that exist: no host leaves, so it is no scale-in (the controller sets it).
        action = "hold"
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
        arrival_history=history,
        players_history=players_history,
        required_history=required_history,
        requests_per_player=per_player,
        throughput=tuple(sorted(estimates.items())),
        waiting_since_s=waiting_since,
        last_waiting_s=now if s.visible > 0 else state.last_waiting_s,
        launch_failure_time_s=failure_seen,
        launch_backoff_s=backoff_s,
        launch_backoff_until_s=backoff_until,
        version=state.version,
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
        host_throughput_rps=host_rps,
        replace_hosts=replace_hosts,
        launch_backoff=launch_backoff,
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
    cooldown = _scale_in_cooldown(p, demand_ratio)
    if not metrics_fresh:
        blockers.append("GPU/latency metrics missing or stale")
    if s.visible > 0:
        # Waiting work blocks scale-in; in-flight work does not (a leaving host drains its own first).
        blockers.append(f"{s.visible} messages waiting")
    if panic:
        blockers.append("panic")
    if metrics_fresh and not low:
        blockers.append(f"demand ratio {demand_ratio:.2f} >= {p.low_demand_ratio:g}")
    if low and low_since is not None and now - low_since < cooldown:
        blockers.append(f"low demand for {now - low_since:.0f} s of the {cooldown:g} s cool-down")
    if state.last_scale_out_s is not None and now - state.last_scale_out_s < cooldown:
        blockers.append(f"scaled out {now - state.last_scale_out_s:.0f} s ago (< {cooldown:g} s)")
    if state.last_scale_in_s is not None and now - state.last_scale_in_s < p.scale_in_interval_s:
        blockers.append(f"scaled in {now - state.last_scale_in_s:.0f} s ago (< {p.scale_in_interval_s:g} s)")
    return blockers


def _scale_in_cooldown(p: TierPolicy, demand_ratio: float) -> float:
    """Low demand needed before a scale-in; a surplus never waits longer than ordinary low demand (lower
    demand must not keep more hosts)."""
    if demand_ratio < p.surplus_ratio:
        return min(p.surplus_cooldown_s, p.scale_in_cooldown_s)
    return p.scale_in_cooldown_s


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


_HISTORY: Final = 5  # datapoints kept for the trend: about five minutes
_METRICS_PERIOD_S: Final = 60.0  # a host metric datapoint covers the minute from its timestamp
# A backlog's latency lingers in the P95 of the minute after it too (batches it filled still finishing).
_BACKLOG_LATENCY_S: Final = 2 * _METRICS_PERIOD_S
# A rise is steady when a straight line explains it (R^2 at least this) and no one step carries more than
# this share of it; otherwise it is a step or noise, and no trend.
_RAMP_MIN_R2: Final = 0.8
_RAMP_MAX_STEP_SHARE: Final = 0.6


def _ramp_slope(history: Sequence[tuple[float, float]]) -> float | None:
    """The least-squares slope (per second) of a steady rise or fall over `history`, 0.0 for a step or
    noise, None with fewer than three points."""
    if len(history) < 3:
        return None
    times = [t - history[0][0] for t, _ in history]
    values = [v for _, v in history]
    n = len(values)
    mean_t, mean_v = sum(times) / n, sum(values) / n
    s_tt = sum((t - mean_t) ** 2 for t in times)
    s_vv = sum((v - mean_v) ** 2 for v in values)
    if s_tt <= 0 or s_vv <= 0:
        return 0.0
    s_tv = sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True))
    slope = s_tv / s_tt
    r2 = s_tv * s_tv / (s_tt * s_vv)
    total = abs(values[-1] - values[0])
    largest = max(abs(b - a) for a, b in itertools.pairwise(values))
    if r2 < _RAMP_MIN_R2 or total <= 0 or largest > _RAMP_MAX_STEP_SHARE * total:
        return 0.0
    return slope


def _at(history: Sequence[tuple[float, float]], t_s: float) -> float | None:
    """The value of the (time, value) history in force at `t_s` (the newest at or before it)."""
    found = None
    for time_s, value in history:
        if time_s <= t_s:
            found = value
    return found


# Players are steady over a datapoint's minute when they stay within this share of each other around it.
_STEADY_PLAYERS: Final = 0.1


def _steady_at(history: Sequence[tuple[float, float]], t_s: float) -> float | None:
    """The players online in force over the minute either side of `t_s` (a datapoint's time, whether it
    marks its minute's start or end), or None when they changed by more than `_STEADY_PLAYERS` there:
    arrivals of a minute with a jump in it say nothing steady about requests per player."""
    start = _at(history, t_s - _METRICS_PERIOD_S)
    values = [v for t, v in history if t_s - _METRICS_PERIOD_S < t <= t_s + _METRICS_PERIOD_S]
    if start is not None:
        values.append(start)
    if not values:
        return None
    low, high = min(values), max(values)
    return _at(history, t_s) if high <= low * (1 + _STEADY_PLAYERS) else None


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
    # objective 10 s and the 1 s P95 alarm threshold come from the platform's objectives. Boot ~2.5 min
    # from the baked image (vLLM start + 2 GB of AWQ weights from local disk).
    "gold": TierPolicy(
        name="gold",
        reference_instance_type="g5.xlarge",  # the first of template.yaml's GoldInstanceTypes
        min_hosts=1,
        max_hosts=50,
        host_throughput_rps=8.0,
        target_wait_s=10.0,
        latency_p95_slo_s=1.0,
        panic_latency_factor=2.0,
        panic_backlog_factor=3.0,
        panic_wait_factor=3.0,  # oldest message > 30 s
        panic_hold_s=240.0,  # about one boot: the hosts a panic launched are ready before scale-in resumes
        scale_in_cooldown_s=600.0,
        scale_in_max_step=0.50,
        scale_in_interval_s=180.0,
        scale_out_max_step=4,
        stale_after_s=180.0,  # CloudWatch 1-minute datapoints: two may be missing or late
        boot_time_s=180.0,  # the baked image's p75 (docs/architecture.md, "Booting a GPU host")
        low_demand_ratio=0.8,
    ),
    # silver: g5.2xlarge (one A10G), Qwen2.5-7B-Instruct (~15 GB of fp16 weights), the quality tier.
    # Throughput: a 7B fp16 model decodes roughly 2-3x slower than the 3B AWQ model on the same GPU and has
    # less memory left for the KV cache (smaller batches), so an estimated 3-4 req/s for ~60-token
    # generations within its objective; 3 is the low end. The 30 s wait objective and the 2 s P95 SLO are
    # assumptions (the quality tier trades latency for quality), not given numbers.
    "silver": TierPolicy(
        name="silver",
        reference_instance_type="g5.2xlarge",  # the first of template.yaml's SilverInstanceTypes
        min_hosts=1,
        max_hosts=30,
        host_throughput_rps=3.0,
        target_wait_s=30.0,
        latency_p95_slo_s=2.0,
        panic_latency_factor=2.0,
        panic_backlog_factor=3.0,
        panic_wait_factor=3.0,  # oldest message > 90 s
        panic_hold_s=330.0,
        scale_in_cooldown_s=600.0,
        scale_in_max_step=0.50,
        scale_in_interval_s=180.0,
        scale_out_max_step=4,
        stale_after_s=180.0,
        boot_time_s=270.0,  # larger weights load longer than gold's
        low_demand_ratio=0.8,
    ),
    # bronze: batch / large model (instance type not fixed yet). Throughput: an estimated ~1 req/s per
    # host. Batch work tolerates queueing: the 120 s wait objective and the 5 s P95 SLO are
    # assumptions. A smaller outside-panic step suits an 8-host ceiling.
    "bronze": TierPolicy(
        name="bronze",
        reference_instance_type="g6e.xlarge",  # the first of template.yaml's BronzeInstanceTypes
        min_hosts=1,
        max_hosts=8,
        host_throughput_rps=1.0,
        target_wait_s=120.0,
        latency_p95_slo_s=5.0,
        panic_latency_factor=2.0,
        panic_backlog_factor=3.0,
        panic_wait_factor=3.0,  # oldest message > 6 min
        panic_hold_s=330.0,
        scale_in_cooldown_s=600.0,
        scale_in_max_step=0.50,
        scale_in_interval_s=180.0,
        scale_out_max_step=2,
        stale_after_s=180.0,
        boot_time_s=270.0,  # the 14B AWQ weights are smaller than silver's fp16 ones
        low_demand_ratio=0.8,
    ),
}
