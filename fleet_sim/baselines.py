"""Scaling policies the simulator compares: ours (`fleet.policy.decide`), three AWS-documented baselines
and a clairvoyant bound.

Every policy has one interface: a `PolicyFactory` takes the tier's `TierPolicy` (bounds, throughput,
objectives) and returns a `Controller`, a callable that takes the tier's `Observation` each controller
tick and returns the desired capacity. A controller keeps whatever state it needs between ticks; the
simulator makes a fresh one per tier and run, and clamps the answer to [min_hosts, max_hosts] as the Auto
Scaling group would.

Baselines (what a team would deploy without a custom controller):

- `target-tracking-gpu70`: EC2 Auto Scaling target tracking on the group's average GPU utilisation, target
  70 %. Sources: "Target tracking scaling policies for Amazon EC2 Auto Scaling" and "How target tracking
  scaling for Application Auto Scaling works" (scale out proportionally and fast, scale in only when the
  metric is well below the target, "usually more than 10 %", for long enough), "Set the default instance
  warmup for an Auto Scaling group" (warming instances leave the aggregate metric, count as capacity when
  scaling out, and block scale-in), CloudWatch "Alarm actions" (an alarm repeats an Auto Scaling action
  every minute while it stays in ALARM). The alarm shapes are not in the guides' text but in the alarms
  target tracking creates (visible in the CloudWatch console) for a 1-minute metric: AlarmHigh = 3 of 3
  datapoints above the target, AlarmLow = 15 of 15 datapoints below 90 % of it (e.g. "< 45 for 15
  datapoints" for a target of 50). Both are parameters (`scale_out_datapoints=1, scale_in_ratio=1.0`
  gives the simpler "scale out at once, scale in after 15 minutes below the target" reading).
- `target-tracking-requests`: target tracking on requests per ready host (NumberOfMessagesSent per second
  / InService instances, metric math): the load metric AWS recommends for target tracking, one that
  changes in proportion to capacity ("Target tracking scaling policies": choose a metric that increases
  and decreases proportionally to the number of instances, e.g. ALBRequestCountPerTarget). The target is a
  fraction of the configured host throughput; `REQUEST_TARGET_FRACTIONS` is the sweep a team would run to
  tune it (the benchmark reports the cheapest target that meets the SLO on each trace: the baseline at its
  best, tuned with hindsight).
- `sqs-backlog-per-instance`: "Scaling policy based on Amazon SQS" (EC2 Auto Scaling User Guide): the
  metric is backlog per instance = ApproximateNumberOfMessagesVisible / InService instances, the target is
  acceptable latency / average processing time per message, tracked by the same target tracking machinery.

None of them reads the in-flight count, the age of the oldest message or latency. The configured host
throughput they start from is the same prior ours starts from; what the hosts really serve is the
simulated world's secret (`fleet_sim.model`).

The bound: `clairvoyant` is told the truth of its tier: at each tick it provisions for the highest true
per-minute arrival rate over the next boot time plus one tick, at the hosts' true throughput and the same
target load as ours, and does nothing else (no backlog, no latency). Nobody can spend much less while
keeping up; a policy's GPU-hours over the clairvoyant's say what its uncertainty costs.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Final, Protocol

from fleet.config import FleetSettings, TierTarget
from fleet.controller import Mode, run_tick
from fleet.policy import Decision, TierPolicy, TierSignals, TierState
from fleet_sim.model import Observation

Controller = Callable[[Observation], int]
PolicyFactory = Callable[[TierPolicy], Controller]

# Float products like 0.7 * 10 / 0.7 land a hair above the integer; without the slack ceil adds a host.
_CEIL_SLACK: Final = 1e-9


class Metric(Protocol):
    def __call__(self, obs: Observation) -> float | None: ...


class TargetTracking:
    """EC2 Auto Scaling target tracking on one metric, as its alarms and capacity arithmetic behave.

    Each call is one CloudWatch evaluation (one 1-minute datapoint):

    - AlarmHigh: the last `scale_out_datapoints` datapoints above `target` -> scale out to
      ceil(contributing x metric / target), where contributing = in-service hosts past their warmup
      (warming hosts are out of the aggregate but part of the current capacity, so the result only
      raises the desired count when it exceeds it).
    - AlarmLow: the last `scale_in_datapoints` datapoints below `scale_in_ratio` x target, and no instance
      warming up or booting -> scale in to ceil(in_service x metric / target), not below min_hosts. The
      alarm stays in ALARM and repeats the action every minute while the datapoints stay low.
    - No datapoint (INSUFFICIENT_DATA): no action.
    """

    def __init__(
        self,
        tier: TierPolicy,
        *,
        metric: Metric,
        target: float,
        scale_out_datapoints: int = 3,
        scale_in_datapoints: int = 15,
        scale_in_ratio: float = 0.9,
    ) -> None:
        if target <= 0 or scale_out_datapoints < 1 or scale_in_datapoints < 1 or not 0 < scale_in_ratio <= 1:
            raise ValueError("target > 0, datapoint counts >= 1 and 0 < scale_in_ratio <= 1")
        self.tier = tier
        self.metric = metric
        self.target = target
        self.scale_out_datapoints = scale_out_datapoints
        self.scale_in_datapoints = scale_in_datapoints
        self.scale_in_threshold = scale_in_ratio * target
        self._datapoints: deque[float | None] = deque(maxlen=max(scale_out_datapoints, scale_in_datapoints))

    def __call__(self, obs: Observation) -> int:
        value = self.metric(obs)
        self._datapoints.append(value)
        current = obs.desired
        if value is None:
            return current
        if self._all_recent(self.scale_out_datapoints, lambda v: v > self.target):
            contributing = max(obs.in_service - obs.warming, 0)
            return min(max(current, _ceil(contributing * value / self.target)), self.tier.max_hosts)
        low = self._all_recent(self.scale_in_datapoints, lambda v: v < self.scale_in_threshold)
        if low and obs.warming == 0 and obs.pending == 0:
            wanted = max(_ceil(obs.in_service * value / self.target), self.tier.min_hosts)
            return min(current, wanted)
        return current

    def _all_recent(self, count: int, breaching: Callable[[float], bool]) -> bool:
        if len(self._datapoints) < count:
            return False
        recent = list(self._datapoints)[-count:]
        return all(v is not None and breaching(v) for v in recent)


def gpu_utilisation(obs: Observation) -> float | None:
    """The group's average GPU utilisation (0..1) as CloudWatch has it: 1-2 min old."""
    return obs.gpu_util


