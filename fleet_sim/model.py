"""The simulated world: demand, hosts, latency, boot times, Spot and prices, every constant with its source.

Constants marked "assumption:" are estimates to be replaced by measurements (load tests, the fleet's own
CloudWatch data, the AWS bill); the rest cite where they come from. Everything that both the world and the
scaling policy must agree on (host throughput, bounds, objectives) is read from the policy's `TierPolicy`,
so a change to the policy's estimates moves the simulated hosts with it.

Units: seconds, requests, requests per second (rps), US dollars.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from fleet.policy import DEFAULT_POLICIES, TierPolicy, TierSignals
from fleet_sim.traces import SpotStorm

# --- prices --------------------------------------------------------------------------------------------------

# assumption: Spot prices of g5 instances in us-east-1 have mostly sat at 35-40 % of On-Demand (Spot price
# history); 0.38 is the middle. The real price moves by Availability Zone and hour.
SPOT_PRICE_RATIO: Final = 0.38


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceType:
    """An EC2 instance type and its hourly prices (Linux, us-east-1)."""

    name: str
    on_demand_usd_per_h: float
    spot_usd_per_h: float


def _instance(name: str, on_demand_usd_per_h: float) -> InstanceType:
    return InstanceType(
        name=name,
        on_demand_usd_per_h=on_demand_usd_per_h,
        spot_usd_per_h=on_demand_usd_per_h * SPOT_PRICE_RATIO,
    )


# On-Demand prices: Amazon EC2 On-Demand Pricing page, Linux, US East (N. Virginia).
INSTANCE_TYPES: Final[Mapping[str, InstanceType]] = {
    "g5.xlarge": _instance("g5.xlarge", 1.006),  # 1 x A10G 24 GB, 4 vCPU
    "g5.2xlarge": _instance("g5.2xlarge", 1.212),  # 1 x A10G 24 GB, 8 vCPU
    "g5.12xlarge": _instance("g5.12xlarge", 5.672),  # 4 x A10G 96 GB, 48 vCPU
    "g6e.xlarge": _instance("g6e.xlarge", 1.861),  # 1 x L40S 48 GB, 4 vCPU
}

# Each tier's most preferred type in template.yaml (GoldInstanceTypes, SilverInstanceTypes,
# BronzeInstanceTypes; the group launches On-Demand hosts in that order). assumption: every host is of
# that type, although Spot hosts may land on the other two listed types (capacity-optimized allocation).
# Bronze, the "larger models" tier, is g6e.xlarge (one L40S, 48 GB); its second choice g5.12xlarge
# (4 x A10G) is in INSTANCE_TYPES for a `tier_model(..., instance=...)` override.
TIER_INSTANCE_TYPES: Final[Mapping[str, str]] = {
    "gold": "g5.xlarge",
    "silver": "g5.2xlarge",
    "bronze": "g6e.xlarge",
}

# --- demand --------------------------------------------------------------------------------------------------

# assumption: requests per online player per minute. Gold is the storyteller / NPC dialogue path every
# player hits (about one generated line per minute of active play); silver the richer quality-tier
# generations (quests, summaries: one every four minutes); bronze batch work (world events, recaps).
# Calibrated against the groups' maxima in template.yaml (gold 50, silver 30, bronze 8), which are the
# platform's sizing for 10,000 players online: at the diurnal peak of a 10,000-player day (~1.5 x the mean)
# each tier needs about two thirds of its maximum at the policies' host throughput, leaving headroom for
# bursts. Configurable per tier (`TierModel`).
REQUESTS_PER_PLAYER_MINUTE: Final[Mapping[str, float]] = {
    "gold": 1.0,
    "silver": 0.25,
    "bronze": 0.02,
}

# --- hosts ---------------------------------------------------------------------------------------------------

# assumption: boot times are lognormal around the policy's `boot_time_s` (launch to vLLM ready: EC2 launch
# of a DLAMI g5 ~60-90 s, then vLLM start, weights download and load, CUDA graph capture; gold ~5 min for
# 2 GB of AWQ weights, silver ~7 min for ~15 GB of fp16, bronze ~10 min). sigma 0.15 puts 90 % of gold boots
# between ~3.9 and ~6.4 min.
BOOT_SIGMA: Final = 0.15
# assumption: no boot is shorter than the EC2 launch itself (~90 s for a GPU instance with the DLAMI).
BOOT_MIN_S: Final = 90.0
# assumption: vLLM ready -> InService: the host's health check passes and it completes the launch
# lifecycle action; only then does its agent pull from the queue.
READY_TO_IN_SERVICE_S: Final = 20.0
# assumption: a host told to leave while it has requests in flight stops pulling, finishes them (seconds:
# one generation) and completes the termination lifecycle action; 30 s covers both. An idle host leaves
# at once.
DRAIN_S: Final = 30.0

# --- latency -------------------------------------------------------------------------------------------------

# assumption: a host saturates (vLLM's batch full: max_num_seqs / KV cache) at 1.25 x the throughput at
# which its P95 meets the latency objective; continuous batching trades latency for throughput up to there.
SATURATION_FACTOR: Final = 1.25
# assumption: P95 latency of a nearly idle host is half the tier's P95 objective.
UNLOADED_P95_FRACTION: Final = 0.5
# The rho/(1 - rho) curve would be infinite at saturation; vLLM bounds the batch, so requests beyond it
# wait in our queue (counted as queue wait) and latency stops growing. Capped at rho = 0.95.
LATENCY_RHO_CAP: Final = 0.95
# The P95 curve is a steady-state curve: it already contains the burstiness of Poisson arrivals. Applied
# to each 10 s step's realised utilisation it would count that noise twice (a few-request tier would swing
# from idle to saturated every step), so it takes the utilisation smoothed over about a minute (an
# exponentially weighted mean with this time constant). Sustained saturation still reaches the cap.
LATENCY_SMOOTHING_S: Final = 60.0
# assumption: mean latency = 0.6 x P95 (right-skewed generation times); used for in-flight counts via
# Little's law (in flight = completions per second x mean time in service).
MEAN_TO_P95_LATENCY: Final = 0.6

# --- GPU metrics ----------------------------------------------------------------------------------------------

# What the host agent publishes as GpuUtilization is NVML's utilization.gpu, a duty cycle: "percent of time
# over the past sample period during which one or more kernels was executing on the GPU" (NVML API
# reference, nvmlUtilization_t). A vLLM host runs decode kernels whenever any request is in flight, so the
# reading is the share of time with at least one request in flight: 1 - exp(-L) for L requests in flight on
# average (Poisson occupancy of an M/G/inf system, which continuous batching approximates below saturation).
# It is near 100 % long before the host is at its throughput; GKE's guide to autoscaling LLM inference on
# GPUs states the same limit (utilisation "does not measure how much work the GPU is doing while active").
# assumption: kernels run 95 % of a busy period (host-side scheduling and sampling between decode steps).
GPU_KERNEL_DUTY: Final = 0.95
# vLLM's KV-cache usage (gpu_cache_usage_perc: KV blocks held by running sequences / all blocks) grows with
# the requests in flight. assumption: proportional to them, full at the concurrency a host holds at
# saturation (saturation_rps x mean latency at the rho cap).

# --- Spot ----------------------------------------------------------------------------------------------------

# assumption: the worst bucket of the AWS Spot Instance Advisor's "<5 %" frequency of interruption read as
# a 5 % chance per host per hour (the Advisor's figure is per month of usage; per hour is pessimistic).
SPOT_INTERRUPTIONS_PER_HOST_HOUR: Final = 0.05
# "Spot Instance interruption notices" (Amazon EC2 User Guide): a two-minute warning.
SPOT_NOTICE_S: Final = 120.0
# template.yaml: OnDemandBaseCapacity 1 per tier, OnDemandPercentAboveBase 20 (80 % of the rest is Spot).
ON_DEMAND_BASE: Final = 1
ON_DEMAND_PERCENT_ABOVE_BASE: Final = 20.0

# --- metrics -------------------------------------------------------------------------------------------------

# assumption: CloudWatch 1-minute metrics (GPU utilisation, P95 latency, NumberOfMessagesSent) become
# readable 1-2 min after the moment they describe. Queue attributes (GetQueueAttributes) are current.
METRIC_LAG_MIN_S: Final = 60.0
METRIC_LAG_MAX_S: Final = 120.0
METRIC_PERIOD_S: Final = 60.0
# Platform brief: the Auto Scaling groups' default instance warmup (ec2-auto-scaling-default-instance-warmup).
INSTANCE_WARMUP_S: Final = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TierModel:
    """One tier's hosts and demand in the simulated world."""

    policy: TierPolicy  # bounds, objectives and host throughput (shared with the scaling policy)
    requests_per_player_minute: float
    instance: InstanceType
    boot_median_s: float  # launch -> vLLM ready (median)
    boot_sigma: float = BOOT_SIGMA
    boot_min_s: float = BOOT_MIN_S
    in_service_delay_s: float = READY_TO_IN_SERVICE_S
    drain_s: float = DRAIN_S
    saturation_factor: float = SATURATION_FACTOR
    unloaded_p95_fraction: float = UNLOADED_P95_FRACTION
    latency_rho_cap: float = LATENCY_RHO_CAP
    latency_smoothing_s: float = LATENCY_SMOOTHING_S
    mean_to_p95_latency: float = MEAN_TO_P95_LATENCY

    def __post_init__(self) -> None:
        if not (self.requests_per_player_minute >= 0 and self.boot_median_s > 0 and self.boot_sigma >= 0):
            raise ValueError(f"tier {self.name!r}: demand, boot median and sigma must be >= 0 (median > 0)")
        if not (
            self.saturation_factor > 1 and 0 < self.unloaded_p95_fraction < 1 and 0 < self.latency_rho_cap < 1
        ):
            raise ValueError(f"tier {self.name!r}: saturation > 1, unloaded fraction and rho cap in (0, 1)")

    @property
    def name(self) -> str:
        return self.policy.name

    @property
    def throughput_rps(self) -> float:
        """Requests/s a ready host completes with its P95 at the objective (the policy's estimate)."""
        return self.policy.host_throughput_rps

    @property
    def saturation_rps(self) -> float:
        """Requests/s a ready host completes flat out (batch full); the queue drains at this rate."""
        return self.policy.host_throughput_rps * self.saturation_factor

    def arrival_rps(self, players: float) -> float:
        return players * self.requests_per_player_minute / 60.0

    def p95_latency_s(self, utilisation: float) -> float:
        """P95 request latency of a host at `utilisation` (served / saturation_rps).

        L(rho) = L0 * (1 + c * rho / (1 - rho)): the M/M/1 response-time shape, flat while batches are
        small, steep near saturation. L0 = unloaded_p95_fraction x the P95 objective; c is solved so that
        L(1 / saturation_factor) equals the objective, i.e. a host serving `throughput_rps` sits exactly at
        the objective, which is what the policy's `host_throughput_rps` means.
        """
        slo = self.policy.latency_p95_slo_s
        base = self.unloaded_p95_fraction * slo
        rho_slo = 1.0 / self.saturation_factor
        c = (1.0 / self.unloaded_p95_fraction - 1.0) * (1.0 - rho_slo) / rho_slo
        rho = min(max(utilisation, 0.0), self.latency_rho_cap)
        return base * (1.0 + c * rho / (1.0 - rho))

    def mean_latency_s(self, utilisation: float) -> float:
        return self.mean_to_p95_latency * self.p95_latency_s(utilisation)

    @property
    def full_batch(self) -> float:
        """Requests in flight on a host whose KV cache is full (see GPU_KERNEL_DUTY's comment)."""
        return self.saturation_rps * self.mean_latency_s(self.latency_rho_cap)

    def gpu_utilisation(self, in_flight_per_host: float) -> float:
        """NVML utilization.gpu (0..1) of a host with this many requests in flight on average."""
        return GPU_KERNEL_DUTY * (1.0 - math.exp(-max(in_flight_per_host, 0.0)))

    def kv_cache_usage(self, in_flight_per_host: float) -> float:
        """vLLM's KV-cache usage (0..1) of a host with this many requests in flight on average."""
        return min(max(in_flight_per_host, 0.0) / self.full_batch, 1.0)

    def price_usd_per_h(self, spot: bool) -> float:
        return self.instance.spot_usd_per_h if spot else self.instance.on_demand_usd_per_h


