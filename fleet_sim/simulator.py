"""Discrete-time simulation of the tiers' Auto Scaling groups under a player trace, one run per policy.

Each tier is simulated on its own (its own queue, group and hosts) in world steps of `step_s`; the
policy's controller ticks every `tick_s`. At each step boundary, in this order:

1. host events: a booting host whose boot has ended becomes in-service (serves from this step on); a Spot
   host whose interruption notice has come stops taking work (a booting one is gone at once, a serving
   one drains for `drain_s`, within the 2-minute notice); a draining host whose drain has ended leaves.
2. on a tick: the controller gets an `Observation` and returns the desired count (clamped to the
   group's bounds). Queue numbers are current; GPU utilisation, KV cache, P95 latency and arrivals are the
   aggregate of the 60 s ending 60-120 s earlier (CloudWatch's delay).
3. the group reconciles: too few active (booting + in-service) hosts -> launch (On-Demand up to the
   base, then On-Demand for `on_demand_percent_above_base` % of the rest and Spot for the others); too
   many -> remove booting hosts first, then idle in-service hosts (they leave at once), then busy ones
   (they drain: finish their in-flight work, then leave; the queued work stays in the queue). A host
   whose Spot notice came is replaced here at once (`fleet.spot`: on the notice the host is terminated in
   its group without decrementing the desired capacity, so the group launches the replacement now).
4. the queue (FIFO, fluid): the step's arrivals join as a cohort spread evenly over the step; the
   in-service hosts complete up to in_service x saturation_rps x step_s requests from the head. Queue
   wait is exact for the fluid model: a served chunk waits from its arrival (its position in its cohort)
   to its service (its position in the step's service), both at the chunk's middle. rho = served /
   capacity; P95 latency (of rho smoothed over ~1 min) and in-flight follow from it, and from in-flight
   per host the GPU metrics the hosts publish: NVML utilisation (a duty cycle) and KV-cache usage
   (`model.TierModel`).

Accounting: a host costs from launch until it leaves (booting and draining hosts cost money too);
gpu_hours are host-hours. A minute violates the tier's objectives when the P95 queue wait of the requests
served in it exceeds `target_wait_s` (with nothing served but a queue: the oldest request's age) or the
P95 latency of its requests exceeds the tier's `latency_p95_slo_s` (1 s for gold). The trace is simulated
in whole steps; requests still queued at the end count in the P95 wait with their wait so far.

Common random numbers: arrivals (Poisson per step), boot times and Spot interruption clocks (by launch
index: every policy's k-th launched host of a tier gets the same draws) and metric delays (per tick) come
from generators seeded by (seed, tier name) and drawn before any policy runs, so policies differ only in
what they decide. The same seed gives the same results.
"""

from __future__ import annotations

import math
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from fleet.capacity import HostTypeSignals
from fleet.policy import DEFAULT_POLICIES, TierPolicy
from fleet_sim.baselines import PolicyFactory
from fleet_sim.model import (
    STOPPED_HOST_USD_PER_H,
    WARM_BOOT_FRACTION,
    InstanceType,
    Observation,
    TierModel,
    WorldModel,
    default_world,
    spot_warning_time,
)
from fleet_sim.traces import Trace

_MINUTE: Final = 60.0
_HOURS_PER_MONTH: Final = 730.0  # AWS pricing's month: 365 x 24 / 12
_EPS: Final = 1e-9
_PENDING, _READY, _DRAINING = 0, 1, 2
# assumption: game services publish players online every minute; the newest value is about 30 s old.
PLAYERS_LAG_S: Final = 30.0

# A controller of every tier at once: each tier's Observation in, each tier's desired count out.
FleetController = Callable[[Mapping[str, Observation]], Mapping[str, int]]


# --- results -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TierSeries:
    """Per-minute series of one tier for plotting; index i is the minute starting at minute_s[i].

    Host counts and desired are sampled at the start of the minute (after that tick's decision);
    p95_latency_s is NaN for a minute in which nothing was served."""

    minute_s: tuple[float, ...]
    players: tuple[float, ...]
    demand_rps: tuple[float, ...]  # requests arrived / 60
    served_rps: tuple[float, ...]
    in_service: tuple[int, ...]
    pending: tuple[int, ...]
    draining: tuple[int, ...]
    desired: tuple[int, ...]
    visible: tuple[int, ...]  # queue length at the end of the minute
    p95_wait_s: tuple[float, ...]
    p95_latency_s: tuple[float, ...]
    gpu_util: tuple[float, ...]
    slo_violation: tuple[bool, ...]
    # Hosts billed at the start of the minute (booting, in service and draining), and of those On-Demand.
    hosts: tuple[int, ...] = ()
    on_demand: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TierResult:
    tier: str
    gpu_hours: float
    cost_usd: float
    slo_violation_minutes: int
    slo_violation_minutes_at_max: int  # of those, minutes that began with desired at max_hosts
    p95_queue_wait_s: float
    scale_actions: int  # ticks that changed the desired count
    scale_ins_with_backlog: int  # of those, decreases decided while visible + in_flight > 0
    scale_ins_with_queue: int  # of those, decreases decided while messages were waiting (visible > 0)
    spot_interruptions: int
    hosts_launched: int
    requests: int
    served: float
    unserved_at_end: float
    series: TierSeries
    # The purchase options' shares of gpu_hours and cost_usd.
    on_demand_hours: float = 0.0
    spot_hours: float = 0.0
    on_demand_cost_usd: float = 0.0
    spot_cost_usd: float = 0.0
    spot_interruption_s: tuple[float, ...] = ()  # when each interruption notice came
    # Per world step (step_s): the in-service hosts' true throughput at the latency objective with the
    # average request mix, i.e. the arrival rate they keep up with (fleet_sim.report's scale-up time).
    step_s: float = 10.0
    ready_capacity_rps: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyResult:
    """One policy over one trace: totals over the tiers and each tier's result.

    p95_queue_wait_s is over every request of every tier together (so gold, the busiest tier, weighs
    most); each tier's own is in `tiers`."""

    policy: str
    trace: str
    seed: int
    duration_s: float
    gpu_hours: float
    cost_usd: float
    slo_violation_minutes: int
    slo_violation_minutes_at_max: int  # of those, minutes that began with desired at the ceiling
    p95_queue_wait_s: float
    scale_actions: int
    scale_ins_with_backlog: int
    scale_ins_with_queue: int
    tiers: Mapping[str, TierResult]


