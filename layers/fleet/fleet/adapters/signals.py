"""Reads one tier's signals: SQS queue depth, CloudWatch host and queue metrics, Auto Scaling instances.

The host agent publishes its metrics per tier, per instance and per instance type to AiGame/Fleet
(docs/host-contract.md); game services may publish PlayersOnline per tier. One GetMetricData call reads:

- GpuUtilization and KvCacheUsage: the tier's Average;
- RequestLatencyP95: the median (p50) over the tier's hosts, never the maximum (one slow host must not
  ratchet the tier upward), the same per instance type, and each in-service host's own (to find slow
  hosts to replace);
- RequestsCompleted: the tier's and each instance type's Sum (the throughput the controller learns), and
  each type's SampleCount (one datapoint per host and minute: how many hosts completed them);
- LaunchFailures: the tier's Sum (launches the launch workflow abandoned; the controller backs off);
- PlayersOnline (Maximum) and the queue's ApproximateAgeOfOldestMessage and NumberOfMessagesSent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fleet.capacity import HostTypeSignals
from fleet.config import METRICS_NAMESPACE, TierTarget
from fleet.errors import SignalsUnavailableError
from fleet.policy import TierSignals

_PENDING = {"Pending", "Pending:Wait", "Pending:Proceed", "Warmed:Pending"}
_DRAINING = {"Terminating", "Terminating:Wait", "Terminating:Proceed"}
_WINDOW = timedelta(minutes=6)
_PERIOD_S = 60


def _metric(qid: str, namespace: str, name: str, dimensions: dict[str, str], stat: str) -> dict[str, Any]:
    return {
        "Id": qid,
        "MetricStat": {
            "Metric": {
                "Namespace": namespace,
                "MetricName": name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
            },
            "Period": _PERIOD_S,
            "Stat": stat,
        },
    }


def _queries(tier: TierTarget, instance_types: list[str], instance_ids: list[str]) -> list[dict[str, Any]]:
    queue = {"QueueName": tier.queue_url.rsplit("/", 1)[-1]}
    mine = {"Tier": tier.name}
    queries = [
        _metric("gpu", METRICS_NAMESPACE, "GpuUtilization", mine, "Average"),
        _metric("kv", METRICS_NAMESPACE, "KvCacheUsage", mine, "Average"),
        _metric("p95", METRICS_NAMESPACE, "RequestLatencyP95", mine, "p50"),
        _metric("done", METRICS_NAMESPACE, "RequestsCompleted", mine, "Sum"),
        _metric("players", METRICS_NAMESPACE, "PlayersOnline", mine, "Maximum"),
        _metric("launchfail", METRICS_NAMESPACE, "LaunchFailures", mine, "Sum"),
        _metric("age", "AWS/SQS", "ApproximateAgeOfOldestMessage", queue, "Maximum"),
        _metric("sent", "AWS/SQS", "NumberOfMessagesSent", queue, "Sum"),
    ]
    for i, instance_type in enumerate(instance_types):
        typed = {**mine, "InstanceType": instance_type}
        queries.append(_metric(f"type{i}done", METRICS_NAMESPACE, "RequestsCompleted", typed, "Sum"))
        # One datapoint per host and minute: how many hosts those completions came from.
        queries.append(_metric(f"type{i}hosts", METRICS_NAMESPACE, "RequestsCompleted", typed, "SampleCount"))
        queries.append(_metric(f"type{i}p95", METRICS_NAMESPACE, "RequestLatencyP95", typed, "p50"))
    for i, instance_id in enumerate(instance_ids):
        host = {**mine, "InstanceId": instance_id}
        queries.append(_metric(f"host{i}p95", METRICS_NAMESPACE, "RequestLatencyP95", host, "Maximum"))
    return queries


def _failures(results: list[dict[str, Any]]) -> tuple[int, float | None]:
    """Launches abandoned over the window, and the newest minute with one (epoch seconds)."""
    found = next((r for r in results if r["Id"] == "launchfail"), None)
    if found is None:
        return 0, None
    points = [
        (t, v) for t, v in zip(found.get("Timestamps", []), found.get("Values", []), strict=False) if v > 0
    ]
    if not points:
        return 0, None
    return round(sum(v for _, v in points)), max(t for t, _ in points).timestamp()


def _latest(result: dict[str, Any]) -> tuple[float, datetime] | None:
    points = sorted(zip(result.get("Timestamps", []), result.get("Values", []), strict=False), reverse=True)
    return (float(points[0][1]), points[0][0]) if points else None


class TierSignalReader:
    def __init__(self, sqs: Any, cloudwatch: Any, autoscaling: Any) -> None:
        self._sqs, self._cloudwatch, self._autoscaling = sqs, cloudwatch, autoscaling

    def read(self, tier: TierTarget, now: datetime) -> TierSignals:
        try:
            groups = self._autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[tier.asg_name])[
                "AutoScalingGroups"
            ]
            if not groups:
                raise SignalsUnavailableError(f"{tier.name}: Auto Scaling group {tier.asg_name} not found")
            instances = groups[0].get("Instances", [])
            serving = [i for i in instances if i["LifecycleState"] == "InService"]
            types = sorted({i["InstanceType"] for i in serving if i.get("InstanceType")})
            ids = sorted(i["InstanceId"] for i in serving)
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=tier.queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            metrics = self._cloudwatch.get_metric_data(
                MetricDataQueries=_queries(tier, types, ids),
                StartTime=now - _WINDOW,
                # Past "now": the current, still-filling minute is the freshest view there is.
                EndTime=now + timedelta(minutes=1),
                ScanBy="TimestampDescending",
            )["MetricDataResults"]
        except (ClientError, BotoCoreError) as exc:
            raise SignalsUnavailableError(f"{tier.name}: {exc}") from exc
        group = groups[0]
        states = [i["LifecycleState"] for i in instances]
        latest = {r["Id"]: _latest(r) for r in metrics}
        host_times = [point[1] for q in ("gpu", "p95") if (point := latest.get(q)) is not None]

        def value(qid: str, scale: float = 1.0) -> float | None:
            point = latest.get(qid)
            return None if point is None else point[0] * scale

        host_types = tuple(
            HostTypeSignals(
                instance_type=instance_type,
                in_service=sum(1 for i in serving if i.get("InstanceType") == instance_type),
                completed_rps=value(f"type{n}done", 1 / _PERIOD_S),
                reporting_hosts=value(f"type{n}hosts"),
                latency_p95_s=value(f"type{n}p95"),
            )
            for n, instance_type in enumerate(types)
        )
        host_latencies = tuple(
            (instance_id, p95)
            for n, instance_id in enumerate(ids)
            if (p95 := value(f"host{n}p95")) is not None
        )
        players = latest.get("players")
        launch_failures, launch_failure_time = _failures(metrics)
        return TierSignals(
            now_s=now.timestamp(),
            visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            oldest_age_s=value("age") or 0.0,
            arrival_rps=value("sent", 1 / _PERIOD_S),  # NumberOfMessagesSent per 60 s datapoint
            gpu_util=value("gpu", 1 / 100),
            kv_cache_usage=value("kv", 1 / 100),
            latency_p95_s=value("p95"),
            metrics_time_s=min(host_times).timestamp() if host_times else None,
            in_service=len(serving),
            pending=sum(1 for s in states if s in _PENDING),
            draining=sum(1 for s in states if s in _DRAINING),
            desired=int(group["DesiredCapacity"]),
            completed_rps=value("done", 1 / _PERIOD_S),
            host_types=host_types,
            host_latencies=host_latencies,
            players_online=None if players is None else players[0],
            players_time_s=None if players is None else players[1].timestamp(),
            launch_failures=launch_failures,
            launch_failure_time_s=launch_failure_time,
        )