@dataclass(frozen=True, slots=True, kw_only=True)
class SpotModel:
    """Purchase options of the Auto Scaling groups (MixedInstancesPolicy) and Spot interruptions."""

    on_demand_base: int | None = ON_DEMAND_BASE  # OnDemandBaseCapacity; None: the tier's min_hosts
    on_demand_percent_above_base: float = ON_DEMAND_PERCENT_ABOVE_BASE
    interruptions_per_host_hour: float = SPOT_INTERRUPTIONS_PER_HOST_HOUR
    notice_s: float = SPOT_NOTICE_S

    def base_for(self, tier: TierPolicy) -> int:
        return tier.min_hosts if self.on_demand_base is None else self.on_demand_base

    def on_demand_target(self, hosts: int, base: int) -> int:
        """On-Demand hosts in a group of `hosts`: the base first, then the percentage of the rest
        (assumption: rounded half up; the ASG's exact rounding is not documented)."""
        above = max(0, hosts - base)
        return min(hosts, base) + math.floor(above * self.on_demand_percent_above_base / 100.0 + 0.5)

    @property
    def base_rate_per_s(self) -> float:
        """Interruption hazard per Spot host-second equivalent to the per-hour probability."""
        return -math.log1p(-self.interruptions_per_host_hour) / 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class WorldModel:
    """Everything the simulator's world needs besides the trace."""

    tiers: Mapping[str, TierModel]
    spot: SpotModel = field(default_factory=SpotModel)
    metric_lag_min_s: float = METRIC_LAG_MIN_S
    metric_lag_max_s: float = METRIC_LAG_MAX_S
    metric_period_s: float = METRIC_PERIOD_S
    instance_warmup_s: float = INSTANCE_WARMUP_S

    def __post_init__(self) -> None:
        if not 0 <= self.metric_lag_min_s <= self.metric_lag_max_s or self.metric_period_s <= 0:
            raise ValueError("metric lags must satisfy 0 <= min <= max and the period must be > 0")