def cost_per_player_month(result: PolicyResult, players: float) -> float:
    """US dollars per player per month: the run's cost spread over `players` and scaled from the trace's
    length to a 730-hour month (AWS pricing's month), i.e. cost_usd x (730 h / trace hours) / players.

    Which player count to divide by is the caller's choice: the trace's mean players online
    (`Trace.mean_players`) gives the cost of a concurrent player; dividing by monthly active players
    needs a concurrency ratio the trace does not have. A trace much shorter than a day extrapolates
    whatever part of the day it covers.
    """
    if players <= 0:
        raise ValueError("players must be > 0")
    return result.cost_usd * (_HOURS_PER_MONTH * 3600.0 / result.duration_s) / players


# --- simulation ----------------------------------------------------------------------------------------------


def simulate(
    trace: Trace,
    policies: Mapping[str, PolicyFactory | FleetWide],
    *,
    tiers: Sequence[str] = ("gold", "silver", "bronze"),
    seed: int = 0,
    tick_s: float = 60.0,
    step_s: float = 10.0,
    world: WorldModel | None = None,
    tier_policies: Mapping[str, TierPolicy] = DEFAULT_POLICIES,
) -> dict[str, PolicyResult]:
    """Run every policy over `trace` for the given tiers; results by policy name (see the module docstring).

    `tier_policies` are the tiers' `TierPolicy`s (bounds, throughput, objectives) every policy factory is
    given; `world` defaults to `model.default_world(tier_policies)`.
    """
    if step_s <= 0 or tick_s <= 0:
        raise ValueError("tick_s and step_s must be > 0")
    steps_per_tick = round(tick_s / step_s)
    if steps_per_tick < 1 or abs(steps_per_tick * step_s - tick_s) > _EPS or _MINUTE % step_s > _EPS:
        raise ValueError("tick_s must be a multiple of step_s, and step_s must divide 60 s")
    world = world or default_world(tier_policies)
    missing = [t for t in tiers if t not in world.tiers]
    if missing:
        raise ValueError(f"no world model for tiers {missing}; known: {sorted(world.tiers)}")
    draws = {t: _TierDraws(world.tiers[t], world, trace, seed, step_s, tick_s) for t in tiers}
    results: dict[str, PolicyResult] = {}
    for policy_name, factory in policies.items():
        controller = (
            factory.start({t: world.tiers[t].policy for t in tiers})
            if isinstance(factory, FleetWide)
            else _per_tier(factory, {t: world.tiers[t].policy for t in tiers})
        )
        runs = {t: _TierRun(world.tiers[t], world, trace, draws[t], step_s, steps_per_tick) for t in tiers}
        if isinstance(controller, _PerTier):
            for name, tier_controller in controller.controllers.items():
                attach = getattr(tier_controller, "attach", None)
                if attach is not None:  # the clairvoyant: it is told the truth of its tier
                    attach(runs[name])
        try:
            outcomes = _run_lockstep(runs, controller, draws[tiers[0]].n_steps if tiers else 0)
        finally:
            if isinstance(factory, FleetWide):
                factory.stop()
        waits = np.concatenate([o.waits for o in outcomes.values()])
        weights = np.concatenate([o.weights for o in outcomes.values()])
        tier_results = {t: o.result for t, o in outcomes.items()}
        results[policy_name] = PolicyResult(
            policy=policy_name,
            trace=trace.name,
            seed=seed,
            duration_s=draws[tiers[0]].end_s if tiers else trace.duration_s,
            gpu_hours=sum(r.gpu_hours for r in tier_results.values()),
            cost_usd=sum(r.cost_usd for r in tier_results.values()),
            slo_violation_minutes=sum(r.slo_violation_minutes for r in tier_results.values()),
            slo_violation_minutes_at_max=sum(r.slo_violation_minutes_at_max for r in tier_results.values()),
            p95_queue_wait_s=_weighted_quantile(waits, weights, 0.95),
            scale_actions=sum(r.scale_actions for r in tier_results.values()),
            scale_ins_with_backlog=sum(r.scale_ins_with_backlog for r in tier_results.values()),
            scale_ins_with_queue=sum(r.scale_ins_with_queue for r in tier_results.values()),
            tiers=tier_results,
        )
    return results


