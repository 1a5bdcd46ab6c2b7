"""The deployed controller inside the simulation: `FleetControllerFunction` and `FleetScaleDownFunction` of
template.yaml, deployed into moto by `LocalCloud` and invoked through the Lambda API on their schedules
(read from the template: every minute and every five minutes), reading moto's SQS, CloudWatch, Auto
Scaling and DynamoDB and acting on moto's Auto Scaling groups, exactly as deployed.

Before each tick the simulated world is written where the handler reads it:

- SQS: each tier queue's visible and in-flight counts. Seam: moto's counts are overridden for the tier
  queues (sending every simulated request through moto would be millions of calls a simulated day);
  GetQueueAttributes itself is moto's.
- CloudWatch: GpuUtilization, KvCacheUsage, RequestLatencyP95 and RequestsCompleted (AiGame/Fleet,
  dimension Tier), RequestsCompleted and RequestLatencyP95 per InstanceType, each in-service host's
  RequestLatencyP95 (InstanceId) and PlayersOnline, at the simulated datapoint's time, as the host agents
  and game services publish them (docs/host-contract.md), and the queue's NumberOfMessagesSent and
  ApproximateAgeOfOldestMessage (AWS/SQS), as SQS publishes them. Datapoints older than the controller's
  window are dropped from moto as the clock moves, so lookups stay small over a day-long trace.
- Auto Scaling: the group's instances in service (InService), booting (Pending:Wait) and draining
  (Terminating:Wait) and its desired capacity, mirrored onto moto's group (moto EC2 instances, their
  lifecycle states set directly: moto has no boot time), each in-service instance with the instance type
  of the simulated host it stands for.

The hosts the deployed controller replaces (slow ones, terminated in moto without lowering the desired
capacity) are handed back to the simulated group by name (`replacements`), which replaces them.

The clock the handlers read (`fleet.scheduled.utc_now`) is the simulated time. The answer for a tier is the
group's desired capacity after the tick's invocations. Which hosts leave on a scale-in is the simulated
group's choice (idle ones first), as the actuator also picks the least busy; the lifecycle events of the
instances the actuator terminates are not delivered, because the simulated world drains its hosts itself
(the drain workflow has its own functional tests). The hosts the simulated group lets go are terminated in
moto's EC2, so their private addresses return to the subnet.

Whatever fails on the way (the local stack's start, a handler's error, a moto exception while the world is
written) is raised as `DeployedControllerError`, its one-line message naming the function or tier and the
simulated minute.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from unittest import mock

import boto3

from fleet.config import METRICS_NAMESPACE
from fleet.policy import TierPolicy
from fleet_sim.model import Observation
from fleet_sim.simulator import FleetController, FleetWide

CONTROLLER: Final = "FleetControllerFunction"
SCALE_DOWN: Final = "FleetScaleDownFunction"
# Datapoints the controller can still ask for: its GetMetricData window is 6 minutes.
_KEEP_METRICS: Final = timedelta(minutes=10)
_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours)\)")


class DeployedControllerError(RuntimeError):
    """The deployed handler failed, moto failed under it, or the local stack is not what the simulation
    expects. The message is one line (the CLI prints it as is)."""


def schedule_period_s(template: Mapping[str, Any], function_logical_id: str) -> float:
    """The period of the EventBridge schedule rule that invokes a function (from the translated template)."""
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Events::Rule":
            continue
        props = resource["Properties"]
        targets = json.dumps(props.get("Targets", []))
        match = _RATE.fullmatch(str(props.get("ScheduleExpression", "")))
        if match and f'"{function_logical_id}"' in targets:
            count, unit = int(match.group(1)), match.group(2)
            return count * (3600.0 if unit.startswith("hour") else 60.0)
    raise DeployedControllerError(f"no rate() schedule rule targets {function_logical_id} in the template")


class DeployedController(FleetWide):
    """`FleetWide` policy whose decisions are the deployed handlers' (see the module docstring).

    `home` holds the local stack's files (embedded PostgreSQL, logs); default: a temporary folder removed
    at the end of the run. The handlers decide with the deployed policy (`fleet.policy.DEFAULT_POLICIES` and
    the template's bounds), not with the simulation's tier policies.
    """

    def __init__(self, home: Path | None = None, *, parameters: dict[str, str] | None = None) -> None:
        self._home = home
        self._parameters = dict(parameters or {})  # stack parameter overrides, e.g. FleetScaleInHoldSeconds
        self._stack = contextlib.ExitStack()
        self._clock = datetime(2000, 1, 1, tzinfo=UTC)
        self._epoch = self._clock
        self._queue_counts: dict[str, tuple[int, int]] = {}
        self._datapoints: dict[tuple[str, str, tuple[tuple[str, str], ...], datetime], Any] = {}
        self.invocations = 0
        # Per tier: which moto instance stands for which simulated host, and the hosts replaced this tick.
        self._host_ids: dict[str, dict[str, str]] = {}
        self._replaced: dict[str, list[str]] = {}
        self.audit: list[tuple[str, Any]] = []  # (function, its answer: one audit record per tier)

    # --- FleetWide ---

    def start(self, tiers: Mapping[str, TierPolicy]) -> FleetController:
        try:
            return self._start(tiers)
        except BaseException as exc:
            # The simulator stops only what started: release the half-started stack here.
            with contextlib.suppress(Exception):
                self._stack.close()
            if isinstance(exc, DeployedControllerError) or not isinstance(exc, Exception):
                raise
            raise DeployedControllerError(f"the local stack did not start: {_describe(exc)}") from exc

    def _start(self, tiers: Mapping[str, TierPolicy]) -> FleetController:
        from local_runtime.cloud import REGION, LocalCloud

        home = self._home or Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="fleet-sim-")))
        cloud = LocalCloud(
            home, embedding_provider="hash", mirror_s3=False, emf_metrics=False, parameters=self._parameters
        )
        self._stack.enter_context(cloud)
        self.cloud = cloud
        # The simulated world drains the hosts the actuator terminates; no drain workflow runs here.
        cloud.lifecycle.deliver = lambda event: None
        self._lambda = boto3.client("lambda", region_name=REGION)
        self._autoscaling_backend = _backend("autoscaling")
        self._ec2_backend = self._autoscaling_backend.ec2_backend
        self._cloudwatch_backend = _backend("cloudwatch")
        unknown = [t for t in tiers if f"{t.title()}AutoScalingGroup" not in cloud.physical_ids]
        if unknown:
            raise DeployedControllerError(f"the template has no Auto Scaling group for tiers {unknown}")
        self._groups = {t: cloud.physical_ids[f"{t.title()}AutoScalingGroup"] for t in tiers}
        # Queue names: the key of the count seam and the QueueName dimension of the AWS/SQS metrics.
        self._queues = {t: cloud.physical_ids[f"{t.title()}RequestQueue"].rsplit("/", 1)[-1] for t in tiers}
        self._controller_period_s = schedule_period_s(cloud.template.cfn, CONTROLLER)
        self._scale_down_period_s = schedule_period_s(cloud.template.cfn, SCALE_DOWN)
        # Simulated time 0 lies in the past (CloudWatch keeps recent datapoints), on a whole hour.
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self._epoch = start - timedelta(days=3)
        self._stack.enter_context(mock.patch("fleet.scheduled.utc_now", lambda: self._clock))
        self._stack.enter_context(self._queue_count_seam())
        return self

    def __call__(self, observations: Mapping[str, Observation]) -> Mapping[str, int]:
        return self._tick(observations)

    def replacements(self, tier: str) -> list[str]:
        """The simulated hosts the deployed controller replaced in the last tick, taken once."""
        return self._replaced.pop(tier, [])

    def stop(self) -> None:
        try:
            self._stack.close()
        except Exception as exc:
            raise DeployedControllerError(f"the local stack did not stop cleanly: {_describe(exc)}") from exc

    # --- one tick ---

    def _tick(self, observations: Mapping[str, Observation]) -> Mapping[str, int]:
        now_s = next(iter(observations.values())).now_s
        self._clock = self._epoch + timedelta(seconds=now_s)
        at = f"at simulated minute {now_s / 60:g}"
        for tier, obs in observations.items():
            with _Step(f"writing the simulated {tier} tier into moto {at}"):
                self._write_world(tier, obs)
        if _due(now_s, self._controller_period_s):
            self._invoke(CONTROLLER, at)
        if _due(now_s, self._scale_down_period_s):
            self._invoke(SCALE_DOWN, at)
        with _Step(f"reading the groups' desired capacity {at}"):
            return {tier: self._group(tier).desired_capacity for tier in observations}

    def _invoke(self, logical_id: str, at: str) -> None:
        event = {"source": "aws.events", "detail-type": "Scheduled Event", "time": self._clock.isoformat()}
        with _Step(f"invoking {logical_id} {at}"):
            response = self._lambda.invoke(
                FunctionName=self.cloud.functions[logical_id], Payload=json.dumps(event).encode()
            )
            payload = json.loads(response["Payload"].read())
        self.invocations += 1
        self.audit.append((logical_id, payload))
        for record in payload.get("tiers", []) if isinstance(payload, dict) else []:
            names = {instance: name for name, instance in self._host_ids.get(record.get("tier"), {}).items()}
            replaced = [names[i] for i in record.get("replaced", []) if i in names]
            if replaced:
                self._replaced.setdefault(record["tier"], []).extend(replaced)
        if "FunctionError" in response:
            error = payload if isinstance(payload, dict) else {}
            kind, message = error.get("errorType", response["FunctionError"]), error.get("errorMessage")
            detail = f"{kind}: {message}" if message else kind
            raise DeployedControllerError(_one_line(f"{logical_id} failed {at}: {detail}"))
        errors = [t for t in payload.get("tiers", []) if t.get("error")]
        if errors:
            detail = "; ".join(f"{t.get('tier', '?')}: {t['error']}" for t in errors)
            raise DeployedControllerError(_one_line(f"{logical_id} could not decide {at}: {detail}"))

    def _write_world(self, tier: str, obs: Observation) -> None:
        self._queue_counts[self._queues[tier]] = (obs.visible, obs.in_flight)
        self._mirror_group(tier, obs)
        host: list[tuple[str, float]] = []
        if obs.gpu_util is not None:
            host.append(("GpuUtilization", obs.gpu_util * 100.0))
        if obs.kv_cache_usage is not None:
            host.append(("KvCacheUsage", obs.kv_cache_usage * 100.0))
        if obs.latency_p95_s is not None:
            host.append(("RequestLatencyP95", obs.latency_p95_s))
        if obs.completed_rps is not None:
            host.append(("RequestsCompleted", obs.completed_rps * 60.0))
        data: list[Any] = []
        queue_dimension = [("QueueName", self._queues[tier])]
        tier_dimension = [("Tier", tier)]
        if obs.metrics_time_s is not None:
            at = self._epoch + timedelta(seconds=obs.metrics_time_s)
            data += [_datum(METRICS_NAMESPACE, name, value, tier_dimension, at) for name, value in host]
            for group in obs.host_types:
                typed = [*tier_dimension, ("InstanceType", group.instance_type)]
                if group.completed_rps is not None:
                    # As the hosts publish it: one datapoint per host and minute, so the SampleCount says
                    # how many hosts the minute's completions came from.
                    hosts = group.reporting_hosts or float(group.in_service)
                    done = group.completed_rps * 60.0
                    data.append(_aggregate(METRICS_NAMESPACE, "RequestsCompleted", done, hosts, typed, at))
                if group.latency_p95_s is not None:
                    data.append(
                        _datum(METRICS_NAMESPACE, "RequestLatencyP95", group.latency_p95_s, typed, at)
                    )
            ids = self._host_ids.get(tier, {})
            for name, p95 in obs.host_latencies:
                if name in ids:
                    per_host = [*tier_dimension, ("InstanceId", ids[name])]
                    data.append(_datum(METRICS_NAMESPACE, "RequestLatencyP95", p95, per_host, at))
        if obs.players_online is not None and obs.players_time_s is not None:
            seen = self._epoch + timedelta(seconds=obs.players_time_s)
            data.append(_datum(METRICS_NAMESPACE, "PlayersOnline", obs.players_online, tier_dimension, seen))
            if obs.arrival_rps is not None:
                sent = obs.arrival_rps * 60.0
                data.append(_datum("AWS/SQS", "NumberOfMessagesSent", sent, queue_dimension, at))
        data.append(
            _datum("AWS/SQS", "ApproximateAgeOfOldestMessage", obs.oldest_age_s, queue_dimension, self._clock)
        )
        # One datapoint per metric and minute, as 1-minute metrics are stored: a later observation of the
        # same minute replaces the earlier one (two in one bucket would double a Sum).
        for datum in data:
            dimensions = tuple((d.name, d.value) for d in datum.dimensions)
            self._datapoints[(datum.namespace, datum.name, dimensions, datum.timestamp)] = datum
        now = self._clock.replace(tzinfo=None)
        self._datapoints = {
            key: d for key, d in self._datapoints.items() if now - _KEEP_METRICS <= d.timestamp <= now
        }
        # AWS/ namespaces are written by AWS itself, not through PutMetricData: set as the service would.
        self._cloudwatch_backend.metric_data = list(self._datapoints.values())

    def _mirror_group(self, tier: str, obs: Observation) -> None:
        group = self._group(tier)
        wanted = obs.in_service + obs.pending + obs.draining
        have = len(group.instance_states)
        if have < wanted:
            group.replace_autoscaling_group_instances(wanted - have, group.get_propagated_tags())
        elif have > wanted:
            leaving = group.instance_states[wanted:]
            group.instance_states = group.instance_states[:wanted]
            # Terminated, not only detached: a running instance would keep its private address for good.
            self._ec2_backend.terminate_instances([state.instance.id for state in leaving])
        # The in-service instances stand for the simulated ready hosts, in order, with their types.
        types = [g.instance_type for g in obs.host_types for _ in range(g.in_service)]
        names = [name for name, _ in obs.host_latencies]
        self._host_ids[tier] = {
            name: group.instance_states[i].instance.id for i, name in enumerate(names[: obs.in_service])
        }
        for index, state in enumerate(group.instance_states):
            if index < len(types) and index < obs.in_service:
                # moto copies the type onto the group's instance record too; DescribeAutoScalingGroups shows that.
                state.instance.instance_type = state.instance_type = types[index]
            if index < obs.in_service:
                state.lifecycle_state = "InService"
            elif index < obs.in_service + obs.pending:
                state.lifecycle_state = "Pending:Wait"
            else:
                state.lifecycle_state = "Terminating:Wait"
        group.desired_capacity = obs.desired

    def _group(self, tier: str) -> Any:
        return self._autoscaling_backend.autoscaling_groups[self._groups[tier]]

    @contextlib.contextmanager
    def _queue_count_seam(self) -> Iterator[None]:
        from moto.sqs.models import Queue

        counts = self._queue_counts
        visible = Queue.approximate_number_of_messages
        in_flight = Queue.approximate_number_of_messages_not_visible

        def count(original: Any, index: int) -> property:
            def get(queue: Any) -> int:
                known = counts.get(queue.name)
                return original.fget(queue) if known is None else known[index]

            return property(get)

        with (
            mock.patch.object(Queue, "approximate_number_of_messages", count(visible, 0)),
            mock.patch.object(Queue, "approximate_number_of_messages_not_visible", count(in_flight, 1)),
        ):
            yield


class _Step:
    """A step of a tick: any failure inside it, moto's included, is raised as a DeployedControllerError
    naming the step.

    A class, not a @contextmanager generator: contextlib takes a RuntimeError caused by a StopIteration
    (moto's error when a subnet has no address left) for PEP 479's conversion and re-raises the bare
    StopIteration.
    """

    def __init__(self, doing: str) -> None:
        self.doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, DeployedControllerError):
            raise DeployedControllerError(f"{self.doing}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    """`Type: message` on one line (a bare `StopIteration` from moto has no message)."""
    message = _one_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _due(now_s: float, period_s: float) -> bool:
    """Whether a rate(period) schedule fires at simulated second now_s (schedules fire on whole periods)."""
    ticks = now_s / period_s
    return math.isclose(ticks, round(ticks), abs_tol=1e-9)


def _datum(namespace: str, name: str, value: float, dimensions: list[tuple[str, str]], at: datetime) -> Any:
    from moto.cloudwatch.models import MetricDatum

    return MetricDatum(
        namespace,
        name,
        value,
        [{"Name": k, "Value": v} for k, v in dimensions],
        at.replace(second=0, microsecond=0, tzinfo=None),  # the minute's datapoint; moto keeps naive UTC
    )


def _aggregate(
    namespace: str, name: str, total: float, samples: float, dimensions: list[tuple[str, str]], at: datetime
) -> Any:
    """`samples` hosts' datapoints of one minute summing to `total` (PutMetricData's StatisticValues)."""
    from moto.cloudwatch.models import MetricAggregatedDatum

    mean = total / samples if samples else 0.0
    return MetricAggregatedDatum(
        namespace,
        name,
        min_stat=mean,
        max_stat=mean,
        sample_count=samples,
        sum_stat=total,
        dimensions=[{"Name": k, "Value": v} for k, v in dimensions],
        timestamp=at.replace(second=0, microsecond=0, tzinfo=None),
    )


def _backend(service: str) -> Any:
    from moto.autoscaling.models import autoscaling_backends
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    from local_runtime.cloud import REGION

    backends: Any = {"autoscaling": autoscaling_backends, "cloudwatch": cloudwatch_backends}[service]
    return backends[DEFAULT_ACCOUNT_ID][REGION]
