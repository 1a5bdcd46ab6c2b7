"""What one host of a tier sustains within the latency objective, learned per instance type.

The configured `TierPolicy.host_throughput_rps` is a prior: an estimate for the tier's reference instance
type (the first of its group's types) with the request mix the tier was sized for. Hosts of other types
start from that prior scaled by their GPU's decode speed (token generation is memory-bandwidth bound, so
the ratio of published memory bandwidths), and every tick with fresh host reports moves each type's
estimate toward what its hosts actually do:

- P95 over the objective while a type's hosts completed c requests/s each, at least `BUSY` x the estimate:
  c is more than a host sustains within the objective, so an estimate above c comes down toward it (a
  fraction `LEARNING_RATE` per tick). A P95 over the objective on lightly loaded hosts is not about load
  (a slow model, slow hosts) and teaches nothing about capacity.
- P95 within the objective at c requests/s: c is sustainable, so an estimate below c rises to c.
- P95 well within the objective (under `EXPLORE_BELOW` x SLO) while the hosts run near the planned load
  (c >= `LOADED` x estimate): the hosts have headroom the estimate does not credit, so it rises by
  `EXPLORE_STEP`. Without this an underestimate would never show: the controller keeps hosts at the load
  it planned.
- Messages waited through the whole metrics minute (`saturated`): every host was running flat out, so c
  is what a host of the type does at all, whatever its latency; an estimate above c comes down toward it
  (a fraction `SATURATED_RATE` per tick). This is what catches hosts slower than configured whose latency
  stays within the objective while the queue grows.
- A P95 measured while messages waited (`backlog_latency`) is the backlog's symptom, not a load's: it
  lowers no estimate (the saturated rule above does, when the wait spans the minute).
- Nothing is learned from hosts far below plan (a quiet tier says nothing about capacity) or without a
  fresh P95. Estimates stay within [`FLOOR`, `CEILING`] x the prior.

Pure: the estimates travel in `TierState.throughput` between ticks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

# Published memory bandwidth of each GPU (GB/s; NVIDIA's A10, L4, T4 and L40S datasheets). LLM decode
# is memory-bandwidth bound, so their ratio is the prior ratio of decode speeds.
GPU_MEMORY_BANDWIDTH_GBPS: Final[Mapping[str, float]] = {
    "A10G": 600.0,
    "L4": 300.0,
    "T4": 320.0,
    "L40S": 864.0,
}
# GPUs of the instance types the tiers' groups may launch (Amazon EC2 accelerated computing instances).
INSTANCE_GPUS: Final[Mapping[str, tuple[str, int]]] = {
    "g5.xlarge": ("A10G", 1),
    "g5.2xlarge": ("A10G", 1),
    "g5.4xlarge": ("A10G", 1),
    "g5.12xlarge": ("A10G", 4),
    "g6.xlarge": ("L4", 1),
    "g6.2xlarge": ("L4", 1),
    "g6.12xlarge": ("L4", 4),
    "g4dn.xlarge": ("T4", 1),
    "g6e.xlarge": ("L40S", 1),
}
# assumption: four-way tensor parallelism keeps 70 % of the added bandwidth (all-reduce between layers).
TENSOR_PARALLEL_EFFICIENCY: Final = 0.7

LEARNING_RATE: Final = 0.3
SATURATED_RATE: Final = 0.5
EXPLORE_BELOW: Final = 0.8
EXPLORE_STEP: Final = 0.05
LOADED: Final = 0.8
BUSY: Final = 0.5
FLOOR: Final = 0.25
CEILING: Final = 4.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HostTypeSignals:
    """What one instance type's in-service hosts of a tier reported over the newest metrics minute."""

    instance_type: str
    in_service: int
    completed_rps: float | None = None  # requests completed per second, all hosts of the type together
    # Hosts that reported those completions (the datapoint's SampleCount: one per host and minute); None:
    # taken to be in_service. Hosts joining or leaving during a scale-out make the two differ.
    reporting_hosts: float | None = None
    latency_p95_s: float | None = None  # P95 of those requests