def backlog_per_instance(obs: Observation) -> float | None:
    """ApproximateNumberOfMessagesVisible / InService instances (metric math; no datapoint at 0 hosts)."""
    return obs.visible / obs.in_service if obs.in_service > 0 else None


def requests_per_ready_host(obs: Observation) -> float | None:
    """Requests arriving per second per in-service host, as CloudWatch has the arrivals: 1-2 min old."""
    if obs.arrival_rps is None or obs.in_service <= 0:
        return None
    return obs.arrival_rps / obs.in_service


# The targets a team would try for requests per host, as fractions of the configured host throughput.
REQUEST_TARGET_FRACTIONS: Final = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def target_tracking_requests(
    tier: TierPolicy,
    *,
    target_fraction: float = 0.8,
    scale_out_datapoints: int = 3,
    scale_in_datapoints: int = 15,
    scale_in_ratio: float = 0.9,
) -> TargetTracking:
    """`target-tracking-requests`: target tracking on requests per ready host at `target_fraction` of the
    configured host throughput."""
    return TargetTracking(
        tier,
        metric=requests_per_ready_host,
        target=target_fraction * tier.host_throughput_rps,
        scale_out_datapoints=scale_out_datapoints,
        scale_in_datapoints=scale_in_datapoints,
        scale_in_ratio=scale_in_ratio,
    )


def requests_target(fraction: float) -> PolicyFactory:
    """`target-tracking-requests` at one target of the sweep."""
    return lambda tier: target_tracking_requests(tier, target_fraction=fraction)


class Oracle(Protocol):
    """The truth of one simulated tier, told only to the clairvoyant (`simulator._TierRun`)."""

    boot_s: float

    def peak_arrival_rps(self, t: float, horizon_s: float) -> float: ...
    def true_host_rps(self, t: float) -> float: ...


class Clairvoyant:
    """`clairvoyant`: desired = the peak true arrivals over the next boot + one tick / (true host
    throughput x target_load); the simulator attaches its tier's oracle before the run."""

    def __init__(self, tier: TierPolicy, *, tick_s: float = 60.0) -> None:
        self.tier = tier
        self.tick_s = tick_s
        self.oracle: Oracle | None = None

    def attach(self, oracle: Oracle) -> None:
        self.oracle = oracle

    def __call__(self, obs: Observation) -> int:
        if self.oracle is None:
            raise RuntimeError("the clairvoyant runs only inside the simulator, which attaches its oracle")
        peak = self.oracle.peak_arrival_rps(obs.now_s, self.oracle.boot_s + self.tick_s)
        per_host = self.oracle.true_host_rps(obs.now_s) * self.tier.target_load
        return _ceil(peak / per_host) if per_host > 0 else obs.desired


def sqs_backlog_target(tier: TierPolicy) -> float:
    """Acceptable backlog per instance = acceptable latency / average processing time per message.

    The acceptable latency is the tier's queue-wait objective; a host completes `host_throughput_rps`
    messages a second, so its average processing time per message is 1 / host_throughput_rps.
    """
    return tier.target_wait_s * tier.host_throughput_rps