def tier_model(policy: TierPolicy, **overrides: Any) -> TierModel:
    """The default world model of a tier whose policy is `policy` (name gold, silver or bronze); keyword
    arguments override `TierModel` fields (e.g. `requests_per_player_minute=1.0`)."""
    model = TierModel(
        policy=policy,
        requests_per_player_minute=REQUESTS_PER_PLAYER_MINUTE[policy.name],
        instance=INSTANCE_TYPES[TIER_INSTANCE_TYPES[policy.name]],
        boot_median_s=policy.boot_time_s,  # so the world boots as long as the policy expects
    )
    return dataclasses.replace(model, **overrides) if overrides else model


def default_world(policies: Mapping[str, TierPolicy] = DEFAULT_POLICIES) -> WorldModel:
    """The default world for the given tier policies (default: the fleet's `DEFAULT_POLICIES`)."""
    return WorldModel(tiers={name: tier_model(policy) for name, policy in policies.items()})


def spot_warning_time(
    launch_s: float, clock: float, base_rate_per_s: float, storm: SpotStorm | None
) -> float:
    """When a Spot host launched at `launch_s` gets its interruption notice (inf: never).

    The host is interrupted when its cumulative hazard since launch reaches `clock`, an Exp(1) draw fixed
    per launch index (so every policy's k-th host shares it). The hazard is `base_rate_per_s`, plus, inside
    a storm window, the constant rate that interrupts `interrupted_fraction` of the hosts alive through the
    whole window: -ln(1 - fraction) / window length.
    """
    segments: list[tuple[float, float, float]] = []  # (start, end, rate)
    if storm is None or storm.end_s <= launch_s:
        segments.append((launch_s, math.inf, base_rate_per_s))
    else:
        storm_rate = -math.log1p(-storm.interrupted_fraction) / (storm.end_s - storm.start_s)
        start = max(launch_s, storm.start_s)
        if launch_s < start:
            segments.append((launch_s, start, base_rate_per_s))
        segments.append((start, storm.end_s, base_rate_per_s + storm_rate))
        segments.append((storm.end_s, math.inf, base_rate_per_s))
    remaining = clock
    for start, end, rate in segments:
        if rate <= 0:
            continue
        span = (end - start) * rate
        if remaining <= span:
            return start + remaining / rate
        remaining -= span
    return math.inf


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """What a scaling policy sees for one tier at one controller tick.

    The fields of `fleet.policy.TierSignals` (queue numbers current; GPU utilisation, KV cache, P95 latency
    and arrivals as of `metrics_time_s`, 1-2 min old) plus `warming`: in-service hosts still inside the
    Auto Scaling group's default instance warmup, which target tracking leaves out of its aggregate metric
    and blocks scale-in for.
    """

    now_s: float
    visible: int
    in_flight: int
    oldest_age_s: float
    arrival_rps: float | None
    gpu_util: float | None
    kv_cache_usage: float | None
    latency_p95_s: float | None
    metrics_time_s: float | None
    in_service: int
    pending: int
    draining: int
    desired: int
    warming: int = 0

    def to_signals(self) -> TierSignals:
        return TierSignals(
            now_s=self.now_s,
            visible=self.visible,
            in_flight=self.in_flight,
            oldest_age_s=self.oldest_age_s,
            arrival_rps=self.arrival_rps,
            gpu_util=self.gpu_util,
            kv_cache_usage=self.kv_cache_usage,
            latency_p95_s=self.latency_p95_s,
            metrics_time_s=self.metrics_time_s,
            in_service=self.in_service,
            pending=self.pending,
            draining=self.draining,
            desired=self.desired,
        )