def relative_speed(instance_type: str) -> float | None:
    """Decode speed of an instance type relative to one A10G; None for a type not in the table."""
    found = INSTANCE_GPUS.get(instance_type)
    if found is None:
        return None
    gpu, count = found
    speed = GPU_MEMORY_BANDWIDTH_GBPS[gpu] / GPU_MEMORY_BANDWIDTH_GBPS["A10G"]
    return speed * (1.0 + (count - 1) * TENSOR_PARALLEL_EFFICIENCY)


def prior(host_throughput_rps: float, reference_type: str, instance_type: str) -> float:
    """The configured throughput, moved from the reference type to `instance_type` by decode speed."""
    reference, speed = relative_speed(reference_type), relative_speed(instance_type)
    if reference is None or speed is None:
        return host_throughput_rps
    return host_throughput_rps * speed / reference


def learn(
    estimates: Mapping[str, float],
    observed: Sequence[HostTypeSignals],
    *,
    host_throughput_rps: float,
    reference_type: str,
    latency_slo_s: float,
    tier_latency_p95_s: float | None,
    saturated: bool = False,
    backlog_latency: bool = False,
) -> tuple[dict[str, float], list[str]]:
    """The estimates after one tick of reports, and a reason for each that moved."""
    learned = dict(estimates)
    reasons: list[str] = []
    for group in observed:
        if group.in_service <= 0 or group.completed_rps is None or not math.isfinite(group.completed_rps):
            continue
        p95 = group.latency_p95_s if group.latency_p95_s is not None else tier_latency_p95_s
        if p95 is None or not math.isfinite(p95):
            continue
        base = prior(host_throughput_rps, reference_type, group.instance_type)
        old = learned.get(group.instance_type, base)
        reporting = group.reporting_hosts if group.reporting_hosts else group.in_service
        per_host = group.completed_rps / reporting
        new = old
        if saturated and per_host < old:
            new = old + SATURATED_RATE * (per_host - old)
        elif p95 > latency_slo_s:
            # A P95 a backlog caused (hosts flat out, then draining it) says nothing of the load it was at.
            if BUSY * old <= per_host < old and not backlog_latency:
                new = old + LEARNING_RATE * (per_host - old)
        elif per_host > old:
            new = per_host
        elif p95 < EXPLORE_BELOW * latency_slo_s and per_host >= LOADED * old:
            new = old * (1.0 + EXPLORE_STEP)
        new = min(max(new, FLOOR * base), CEILING * base)
        learned[group.instance_type] = new
        if not math.isclose(new, old, rel_tol=1e-6):
            backlog = " with messages waiting" if saturated else ""
            reasons.append(
                f"{group.instance_type}: {per_host:.2f} req/s per host at P95 {p95:.2f} s (SLO "
                f"{latency_slo_s:g} s){backlog} -> throughput estimate {old:.2f} -> {new:.2f} req/s"
            )
    return learned, reasons


def fleet_throughput(
    estimates: Mapping[str, float],
    host_types: Sequence[HostTypeSignals],
    *,
    host_throughput_rps: float,
    reference_type: str,
) -> float:
    """Requests/s a host of the tier sustains within the objective: the in-service hosts' estimates,
    weighted by how many there are of each type (hosts launched next are taken to be like them); the
    configured throughput when no host reports its type."""
    total = sum(g.in_service for g in host_types if g.in_service > 0)
    if total == 0:
        known = [v for v in estimates.values() if v > 0]
        return min(known) if known else host_throughput_rps
    weighted = sum(
        g.in_service
        * estimates.get(g.instance_type, prior(host_throughput_rps, reference_type, g.instance_type))
        for g in host_types
        if g.in_service > 0
    )
    return weighted / total
