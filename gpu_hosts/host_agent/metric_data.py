"""CloudWatch MetricData for the AiGame/Fleet namespace: names and units of docs/host-contract.md, each
value under the dimensions Tier, Tier+InstanceId and (when the host knows it) Tier+InstanceType, in
PutMetricData-sized batches; the host's own time (HostHours) under Tier+PurchaseOption."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from host_agent.gpu import GpuSummary
from host_agent.vllm_metrics import VllmInterval, VllmSnapshot

UNITS: Mapping[str, str] = {
    "GpuUtilization": "Percent",
    "GpuMemoryUtilization": "Percent",
    "GpuMemoryUsed": "Bytes",
    "GpuPowerDraw": "None",  # CloudWatch has no Watts unit; the name carries it
    "GpuTemperature": "None",
    "KvCacheUsage": "Percent",
    "RequestLatencyP95": "Seconds",
    "TimeToFirstTokenP95": "Seconds",
    "RunningRequests": "Count",
    "WaitingRequests": "Count",
    "TokensPerSecond": "Count/Second",
    "RequestsCompleted": "Count",
    "HostHours": "None",
}
MAX_DATA_PER_CALL = 1000  # PutMetricData's limit per request


@dataclass(frozen=True, slots=True)
class MetricValue:
    name: str
    value: float

    @property
    def unit(self) -> str:
        return UNITS[self.name]


def gpu_values(summary: GpuSummary | None) -> list[MetricValue]:
    if summary is None:
        return []
    return [
        MetricValue("GpuUtilization", summary.utilization_percent),
        MetricValue("GpuMemoryUtilization", summary.memory_utilization_percent),
        MetricValue("GpuMemoryUsed", summary.memory_used_bytes),
        MetricValue("GpuPowerDraw", summary.power_watts),
        MetricValue("GpuTemperature", summary.temperature_c),
    ]


def vllm_values(snapshot: VllmSnapshot | None, interval: VllmInterval | None) -> list[MetricValue]:
    values: list[MetricValue] = []
    if snapshot is not None:
        if snapshot.kv_cache_usage is not None:
            values.append(MetricValue("KvCacheUsage", snapshot.kv_cache_usage * 100.0))
        if snapshot.running is not None:
            values.append(MetricValue("RunningRequests", snapshot.running))
        if snapshot.waiting is not None:
            values.append(MetricValue("WaitingRequests", snapshot.waiting))
    if interval is not None:
        if interval.latency_p95_s is not None:
            values.append(MetricValue("RequestLatencyP95", interval.latency_p95_s))
        if interval.time_to_first_token_p95_s is not None:
            values.append(MetricValue("TimeToFirstTokenP95", interval.time_to_first_token_p95_s))
        if interval.tokens_per_second is not None:
            values.append(MetricValue("TokensPerSecond", interval.tokens_per_second))
        if interval.requests_completed is not None:
            values.append(MetricValue("RequestsCompleted", interval.requests_completed))
    return values


def build_metric_data(
    values: Sequence[MetricValue],
    *,
    tier: str,
    instance_id: str,
    timestamp: datetime,
    high_resolution: bool = False,
    instance_type: str | None = None,
) -> list[dict[str, Any]]:
    """Non-finite values are dropped: CloudWatch rejects NaN and infinities for the whole call."""
    data: list[dict[str, Any]] = []
    for metric in values:
        if not math.isfinite(metric.value):
            continue
        dimension_sets = [
            [{"Name": "Tier", "Value": tier}],
            [{"Name": "Tier", "Value": tier}, {"Name": "InstanceId", "Value": instance_id}],
        ]
        if instance_type:
            # What the controller learns each instance type's throughput from (fleet.capacity).
            dimension_sets.append(
                [{"Name": "Tier", "Value": tier}, {"Name": "InstanceType", "Value": instance_type}]
            )
        for dimensions in dimension_sets:
            datum: dict[str, Any] = {
                "MetricName": metric.name,
                "Dimensions": dimensions,
                "Timestamp": timestamp,
                "Value": float(metric.value),
                "Unit": metric.unit,
            }
            if high_resolution:
                datum["StorageResolution"] = 1
            data.append(datum)
    return data


def host_hours_datum(
    *, tier: str, purchase_option: str, hours: float, timestamp: datetime, high_resolution: bool = False
) -> dict[str, Any]:
    """This host's share of an hour in the interval, by purchase option: summed over an hour it is the tier's
    host-hours (GPU-hours) On-Demand and Spot, which no AWS metric tells per tier (the cost dashboard)."""
    datum: dict[str, Any] = {
        "MetricName": "HostHours",
        "Dimensions": [{"Name": "Tier", "Value": tier}, {"Name": "PurchaseOption", "Value": purchase_option}],
        "Timestamp": timestamp,
        "Value": float(hours),
        "Unit": UNITS["HostHours"],
    }
    if high_resolution:
        datum["StorageResolution"] = 1
    return datum


def batches(data: Sequence[dict[str, Any]], size: int = MAX_DATA_PER_CALL) -> Iterator[list[dict[str, Any]]]:
    if size < 1:
        raise ValueError("batch size must be positive")
    for start in range(0, len(data), size):
        yield list(data[start : start + size])