class FleetWide:
    """A policy that decides every tier at once, as the deployed controller does (one invocation per tick
    for all tiers): `start` returns its `FleetController` for the run's tier policies, `stop` ends the run
    (releases what `start` set up)."""

    def start(self, tiers: Mapping[str, TierPolicy]) -> FleetController:
        raise NotImplementedError

    def stop(self) -> None:
        """Nothing to release by default."""


class _PerTier:
    """A policy factory's controller for each tier, called together each tick."""

    def __init__(self, factory: PolicyFactory, tiers: Mapping[str, TierPolicy]) -> None:
        self.controllers = {name: factory(policy) for name, policy in tiers.items()}

    def __call__(self, observations: Mapping[str, Observation]) -> Mapping[str, int]:
        return {name: self.controllers[name](obs) for name, obs in observations.items()}

    def replacements(self, tier: str) -> list[str]:
        """Hosts the tier's controller replaced this tick (ours replaces slow hosts), taken once."""
        taken: list[str] | None = getattr(self.controllers[tier], "replacements", None)
        if not taken:
            return []
        names = list(taken)
        taken.clear()
        return names


def _per_tier(factory: PolicyFactory, tiers: Mapping[str, TierPolicy]) -> _PerTier:
    return _PerTier(factory, tiers)


def _run_lockstep(
    runs: Mapping[str, _TierRun], controller: FleetController, n_steps: int
) -> dict[str, _TierOutcome]:
    """Every tier advances step by step together, so a fleet-wide controller sees all tiers at each tick."""
    for run in runs.values():
        run.start()
    for i in range(n_steps):
        ticking = False
        for run in runs.values():
            ticking = run.before_tick(i)
        if ticking:
            observations = {name: run.observe_tick(i) for name, run in runs.items()}
            wanted = controller(observations)
            for name, run in runs.items():
                run.apply_tick(observations[name], wanted[name])
                # Controllers that replace hosts (ours, in process or deployed) say which, once per tick.
                taken = getattr(controller, "replacements", None)
                replaced = taken(name) if callable(taken) else []
                if replaced:
                    run.replace(replaced, i * run.dt)
        for run in runs.values():
            run.after_tick(i)
    return {name: run.finish() for name, run in runs.items()}


class _IndexedDraws:
    """An endless sequence of draws by index from one generator, drawn in fixed blocks so that the value
    at an index never depends on how far any run has read."""

    _BLOCK: Final = 256

    def __init__(self, rng: np.random.Generator, draw: str, **params: float) -> None:
        self._rng = rng
        self._draw = draw
        self._params = params
        self._values: list[float] = []

    def __getitem__(self, index: int) -> float:
        while index >= len(self._values):
            if self._draw == "lognormal":
                block = self._rng.lognormal(self._params["mean"], self._params["sigma"], self._BLOCK)
            elif self._draw == "uniform":
                block = self._rng.uniform(0.0, 1.0, self._BLOCK)
            else:
                block = self._rng.exponential(1.0, self._BLOCK)
            self._values.extend(float(v) for v in block)
        return self._values[index]


class _TierDraws:
    """The random inputs of one tier, shared by every policy (common random numbers)."""

    def __init__(
        self, model: TierModel, world: WorldModel, trace: Trace, seed: int, step_s: float, tick_s: float
    ):
        # crc32, not hash(): stable across processes, and independent of which tiers are simulated.
        arrivals_seq, boot_seq, spot_seq, lag_seq, host_seq = np.random.SeedSequence(
            [seed, zlib.crc32(model.name.encode())]
        ).spawn(5)
        self.n_steps = max(1, math.ceil(trace.duration_s / step_s - _EPS))
        self.end_s = self.n_steps * step_s
        starts = [i * step_s for i in range(self.n_steps)]
        self.players = np.array([trace.players_at(t) for t in starts], dtype=np.float64)
        rates = self.players * model.requests_per_player_minute / 60.0
        self.arrivals: npt.NDArray[np.int64] = np.random.default_rng(arrivals_seq).poisson(rates * step_s)
        self.boot_s = _IndexedDraws(
            np.random.default_rng(boot_seq),
            "lognormal",
            mean=math.log(model.boot_median_s),
            sigma=model.boot_sigma,
        )
        self.spot_clock = _IndexedDraws(np.random.default_rng(spot_seq), "exponential")
        # Each launched host's hidden make-up: its spread around its type's speed, which Spot pool it
        # lands in, and whether it is a degraded host (by launch index, like the boot times).
        spread_seq, type_seq, degraded_seq = host_seq.spawn(3)
        sigma = model.host_spread_sigma
        self.spread = _IndexedDraws(
            np.random.default_rng(spread_seq), "lognormal", mean=-0.5 * sigma * sigma, sigma=sigma
        )
        self.type_draw = _IndexedDraws(np.random.default_rng(type_seq), "uniform")
        self.degraded_draw = _IndexedDraws(np.random.default_rng(degraded_seq), "uniform")
        # The work of a request relative to the trace's average (its request mix, when it has one): the
        # hosts' true throughput divides by it.
        self.work = np.ones(self.n_steps, dtype=np.float64)
        mixes = [trace.mix_at(t) for t in starts]
        if all(mix is not None for mix in mixes):
            work = np.array([model.request_work(*mix) for mix in mixes if mix is not None], dtype=np.float64)
            weights = np.maximum(self.players, 1e-9)
            mean = float(np.average(work, weights=weights))
            if mean > 0:
                self.work = work / mean
        n_ticks = math.ceil(self.end_s / tick_s) + 1
        lags = np.random.default_rng(lag_seq).uniform(world.metric_lag_min_s, world.metric_lag_max_s, n_ticks)
        self.metric_lag_s = [round(float(lag) / step_s) * step_s for lag in lags]  # whole steps


