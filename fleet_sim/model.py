"""The simulated world: demand, hosts, latency, boot times, Spot and prices, every constant with its source.

Constants marked "assumption:" are estimates to be replaced by measurements (load tests, the fleet's own
CloudWatch data, the AWS bill); the rest cite where they come from. The world keeps its own truth: what a
host really serves depends on the instance type the group launched, the request mix of the moment, a
per-host spread, the odd degraded host and `host_speed` (`fleet simulate --host-speed`), none of which any
scaling policy is told. From the policy the world takes only what is a requirement or a deployment
setting, not an estimate: the tier's bounds and its latency and wait objectives.

Units: seconds, requests, requests per second (rps), US dollars.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from fleet.capacity import HostTypeSignals
from fleet.policy import DEFAULT_POLICIES, TierPolicy, TierSignals
from fleet_sim.traces import SpotStorm

# --- prices --------------------------------------------------------------------------------------------------

# assumption: Spot prices of g5 instances in us-east-1 have mostly sat at 35-40 % of On-Demand (Spot price
# history); 0.38 is the middle. The real price moves by Availability Zone and hour.
SPOT_PRICE_RATIO: Final = 0.38


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceType:
    """An EC2 instance type, its GPUs and hourly prices (Linux, us-east-1)."""

    name: str
    on_demand_usd_per_h: float
    spot_usd_per_h: float
    gpu: str = "A10G"
    gpus: int = 1
    vcpus: int = 4  # what the EC2 vCPU quotas count (fleet report: docs/capacity-planning.md)

    @property
    def speed(self) -> float:
        """Decode speed relative to one A10G (GPU_MEMORY_BANDWIDTH_GBPS, TENSOR_PARALLEL_EFFICIENCY)."""
        one = GPU_MEMORY_BANDWIDTH_GBPS[self.gpu] / GPU_MEMORY_BANDWIDTH_GBPS["A10G"]
        return one * (1.0 + (self.gpus - 1) * TENSOR_PARALLEL_EFFICIENCY)


def _instance(name: str, on_demand_usd_per_h: float, gpu: str, *, vcpus: int, gpus: int = 1) -> InstanceType:
    return InstanceType(
        name=name,
        on_demand_usd_per_h=on_demand_usd_per_h,
        spot_usd_per_h=on_demand_usd_per_h * SPOT_PRICE_RATIO,
        gpu=gpu,
        gpus=gpus,
        vcpus=vcpus,
    )


# On-Demand prices: Amazon EC2 On-Demand Pricing page, Linux, US East (N. Virginia).
INSTANCE_TYPES: Final[Mapping[str, InstanceType]] = {
    "g5.xlarge": _instance("g5.xlarge", 1.006, "A10G", vcpus=4),  # 1 x A10G 24 GB, 4 vCPU
    "g5.2xlarge": _instance("g5.2xlarge", 1.212, "A10G", vcpus=8),  # 1 x A10G 24 GB, 8 vCPU
    "g5.4xlarge": _instance("g5.4xlarge", 1.624, "A10G", vcpus=16),  # 1 x A10G 24 GB, 16 vCPU
    "g5.12xlarge": _instance("g5.12xlarge", 5.672, "A10G", vcpus=48, gpus=4),  # 4 x A10G 96 GB, 48 vCPU
    "g6.xlarge": _instance("g6.xlarge", 0.8048, "L4", vcpus=4),  # 1 x L4 24 GB, 4 vCPU
    "g6.2xlarge": _instance("g6.2xlarge", 0.9776, "L4", vcpus=8),  # 1 x L4 24 GB, 8 vCPU
    "g6.12xlarge": _instance("g6.12xlarge", 4.6016, "L4", vcpus=48, gpus=4),  # 4 x L4 96 GB, 48 vCPU
    "g4dn.xlarge": _instance("g4dn.xlarge", 0.526, "T4", vcpus=4),  # 1 x T4 16 GB, 4 vCPU
    "g6e.xlarge": _instance("g6e.xlarge", 1.861, "L40S", vcpus=4),  # 1 x L40S 48 GB, 4 vCPU
}

# The three instance types of each tier's group, most preferred first: template.yaml's defaults of
# GoldInstanceTypes, SilverInstanceTypes and BronzeInstanceTypes (a test checks they agree). The group
# launches On-Demand hosts of the first type (prioritized allocation) and Spot hosts of any of the three
# (capacity-optimized allocation picks the pool with the most spare capacity, which moves).
TIER_INSTANCE_TYPES: Final[Mapping[str, tuple[str, str, str]]] = {
    "gold": ("g5.xlarge", "g6.xlarge", "g4dn.xlarge"),
    "silver": ("g5.2xlarge", "g6.2xlarge", "g5.4xlarge"),
    "bronze": ("g6e.xlarge", "g5.12xlarge", "g6.12xlarge"),
}
# assumption: which of the three types a Spot launch lands on (capacity-optimized: mostly the deepest
# pool, which for these families is the first-listed, current generation type).
SPOT_TYPE_WEIGHTS: Final = (0.5, 0.3, 0.2)

# --- what a host really serves (hidden from every policy) ---------------------------------------------------

# Published memory bandwidth (GB/s) of each GPU: NVIDIA's A10 (600), L4 (300), T4 (320) and L40S (864)
# datasheets. Token generation is memory-bandwidth bound (each step reads every weight once), so a host's
# decode speed is taken to scale with its GPU's bandwidth.
GPU_MEMORY_BANDWIDTH_GBPS: Final[Mapping[str, float]] = {
    "A10G": 600.0,
    "L4": 300.0,
    "T4": 320.0,
    "L40S": 864.0,
}
# assumption: four-way tensor parallelism keeps 70 % of the added bandwidth (all-reduce between layers).
TENSOR_PARALLEL_EFFICIENCY: Final = 0.7
# assumption: requests/s a host of the tier's first type really completes with its P95 on the latency
# objective, for the trace's average request mix (the same estimate the tier's configuration starts from;
# the policies are not told whether or by how much the hosts differ from it).
REFERENCE_THROUGHPUT_RPS: Final[Mapping[str, float]] = {"gold": 8.0, "silver": 3.0, "bronze": 1.0}
# assumption: hosts of one type differ (GPU clocks under thermal and power limits, the model's place in
# memory, neighbours on the host): a lognormal spread of 10 % per host.
HOST_SPREAD_SIGMA: Final = 0.10
# assumption: 2 % of launches are degraded hosts (a throttled or erroring GPU) serving at half speed with
# twice the latency: the hosts a controller should replace, not grow the tier for.
DEGRADED_PROBABILITY: Final = 0.02
DEGRADED_SPEED: Final = 0.5
DEGRADED_LATENCY_FACTOR: Final = 2.0
# assumption: a prompt token costs a twentieth of a generated one (prefill runs as one batched pass), so
# a request's work is output tokens + prompt tokens / 20; a trace's request mix moves throughput by it.
PROMPT_TOKEN_COST: Final = 0.05

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

# Boot times (launch to vLLM ready) are lognormal around these medians. Hosts start from the tier's baked
# image (images/template.yaml: vLLM, the agent and the weights on the AMI), so a boot is EC2 launch to
# running (~25-40 s: daemonology.net's EC2 boot benchmark, brevdev/ec2-coldboot-research, depot.dev's
# "faster EC2 boot time"), the DLAMI's OS and cloud-init (~30-60 s, no published figure: an estimate),
# first reads of the weights from the lazily restored EBS volume (100-300 MiB/s: the EBS User Guide's
# "Initialize Amazon EBS volumes"; the bootstrap pre-reads them) and vLLM's start from local disk with
# CUDA graph capture (~40-120 s: vllm-project/vllm issue 20264, PR 11005, QwenLM/Qwen3-VL issue 1057).
# The phases are composed in docs/architecture.md ("Booting a GPU host"): p10 / median / p90 of about
# 1.8 / 2.5 / 3.8 min (gold, 2 GB of AWQ weights), 2.7 / 3.7 / 5.5 (silver, 15 GB), 2.8 / 3.8 / 6
# (bronze, 10 GB); sigma 0.3 spans those. The old path (pip install vLLM, download the weights on every
# boot) took about 6 / 7.5 / 7.2 min at the median (`UNBAKED_BOOT_MEDIAN_S`, for comparison).
BOOT_MEDIAN_S: Final[Mapping[str, float]] = {"gold": 150.0, "silver": 222.0, "bronze": 228.0}
UNBAKED_BOOT_MEDIAN_S: Final[Mapping[str, float]] = {"gold": 360.0, "silver": 450.0, "bronze": 432.0}
BOOT_SIGMA: Final = 0.3
# No boot is shorter than the EC2 launch and the OS itself (~60 s).
BOOT_MIN_S: Final = 60.0
# Warm pool (evaluated, not deployed; docs/benchmarks.md): a stopped instance of an On-Demand group starts
# without creating and lazily restoring its root volume, and its OS and vLLM start from blocks already
# read once: assumption, 0.6 x the baked boot (EC2 start and vLLM start remain). A stopped instance pays
# its 200 GB gp3 root volume: $0.08 per GB-month (Amazon EBS pricing, us-east-1) / 730 h.
WARM_BOOT_FRACTION: Final = 0.6
STOPPED_HOST_USD_PER_H: Final = 200 * 0.08 / 730
# assumption: vLLM ready -> InService: the host's health check passes and it completes the launch
# lifecycle action; only then does its agent pull from the queue.
READY_TO_IN_SERVICE_S: Final = 10.0  # the launch workflow polls every 20 s: 10 s on average
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
# vLLM's KV-cache usage (kv_cache_usage_perc: KV blocks held by running sequences / all blocks) grows with
# the requests in flight, which the host agent bounds by its concurrency (template.yaml's
# FleetTierSettings HostConcurrency: gold 16, silver 8, bronze 4). assumption: the cache holds this many of
# the tier's sequences, so at the agent's concurrency it stays a few per cent full (as on real hosts).
KV_CACHE_SEQUENCES: Final[Mapping[str, float]] = {"gold": 320.0, "silver": 100.0, "bronze": 40.0}

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

    policy: TierPolicy  # bounds and objectives (requirements, not estimates)
    requests_per_player_minute: float
    instance_types: tuple[InstanceType, ...]  # the group's types, most preferred first
    reference_throughput_rps: float  # what a host of the first type really serves at the objective
    boot_median_s: float  # launch -> vLLM ready (median)
    spot_type_weights: tuple[float, ...] = SPOT_TYPE_WEIGHTS
    host_speed: float = 1.0  # scales every host's true throughput (fleet simulate --host-speed)
    host_spread_sigma: float = HOST_SPREAD_SIGMA
    degraded_probability: float = DEGRADED_PROBABILITY
    degraded_speed: float = DEGRADED_SPEED
    degraded_latency_factor: float = DEGRADED_LATENCY_FACTOR
    prompt_token_cost: float = PROMPT_TOKEN_COST
    kv_cache_sequences: float = 320.0
    boot_sigma: float = BOOT_SIGMA
    boot_min_s: float = BOOT_MIN_S
    in_service_delay_s: float = READY_TO_IN_SERVICE_S
    # Hosts of an On-Demand warm pool (0: none): the first this many active hosts come from it, boot in
    # WARM_BOOT_FRACTION of the time and run On-Demand; the pool's stopped instances cost their volumes.
    warm_pool_size: int = 0
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
        if not self.instance_types or len(self.spot_type_weights) != len(self.instance_types):
            raise ValueError(f"tier {self.name!r}: one Spot weight per instance type, at least one type")
        if not (self.reference_throughput_rps > 0 and self.host_speed > 0 and self.kv_cache_sequences > 0):
            raise ValueError(f"tier {self.name!r}: throughput, host speed and KV capacity must be > 0")

    @property
    def name(self) -> str:
        return self.policy.name

    @property
    def instance(self) -> InstanceType:
        """The group's most preferred type (its On-Demand hosts)."""
        return self.instance_types[0]

    @property
    def throughput_rps(self) -> float:
        """Requests/s a healthy, average host of the first type really completes with its P95 at the
        objective, with the average request mix (including `host_speed`)."""
        return self.reference_throughput_rps * self.host_speed

    @property
    def saturation_rps(self) -> float:
        """The same host flat out (batch full)."""
        return self.throughput_rps * self.saturation_factor

    def host_throughput_rps(self, instance: InstanceType, spread: float, degraded: bool) -> float:
        """A host's true throughput at the objective with the average request mix."""
        speed = instance.speed / self.instance.speed * spread
        return self.throughput_rps * speed * (self.degraded_speed if degraded else 1.0)

    def request_work(self, prompt_tokens: float, output_tokens: float) -> float:
        """The relative cost of one request (in generated tokens)."""
        return output_tokens + self.prompt_token_cost * prompt_tokens

    def arrival_rps(self, players: float) -> float:
        return players * self.requests_per_player_minute / 60.0

    def p95_latency_s(self, utilisation: float) -> float:
        """P95 request latency of a healthy host at `utilisation` (served / its saturation throughput).

        L(rho) = L0 * (1 + c * rho / (1 - rho)): the M/M/1 response-time shape, flat while batches are
        small, steep near saturation. L0 = unloaded_p95_fraction x the P95 objective; c is solved so that
        L(1 / saturation_factor) equals the objective, i.e. a host serving its own true throughput sits
        exactly at the objective.
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
        """Requests in flight on a host whose KV cache is full (see KV_CACHE_SEQUENCES)."""
        return self.kv_cache_sequences

    def gpu_utilisation(self, in_flight_per_host: float) -> float:
        """NVML utilization.gpu (0..1) of a host with this many requests in flight on average."""
        return GPU_KERNEL_DUTY * (1.0 - math.exp(-max(in_flight_per_host, 0.0)))

    def kv_cache_usage(self, in_flight_per_host: float) -> float:
        """vLLM's KV-cache usage (0..1) of a host with this many requests in flight on average."""
        return min(max(in_flight_per_host, 0.0) / self.full_batch, 1.0)

    def price_usd_per_h(self, spot: bool, instance: InstanceType | None = None) -> float:
        chosen = instance or self.instance
        return chosen.spot_usd_per_h if spot else chosen.on_demand_usd_per_h


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
    arguments override `TierModel` fields (e.g. `host_speed=0.75`)."""
    model = TierModel(
        policy=policy,
        requests_per_player_minute=REQUESTS_PER_PLAYER_MINUTE[policy.name],
        instance_types=tuple(INSTANCE_TYPES[name] for name in TIER_INSTANCE_TYPES[policy.name]),
        reference_throughput_rps=REFERENCE_THROUGHPUT_RPS[policy.name],
        boot_median_s=BOOT_MEDIAN_S[policy.name],
        kv_cache_sequences=KV_CACHE_SEQUENCES[policy.name],
    )
    return dataclasses.replace(model, **overrides) if overrides else model


def default_world(
    policies: Mapping[str, TierPolicy] = DEFAULT_POLICIES, *, host_speed: float = 1.0
) -> WorldModel:
    """The default world for the given tier policies (default: the fleet's `DEFAULT_POLICIES`); every
    host's true throughput scaled by `host_speed`."""
    return WorldModel(
        tiers={name: tier_model(policy, host_speed=host_speed) for name, policy in policies.items()}
    )


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
    # What the hosts report besides (fleet.policy.TierSignals): completions, by instance type, each host's
    # own P95, and the players online that game services publish.
    completed_rps: float | None = None
    host_types: tuple[HostTypeSignals, ...] = ()
    host_latencies: tuple[tuple[str, float], ...] = ()
    players_online: float | None = None
    players_time_s: float | None = None

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
            completed_rps=self.completed_rps,
            host_types=self.host_types,
            host_latencies=self.host_latencies,
            players_online=self.players_online,
            players_time_s=self.players_time_s,
        )
