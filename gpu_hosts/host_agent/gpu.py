"""GPU readings (NVML) sampled several times per metrics interval, summarised per host.

One reading per publication would be a coin toss under bursty load (NVML's utilisation covers only the
last fraction of a second), so the agent samples every few seconds and publishes the interval's mean.
Several GPUs on one host (g5.12xlarge has four) are folded into one host value: utilisation and power
averaged/summed as the controller and a power bill read them, memory used summed, temperature the hottest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One device at one moment, in NVML's units converted to the published ones."""

    utilization_percent: float  # nvmlDeviceGetUtilizationRates().gpu: kernel busy time
    memory_utilization_percent: float  # .memory: memory controller (bandwidth) busy time
    memory_used_bytes: float
    memory_total_bytes: float
    power_watts: float
    temperature_c: float


@dataclass(frozen=True, slots=True)
class GpuSummary:
    devices: int
    samples: int
    utilization_percent: float
    memory_utilization_percent: float
    memory_used_bytes: float
    power_watts: float
    temperature_c: float


def summarize(samples: Sequence[Sequence[GpuReading]]) -> GpuSummary | None:
    """`samples`: one list of per-device readings per sampling moment. None when nothing was read."""
    taken = [s for s in samples if s]
    if not taken:
        return None
    return GpuSummary(
        devices=len(taken[-1]),
        samples=len(taken),
        utilization_percent=fmean(fmean(r.utilization_percent for r in s) for s in taken),
        memory_utilization_percent=fmean(fmean(r.memory_utilization_percent for r in s) for s in taken),
        # Memory is a level, not a rate: the latest reading is what is held now.
        memory_used_bytes=sum(r.memory_used_bytes for r in taken[-1]),
        power_watts=fmean(sum(r.power_watts for r in s) for s in taken),
        temperature_c=max(r.temperature_c for s in taken for r in s),
    )
