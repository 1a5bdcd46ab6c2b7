"""Reads one tier's signals: SQS queue depth, CloudWatch host and queue metrics, Auto Scaling instances.

The host agent publishes GpuUtilization and KvCacheUsage (percent) and RequestLatencyP95 (seconds) per
tier to AiGame/Fleet (P95 is published as its own metric: docs/host-contract.md), so the controller
reads plain Average/Maximum statistics.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fleet.config import METRICS_NAMESPACE, TierTarget
from fleet.errors import SignalsUnavailableError
from fleet.policy import TierSignals

_PENDING = {"Pending", "Pending:Wait", "Pending:Proceed", "Warmed:Pending"}
_DRAINING = {"Terminating", "Terminating:Wait", "Terminating:Proceed"}
_WINDOW = timedelta(minutes=6)


def _queries(tier: TierTarget) -> list[dict[str, Any]]:
    def host_metric(qid: str, name: str, stat: str) -> dict[str, Any]:
        return {
            "Id": qid,
            "MetricStat": {
                "Metric": {
                    "Namespace": METRICS_NAMESPACE,
                    "MetricName": name,
                    "Dimensions": [{"Name": "Tier", "Value": tier.name}],
                },
                "Period": 60,
                "Stat": stat,
            },
        }

    queue_name = tier.queue_url.rsplit("/", 1)[-1]

    def queue_metric(qid: str, name: str, stat: str) -> dict[str, Any]:
        return {
            "Id": qid,
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/SQS",
                    "MetricName": name,
                    "Dimensions": [{"Name": "QueueName", "Value": queue_name}],
                },
                "Period": 60,
                "Stat": stat,
            },
        }

    return [
        host_metric("gpu", "GpuUtilization", "Average"),
        host_metric("kv", "KvCacheUsage", "Average"),
        host_metric("p95", "RequestLatencyP95", "Maximum"),
        queue_metric("age", "ApproximateAgeOfOldestMessage", "Maximum"),
        queue_metric("sent", "NumberOfMessagesSent", "Sum"),
    ]


def _latest(result: dict[str, Any]) -> tuple[float, datetime] | None:
    points = sorted(zip(result.get("Timestamps", []), result.get("Values", []), strict=False), reverse=True)
    return (float(points[0][1]), points[0][0]) if points else None


class TierSignalReader:
    def __init__(self, sqs: Any, cloudwatch: Any, autoscaling: Any) -> None:
        self._sqs, self._cloudwatch, self._autoscaling = sqs, cloudwatch, autoscaling

    def read(self, tier: TierTarget, now: datetime) -> TierSignals:
        try:
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=tier.queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            metrics = self._cloudwatch.get_metric_data(
                MetricDataQueries=_queries(tier),
                StartTime=now - _WINDOW,
                # Past "now": the current, still-filling minute is the freshest view there is.
                EndTime=now + timedelta(minutes=1),
                ScanBy="TimestampDescending",
            )["MetricDataResults"]
            groups = self._autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[tier.asg_name])[
                "AutoScalingGroups"
            ]
        except (ClientError, BotoCoreError) as exc:
            raise SignalsUnavailableError(f"{tier.name}: {exc}") from exc
        if not groups:
            raise SignalsUnavailableError(f"{tier.name}: Auto Scaling group {tier.asg_name} not found")
        group = groups[0]
        states = [i["LifecycleState"] for i in group.get("Instances", [])]
        latest = {r["Id"]: _latest(r) for r in metrics}
        host_times = [point[1] for q in ("gpu", "p95") if (point := latest.get(q)) is not None]

        def value(qid: str, scale: float = 1.0) -> float | None:
            point = latest.get(qid)
            return None if point is None else point[0] * scale

        sent, age = value("sent", 1 / 60), value("age")

        return TierSignals(
            now_s=now.timestamp(),
            visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            oldest_age_s=age or 0.0,
            arrival_rps=sent,  # NumberOfMessagesSent per 60 s datapoint
            gpu_util=value("gpu", 1 / 100),
            kv_cache_usage=value("kv", 1 / 100),
            latency_p95_s=value("p95"),
            metrics_time_s=min(host_times).timestamp() if host_times else None,
            in_service=sum(1 for s in states if s == "InService"),
            pending=sum(1 for s in states if s in _PENDING),
            draining=sum(1 for s in states if s in _DRAINING),
            desired=int(group["DesiredCapacity"]),
        )