@dataclass(slots=True)
class _Host:
    index: int  # launch index within the tier: the key of its random draws
    spot: bool
    launched_s: float
    ready_s: float  # in service from (booting until then)
    warning_s: float  # Spot interruption notice (inf: On-Demand or never)
    instance: InstanceType
    rps: float  # true throughput at the objective with the average request mix (hidden from policies)
    degraded: bool
    warm: bool = False  # from the warm pool
    state: int = _PENDING
    leave_s: float = math.inf

    @property
    def name(self) -> str:
        return f"h-{self.index}"


@dataclass(slots=True)
class _Cohort:
    """Requests that arrived evenly over [start_s, start_s + step); the earliest are served first."""

    start_s: float
    total: float
    remaining: float


@dataclass(frozen=True, slots=True)
class _TierOutcome:
    result: TierResult
    waits: npt.NDArray[np.float64]
    weights: npt.NDArray[np.float64]


class _TierRun:
    """One tier under one policy (see the module docstring for the order of events in a step)."""

    def __init__(
        self,
        model: TierModel,
        world: WorldModel,
        trace: Trace,
        draws: _TierDraws,
        step_s: float,
        steps_per_tick: int,
    ) -> None:
        self.m = model
        self.p = model.policy
        self.world = world
        self.trace = trace
        self.draws = draws
        self.dt = step_s
        self.steps_per_tick = steps_per_tick
        self.steps_per_minute = round(_MINUTE / step_s)
        self.period_steps = max(1, round(world.metric_period_s / step_s))
        self.od_base = world.spot.base_for(self.p)
        self.spot_rate = world.spot.base_rate_per_s
        self.players_lag_s = PLAYERS_LAG_S
        self.boot_s = model.boot_median_s + model.in_service_delay_s  # what the clairvoyant plans over

        n = draws.n_steps
        self.served = np.zeros(n)
        self.rho = np.full(n, math.nan)
        self.gpu = np.full(n, math.nan)  # NVML utilisation per step (model.GPU_KERNEL_DUTY)
        self.kv = np.full(n, math.nan)
        self.latency = np.full(n, math.nan)  # P95 of the step's requests, over every host
        self.healthy_latency = np.full(n, math.nan)  # P95 on a healthy host (degraded ones: times the factor)
        self.arrivals = draws.arrivals
        # Per step and instance type: ready hosts and their true throughput (what each type's hosts report).
        self.type_index = {instance.name: k for k, instance in enumerate(model.instance_types)}
        self.type_hosts = np.zeros((len(model.instance_types), n))
        self.type_rps = np.zeros((len(model.instance_types), n))
        self.ready_by_type = np.zeros((2, len(model.instance_types)))  # (hosts, rps) of the ready hosts now

        self.hosts: list[_Host] = []
        self.n_ready = self.n_pending = self.n_draining = 0
        self.ready_rps = 0.0  # sum of the ready hosts' true throughput (average mix)
        self.degraded_share = 0.0  # of that, the degraded hosts' share
        self.replaced = 0
        self.next_event_s = math.inf
        self.launched = 0
        self.desired = 0
        self.queue: deque[_Cohort] = deque()
        self.queue_total = 0.0
        self.last_served_rps = 0.0
        self.last_in_flight = 0.0
        self.rho_smooth: float | None = None
        self.smoothing = (
            1.0 - math.exp(-step_s / model.latency_smoothing_s) if model.latency_smoothing_s > 0 else 1.0
        )

        self.host_seconds = 0.0
        self.cost_usd = 0.0
        self.on_demand_seconds = 0.0
        self.on_demand_cost_usd = 0.0
        self.spot_cost_usd = 0.0
        self.interruptions = 0
        self.interruption_s: list[float] = []
        self.scale_actions = 0
        self.scale_ins_with_backlog = 0
        self.scale_ins_with_queue = 0
        self.wait_values: list[float] = []
        self.wait_weights: list[float] = []
        self.minute_waits: list[tuple[float, float]] = []
        self.minute_first_step = 0
        self.series: dict[str, list[float]] = {
            key: []
            for key in (
                "minute_s",
                "players",
                "demand_rps",
                "served_rps",
                "in_service",
                "pending",
                "draining",
                "desired",
                "visible",
                "p95_wait_s",
                "p95_latency_s",
                "gpu_util",
                "slo_violation",
                "hosts",
                "on_demand",
            )
        }

    # --- main loop ---

    # One step i, in order: before_tick (host events); on a tick, observe_tick and apply_tick (the
    # controller's answer); after_tick (reconcile, queue, minute accounting). `_run_lockstep` drives them.

    def start(self) -> None:
        self._start_fleet()

    def before_tick(self, i: int) -> bool:
        """Host events due at step i; True when step i is a controller tick."""
        t = i * self.dt
        if t >= self.next_event_s:
            self._host_events(t)
        return i % self.steps_per_tick == 0

    def observe_tick(self, i: int) -> Observation:
        return self._observe(i, i * self.dt)

    def apply_tick(self, obs: Observation, wanted: int) -> None:
        self._apply(obs, wanted)

    def after_tick(self, i: int) -> None:
        t = i * self.dt
        self._reconcile(t)
        if i % self.steps_per_minute == 0:
            self._sample_minute_start(t)
        self._step(i, t)
        if (i + 1) % self.steps_per_minute == 0 or i + 1 == self.draws.n_steps:
            self._close_minute(i, t + self.dt)

    def finish(self) -> _TierOutcome:
        return self._finish()

    def _start_fleet(self) -> None:
        """Every policy starts from the same warm fleet: enough in-service hosts for the first minute's
        demand at the policy's throughput, past their warmup, desired = that count."""
        start_rps = self.m.arrival_rps(self.trace.players_at(0.0))
        hosts = min(
            max(math.ceil(start_rps / self.m.throughput_rps - _EPS), self.p.min_hosts), self.p.max_hosts
        )
        self.desired = hosts
        for _ in range(hosts):
            host = self._launch(0.0)
            host.state = _READY
            host.ready_s = -self.world.instance_warmup_s
        self._recount()

    # --- hosts ---

    def _launch(self, t: float) -> _Host:
        index = self.launched
        self.launched += 1
        active = self.n_ready + self.n_pending
        on_demand = sum(1 for h in self.hosts if h.state != _DRAINING and not h.spot)
        spot = on_demand >= self.world.spot.on_demand_target(active + 1, self.od_base)
        boot = max(self.draws.boot_s[index], self.m.boot_min_s)
        warm = sum(1 for h in self.hosts if h.warm and h.state != _DRAINING) < self.m.warm_pool_size
        if warm:
            spot, boot = False, max(boot * WARM_BOOT_FRACTION, self.m.boot_min_s * WARM_BOOT_FRACTION)
        warning = (
            spot_warning_time(t, self.draws.spot_clock[index], self.spot_rate, self.trace.spot_storm)
            if spot
            else math.inf
        )
        instance = self._instance_for(index) if spot else self.m.instance
        degraded = self.draws.degraded_draw[index] < self.m.degraded_probability
        host = _Host(
            index=index,
            spot=spot,
            launched_s=t,
            ready_s=t + boot + self.m.in_service_delay_s,
            warning_s=warning,
            instance=instance,
            rps=self.m.host_throughput_rps(instance, self.draws.spread[index], degraded),
            degraded=degraded,
            warm=warm,
        )
        self.hosts.append(host)
        self.n_pending += 1
        return host

    def _instance_for(self, index: int) -> InstanceType:
        """The Spot pool a launch lands in (capacity-optimized; SPOT_TYPE_WEIGHTS)."""
        draw, total = self.draws.type_draw[index], sum(self.m.spot_type_weights)
        cumulative = 0.0
        for instance, weight in zip(self.m.instance_types, self.m.spot_type_weights, strict=True):
            cumulative += weight / total
            if draw < cumulative:
                return instance
        return self.m.instance_types[-1]

    def _host_events(self, t: float) -> None:
        kept: list[_Host] = []
        for h in self.hosts:
            if h.state == _DRAINING:
                if h.leave_s <= t:
                    self._bill(h, h.leave_s)
                    continue
            elif h.warning_s <= t:
                self.interruptions += 1
                self.interruption_s.append(h.warning_s)
                if h.state == _PENDING:  # nothing to finish: terminated now
                    self._bill(h, t)
                    continue
                h.state = _DRAINING
                h.leave_s = min(t + self.m.drain_s, h.warning_s + self.world.spot.notice_s)
            elif h.state == _PENDING and h.ready_s <= t:
                h.state = _READY
            kept.append(h)
        self.hosts = kept
        self._recount()

    def _reconcile(self, t: float) -> None:
        active = self.n_ready + self.n_pending
        if active < self.desired:
            for _ in range(self.desired - active):
                self._launch(t)
            self._recount()
        elif active > self.desired:
            self._remove(active - self.desired, t)
            self._recount()

    def _remove(self, count: int, t: float) -> None:
        """Booting hosts first, then idle in-service hosts, then busy ones (which drain); within each, the
        purchase option that is over its share, newest first."""
        per_host_saturation = self.ready_rps * self.m.saturation_factor / max(self.n_ready, 1)
        busy = (
            self.n_ready
            if self.queue_total > _EPS or per_host_saturation <= 0
            else math.ceil(self.last_served_rps / per_host_saturation - _EPS)
        )
        idle_left = max(self.n_ready - busy, 0)
        for _ in range(count):
            active = [h for h in self.hosts if h.state != _DRAINING]
            pending = [h for h in active if h.state == _PENDING]
            pool = pending or [h for h in active if h.state == _READY]
            if not pool:
                return
            on_demand = sum(1 for h in active if not h.spot)
            prefer_spot = on_demand <= self.world.spot.on_demand_target(len(active) - 1, self.od_base)
            preferred = [h for h in pool if h.spot == prefer_spot] or pool
            victim = max(preferred, key=lambda h: h.launched_s)
            if victim.state == _PENDING or idle_left > 0:
                if victim.state == _READY:
                    idle_left -= 1
                self.hosts.remove(victim)
                self._bill(victim, t)
            else:
                victim.state = _DRAINING
                victim.leave_s = t + self.m.drain_s

    def _recount(self) -> None:
        self.n_ready = self.n_pending = self.n_draining = 0
        self.ready_rps = degraded_rps = 0.0
        self.ready_by_type[:] = 0.0
        next_event = math.inf
        for h in self.hosts:
            if h.state == _READY:
                self.n_ready += 1
                self.ready_rps += h.rps
                k = self.type_index[h.instance.name]
                self.ready_by_type[0, k] += 1
                self.ready_by_type[1, k] += h.rps
                if h.degraded:
                    degraded_rps += h.rps
                next_event = min(next_event, h.warning_s)
            elif h.state == _PENDING:
                self.n_pending += 1
                next_event = min(next_event, h.warning_s, h.ready_s)
            else:
                self.n_draining += 1
                next_event = min(next_event, h.leave_s)
        self.next_event_s = next_event
        self.degraded_share = degraded_rps / self.ready_rps if self.ready_rps > 0 else 0.0

    def _bill(self, host: _Host, end_s: float) -> None:
        seconds = max(end_s - host.launched_s, 0.0)
        cost = seconds / 3600.0 * self.m.price_usd_per_h(host.spot, host.instance)
        self.host_seconds += seconds
        self.cost_usd += cost
        if host.spot:
            self.spot_cost_usd += cost
        else:
            self.on_demand_seconds += seconds
            self.on_demand_cost_usd += cost

    # --- controller ---

    def _apply(self, obs: Observation, wanted: int) -> None:
        new = min(max(int(wanted), self.p.min_hosts), self.p.max_hosts)
        if new != self.desired:
            self.scale_actions += 1
            if new < self.desired and obs.visible + obs.in_flight > 0:
                self.scale_ins_with_backlog += 1
            if new < self.desired and obs.visible > 0:
                self.scale_ins_with_queue += 1
            self.desired = new

    def _observe(self, i: int, t: float) -> Observation:
        lag = self.draws.metric_lag_s[i // self.steps_per_tick]
        end = math.floor((t - lag) / self.dt + _EPS)  # steps [start, end) make the newest datapoint
        start = max(end - self.period_steps, 0)
        gpu = kv = latency = arrival = metrics_time = completed = healthy = None
        if end > 0:
            metrics_time = end * self.dt
            window_s = (end - start) * self.dt
            arrival = float(self.arrivals[start:end].sum()) / window_s
            gpu_steps = self.gpu[start:end]
            gpu_steps = gpu_steps[~np.isnan(gpu_steps)]
            if gpu_steps.size:
                gpu = float(gpu_steps.mean())
                kv = float(np.nanmean(self.kv[start:end]))
            served = self.served[start:end]
            completed = float(served.sum()) / window_s
            if served.sum() > 0:
                latency = _weighted_quantile(self.latency[start:end], served, 0.95)
                healthy = _weighted_quantile(self.healthy_latency[start:end], served, 0.95)
        visible = round(self.queue_total)
        warmup_end = t - self.world.instance_warmup_s
        host_latencies = self._host_latencies(healthy)
        # Each host publishes its own P95; the tier's reads as their median (fleet.adapters.signals), so one
        # slow host moves it no more than its vote. The SLO is judged on every request's latency.
        if host_latencies:
            latency = float(np.median([p95 for _, p95 in host_latencies]))
        return Observation(
            now_s=t,
            visible=visible,
            in_flight=round(self.last_in_flight),
            oldest_age_s=self._oldest_age(t) if visible > 0 else 0.0,
            arrival_rps=arrival,
            gpu_util=gpu,
            kv_cache_usage=kv,
            latency_p95_s=latency,
            metrics_time_s=metrics_time,
            in_service=self.n_ready,
            pending=self.n_pending,
            draining=self.n_draining,
            desired=self.desired,
            warming=sum(1 for h in self.hosts if h.state == _READY and h.ready_s > warmup_end),
            completed_rps=completed if gpu is not None else None,
            host_types=self._host_types(start, end) if gpu is not None else self._host_types(0, 0),
            host_latencies=host_latencies,
            players_online=self.trace.players_at(t - self.players_lag_s),
            players_time_s=t - self.players_lag_s,
        )

    def _ready(self) -> list[_Host]:
        return [h for h in self.hosts if h.state == _READY]

    def _host_types(self, start: int, end: int) -> tuple[HostTypeSignals, ...]:
        """Each type's ready hosts now, and what its hosts reported over the metrics steps [start, end):
        completions (hosts share the work by their speed) and how many hosts reported, on average over the
        window (one datapoint per host and minute, as the agents publish)."""
        groups = []
        window = max(end - start, 1)
        served = self.served[start:end]
        total_rps = self.type_rps[:, start:end].sum(axis=0)
        for k, instance in enumerate(self.m.instance_types):
            hosts_now = int(self.ready_by_type[0, k])
            if hosts_now == 0:
                continue
            completed: float | None = None
            reporting: float | None = None
            if end > start:
                share = np.divide(
                    self.type_rps[k, start:end], total_rps, out=np.zeros(end - start), where=total_rps > 0
                )
                completed = float((served * share).sum()) / (window * self.dt)
                reporting = float(self.type_hosts[k, start:end].mean())
            groups.append(
                HostTypeSignals(
                    instance_type=instance.name,
                    in_service=hosts_now,
                    completed_rps=completed if reporting else None,
                    reporting_hosts=reporting or None,
                    latency_p95_s=self._type_latency(start, end),
                )
            )
        return tuple(groups)

    def _type_latency(self, start: int, end: int) -> float | None:
        served = self.served[start:end]
        if end <= start or served.sum() <= 0:
            return None
        return _weighted_quantile(self.latency[start:end], served, 0.95)

    def _host_latencies(self, healthy: float | None) -> tuple[tuple[str, float], ...]:
        if healthy is None:
            return ()
        factor = self.m.degraded_latency_factor
        return tuple((h.name, healthy * (factor if h.degraded else 1.0)) for h in self._ready())

    def replace(self, names: Sequence[str], t: float) -> None:
        """Terminate these ready hosts without lowering the desired count: each drains (or leaves at once
        when idle) and the group launches its replacement (as `fleet.spot` and slow-host replacement do)."""
        wanted = set(names)
        for h in self.hosts:
            if h.name in wanted and h.state == _READY:
                self.replaced += 1
                h.state = _DRAINING
                h.leave_s = t + (self.m.drain_s if self.queue_total > _EPS else 0.0)
        self._recount()

    # --- what only the clairvoyant is told ---

    def peak_arrival_rps(self, t: float, horizon_s: float) -> float:
        """The highest true per-minute arrival rate in [t, t + horizon_s)."""
        first = round(t / self.dt)
        last = min(round((t + horizon_s) / self.dt), self.draws.n_steps)
        if last <= first:
            return 0.0
        per_minute = self.steps_per_minute
        rates = self.arrivals[first:last].astype(np.float64)
        if rates.size >= per_minute:
            window = np.convolve(rates, np.ones(per_minute), mode="valid") / (per_minute * self.dt)
            return float(window.max())
        return float(rates.sum()) / ((last - first) * self.dt)

    def true_host_rps(self, t: float) -> float:
        """What an average host really serves at the objective now (with the request mix of the moment):
        the ready hosts' own mean, or the expected host of the group's mix when none is ready."""
        i = min(round(t / self.dt), self.draws.n_steps - 1)
        if self.n_ready > 0:
            return self.ready_rps / self.n_ready / float(self.draws.work[i])
        instances = self.m.instance_types
        weights = self.m.spot_type_weights
        spot_mean = sum(w * x.speed for w, x in zip(weights, instances, strict=True)) / sum(weights)
        on_demand = self.world.spot.on_demand_percent_above_base / 100.0
        mean_speed = on_demand * self.m.instance.speed + (1 - on_demand) * spot_mean
        return self.m.throughput_rps * mean_speed / self.m.instance.speed / float(self.draws.work[i])

    def _oldest_age(self, t: float) -> float:
        if not self.queue:
            return 0.0
        head = self.queue[0]
        arrived = head.start_s + self.dt * (1.0 - head.remaining / head.total)
        return max(t - arrived, 0.0)

    # --- queue ---

    def _step(self, i: int, t: float) -> None:
        dt = self.dt
        arrived = float(self.arrivals[i])
        if arrived > 0:
            self.queue.append(_Cohort(start_s=t, total=arrived, remaining=arrived))
            self.queue_total += arrived
        capacity = self.ready_rps * self.m.saturation_factor / self.draws.work[i] * dt
        self.type_hosts[:, i] = self.ready_by_type[0]
        self.type_rps[:, i] = self.ready_by_type[1]
        used = 0.0
        while self.queue and used < capacity - _EPS:
            head = self.queue[0]
            chunk = min(head.remaining, capacity - used)
            done_before = head.total - head.remaining
            arrived_mid = head.start_s + dt * (done_before + chunk / 2) / head.total
            served_mid = t + dt * (used + chunk / 2) / capacity
            wait = max(served_mid - arrived_mid, 0.0)
            self.wait_values.append(wait)
            self.wait_weights.append(chunk)
            self.minute_waits.append((wait, chunk))
            used += chunk
            head.remaining -= chunk
            if head.remaining <= _EPS * head.total:
                self.queue.popleft()
        self.queue_total = max(self.queue_total - used, 0.0) if self.queue else 0.0
        self.served[i] = used
        self.last_served_rps = used / dt
        if self.n_ready > 0:
            rho = used / capacity
            self.rho[i] = rho
            # Latency follows the smoothed utilisation (see model.LATENCY_SMOOTHING_S).
            smooth = (
                rho if self.rho_smooth is None else self.rho_smooth + self.smoothing * (rho - self.rho_smooth)
            )
            self.rho_smooth = smooth
            healthy = self.m.p95_latency_s(smooth)
            self.healthy_latency[i] = healthy
            # Hosts share the load by their speed (each pulls as it completes), so they run at the same
            # utilisation; degraded hosts answer slower. Their requests set the tier's P95 once they are
            # more than 5 % of all requests.
            self.latency[i] = healthy * (
                self.m.degraded_latency_factor if self.degraded_share > 0.05 else 1.0
            )
            self.last_in_flight = self.last_served_rps * self.m.mean_latency_s(smooth)
            self.gpu[i] = self.m.gpu_utilisation(self.last_in_flight / self.n_ready)
            self.kv[i] = self.m.kv_cache_usage(self.last_in_flight / self.n_ready)
        else:
            self.last_in_flight = 0.0

    # --- per-minute accounting ---

    def _sample_minute_start(self, t: float) -> None:
        s = self.series
        s["minute_s"].append(t)
        s["players"].append(self.trace.players_at(t))
        s["in_service"].append(self.n_ready)
        s["pending"].append(self.n_pending)
        s["draining"].append(self.n_draining)
        s["desired"].append(self.desired)
        s["hosts"].append(len(self.hosts))
        s["on_demand"].append(sum(1 for h in self.hosts if not h.spot))
        self.minute_first_step = round(t / self.dt)

    def _close_minute(self, i: int, t_end: float) -> None:
        first, last = self.minute_first_step, i + 1
        served = self.served[first:last]
        total_served = float(served.sum())
        if self.minute_waits:
            values, weights = zip(*self.minute_waits, strict=True)
            wait = _weighted_quantile(np.array(values), np.array(weights), 0.95)
        else:
            wait = self._oldest_age(t_end) if self.queue_total >= 0.5 else 0.0
        latency = _weighted_quantile(self.latency[first:last], served, 0.95) if total_served > 0 else math.nan
        gpu = self.gpu[first:last]
        gpu = gpu[~np.isnan(gpu)]
        violated = wait > self.p.target_wait_s or (total_served > 0 and latency > self.p.latency_p95_slo_s)
        seconds = (last - first) * self.dt
        s = self.series
        s["demand_rps"].append(float(self.arrivals[first:last].sum()) / seconds)
        s["served_rps"].append(total_served / seconds)
        s["visible"].append(round(self.queue_total))
        s["p95_wait_s"].append(wait)
        s["p95_latency_s"].append(latency)
        s["gpu_util"].append(float(gpu.mean()) if gpu.size else 0.0)
        s["slo_violation"].append(violated)
        self.minute_waits = []

    def _finish(self) -> _TierOutcome:
        end = self.draws.end_s
        for h in self.hosts:
            self._bill(h, end if h.state != _DRAINING else min(h.leave_s, end))
        # The warm pool's volumes, as if all were stopped all the time (an upper bound of cents an hour).
        self.cost_usd += self.m.warm_pool_size * end / 3600.0 * STOPPED_HOST_USD_PER_H
        unserved = 0.0
        for c in self.queue:  # censored: waited at least until the end
            done_before = c.total - c.remaining
            arrived_mid = c.start_s + self.dt * (done_before + c.remaining / 2) / c.total
            self.wait_values.append(max(end - arrived_mid, 0.0))
            self.wait_weights.append(c.remaining)
            unserved += c.remaining
        waits = np.array(self.wait_values, dtype=np.float64)
        weights = np.array(self.wait_weights, dtype=np.float64)
        s = self.series
        series = TierSeries(
            minute_s=tuple(s["minute_s"]),
            players=tuple(s["players"]),
            demand_rps=tuple(s["demand_rps"]),
            served_rps=tuple(s["served_rps"]),
            in_service=tuple(int(v) for v in s["in_service"]),
            pending=tuple(int(v) for v in s["pending"]),
            draining=tuple(int(v) for v in s["draining"]),
            desired=tuple(int(v) for v in s["desired"]),
            visible=tuple(int(v) for v in s["visible"]),
            p95_wait_s=tuple(s["p95_wait_s"]),
            p95_latency_s=tuple(s["p95_latency_s"]),
            gpu_util=tuple(s["gpu_util"]),
            slo_violation=tuple(bool(v) for v in s["slo_violation"]),
            hosts=tuple(int(v) for v in s["hosts"]),
            on_demand=tuple(int(v) for v in s["on_demand"]),
        )
        result = TierResult(
            tier=self.p.name,
            gpu_hours=self.host_seconds / 3600.0,
            cost_usd=self.cost_usd,
            slo_violation_minutes=sum(series.slo_violation),
            slo_violation_minutes_at_max=sum(
                1
                for violated, desired in zip(series.slo_violation, series.desired, strict=True)
                if violated and desired >= self.p.max_hosts
            ),
            p95_queue_wait_s=_weighted_quantile(waits, weights, 0.95),
            scale_actions=self.scale_actions,
            scale_ins_with_backlog=self.scale_ins_with_backlog,
            scale_ins_with_queue=self.scale_ins_with_queue,
            spot_interruptions=self.interruptions,
            hosts_launched=self.launched,
            requests=int(self.arrivals.sum()),
            served=float(self.served.sum()),
            unserved_at_end=unserved,
            series=series,
            on_demand_hours=self.on_demand_seconds / 3600.0,
            spot_hours=(self.host_seconds - self.on_demand_seconds) / 3600.0,
            on_demand_cost_usd=self.on_demand_cost_usd,
            spot_cost_usd=self.spot_cost_usd,
            spot_interruption_s=tuple(self.interruption_s),
            step_s=self.dt,
            ready_capacity_rps=tuple(float(v) for v in self.type_rps.sum(axis=0)),
        )
        return _TierOutcome(result=result, waits=waits, weights=weights)


def _weighted_quantile(values: npt.NDArray[np.float64], weights: npt.NDArray[np.float64], q: float) -> float:
    """The smallest value whose cumulative weight reaches q of the total (0.0 when there is no weight)."""
    mask = (weights > 0) & ~np.isnan(values)
    values, weights = values[mask], weights[mask]
    if values.size == 0:
        return 0.0
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    index = int(np.searchsorted(cumulative, q * cumulative[-1] - _EPS * cumulative[-1]))
    return float(values[order][min(index, values.size - 1)])


__all__ = [
    "FleetController",
    "FleetWide",
    "PolicyResult",
    "TierResult",
    "TierSeries",
    "cost_per_player_month",
    "simulate",
]