def target_tracking_gpu70(
    tier: TierPolicy,
    *,
    target: float = 0.70,
    scale_out_datapoints: int = 3,
    scale_in_datapoints: int = 15,
    scale_in_ratio: float = 0.9,
) -> TargetTracking:
    """`target-tracking-gpu70`: target tracking on average GPU utilisation at 70 %."""
    return TargetTracking(
        tier,
        metric=gpu_utilisation,
        target=target,
        scale_out_datapoints=scale_out_datapoints,
        scale_in_datapoints=scale_in_datapoints,
        scale_in_ratio=scale_in_ratio,
    )


def sqs_backlog_per_instance(
    tier: TierPolicy,
    *,
    scale_out_datapoints: int = 3,
    scale_in_datapoints: int = 15,
    scale_in_ratio: float = 0.9,
) -> TargetTracking:
    """`sqs-backlog-per-instance`: target tracking on backlog per instance, target `sqs_backlog_target`."""
    return TargetTracking(
        tier,
        metric=backlog_per_instance,
        target=sqs_backlog_target(tier),
        scale_out_datapoints=scale_out_datapoints,
        scale_in_datapoints=scale_in_datapoints,
        scale_in_ratio=scale_in_ratio,
    )


class FleetPolicy:
    """Ours, through the controller's own tick (`fleet.controller.run_tick`) with in-memory adapters: the
    scale-out tick every minute and, on every `scale_down_every_s` boundary, the scale-down tick after it,
    as the two scheduled functions run (`deployed.DeployedController` runs the deployed functions
    themselves against moto; this is the fast path for tests and sweeps)."""

    def __init__(self, tier: TierPolicy, *, scale_down_every_s: float = 300.0) -> None:
        self.tier = tier
        self.scale_down_every_s = scale_down_every_s
        self.state = TierState()
        self.last_decision: Decision | None = None
        self.replacements: list[str] = []  # slow hosts the controller replaced, for the simulator to act on
        self._settings = FleetSettings(
            tiers=(TierTarget(tier.name, "", "", tier.min_hosts, tier.max_hosts),),
            state_table="",
            hosts_table="",
            dry_run=False,
        )

    def __call__(self, obs: Observation) -> int:
        world = _InMemoryTier(self, obs)
        now = datetime.fromtimestamp(obs.now_s, UTC)
        modes: list[Mode] = ["scale_out"]
        ticks = obs.now_s / self.scale_down_every_s
        if math.isclose(ticks, round(ticks), abs_tol=1e-9):
            modes.append("scale_in")
        for mode in modes:
            (result,) = run_tick(
                self._settings,
                mode=mode,
                now=now,
                reader=world,
                store=world,
                actuator=world,
                report=lambda result: None,
                policy=lambda target: self.tier,
            )
            self.last_decision = result.decision
        return world.desired


class _InMemoryTier:
    """Reader, state store and actuator of one simulated tier for `run_tick`."""

    def __init__(self, owner: FleetPolicy, obs: Observation) -> None:
        self.owner, self.obs, self.desired = owner, obs, obs.desired

    def read(self, tier: TierTarget, now: datetime) -> TierSignals:
        return replace(self.obs.to_signals(), desired=self.desired)

    def load(self, tier: str) -> TierState:
        return self.owner.state

    def save(self, tier: str, state: TierState, audit: dict[str, object]) -> None:
        self.owner.state = state

    def scale_out(self, tier: TierTarget, desired: int) -> None:
        self.desired = desired

    def scale_in(self, tier: TierTarget, remove: int) -> list[str]:
        self.desired -= remove
        return [f"host-{i}" for i in range(remove)]

    def replace(self, instance_id: str) -> None:
        self.owner.replacements.append(instance_id)


def static_policy(hosts: int | Mapping[str, int]) -> PolicyFactory:
    """A fixed fleet: `hosts` per tier (one number for all, or by tier name); for tests and bounds."""

    def factory(tier: TierPolicy) -> Controller:
        count = hosts if isinstance(hosts, int) else hosts[tier.name]
        return lambda obs: count

    return factory


BASELINES: Final[Mapping[str, PolicyFactory]] = {
    "target-tracking-gpu70": target_tracking_gpu70,
    "target-tracking-requests": target_tracking_requests,
    "sqs-backlog-per-instance": sqs_backlog_per_instance,
}


def default_policies() -> dict[str, PolicyFactory]:
    """Ours, the baselines and the clairvoyant bound, by the names the results use."""
    return {"ours": FleetPolicy, **BASELINES, "clairvoyant": Clairvoyant}


def _ceil(hosts: float) -> int:
    return max(0, math.ceil(hosts - _CEIL_SLACK))
