"""The fleet controller, scale-down check and Spot handler, deployed from template.yaml into moto and
invoked through Lambda, against real SQS queues, CloudWatch metrics, Auto Scaling groups and DynamoDB."""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from local_runtime.cloud import REGION, LocalCloud


class Fleet:
    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.autoscaling = boto3.client("autoscaling", region_name=REGION)
        self.lambdas = boto3.client("lambda", region_name=REGION)
        self.dynamodb = boto3.client("dynamodb", region_name=REGION)
        self.groups = {
            t: cloud.physical_ids[f"{t.title()}AutoScalingGroup"] for t in ("gold", "silver", "bronze")
        }
        self.queues = {
            t: cloud.physical_ids[f"{t.title()}RequestQueue"] for t in ("gold", "silver", "bronze")
        }

    def invoke(self, logical_id: str, event: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.lambdas.invoke(
            FunctionName=self.cloud.functions[logical_id], Payload=json.dumps(event or {}).encode()
        )
        payload = json.loads(response["Payload"].read())
        assert "FunctionError" not in response, payload
        return dict(payload)

    def enqueue(self, tier: str, count: int) -> None:
        for start in range(0, count, 10):
            entries: list[Any] = [
                {"Id": str(i), "MessageBody": "x"} for i in range(start, min(start + 10, count))
            ]
            self.cloud.sqs.send_message_batch(QueueUrl=self.queues[tier], Entries=entries)

    def host_metrics(
        self, tier: str, *, gpu_percent: float, p95_s: float, age: timedelta = timedelta()
    ) -> None:
        at = datetime.now(UTC) - age
        self.cloud.cloudwatch.put_metric_data(
            Namespace="AiGame/Fleet",
            MetricData=[
                {
                    "MetricName": name,
                    "Dimensions": [{"Name": "Tier", "Value": tier}],
                    "Value": value,
                    "Timestamp": at,
                }
                for name, value in (
                    ("GpuUtilization", gpu_percent),
                    ("KvCacheUsage", 20.0),
                    ("RequestLatencyP95", p95_s),
                )
            ],
        )

    def desired(self, tier: str) -> int:
        group = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.groups[tier]])
        return int(group["AutoScalingGroups"][0]["DesiredCapacity"])

    def state(self, tier: str) -> dict[str, Any]:
        table = self.cloud.physical_ids["FleetControllerStateTable"]
        return dict(self.dynamodb.get_item(TableName=table, Key={"tier": {"S": tier}}).get("Item", {}))


@pytest.fixture
def fleet(make_cloud: Any) -> Fleet:
    return Fleet(make_cloud(embedding_provider="hash").cloud)


def _idle_for_an_hour(fleet: Fleet, *, hosts: int, metrics_age: timedelta = timedelta()) -> None:
    """Gold at `hosts` hosts, 5% GPU, and the controller's memory saying demand has been low for an hour."""
    fleet.autoscaling.set_desired_capacity(AutoScalingGroupName=fleet.groups["gold"], DesiredCapacity=hosts)
    fleet.host_metrics("gold", gpu_percent=5.0, p95_s=0.1, age=metrics_age)
    long_ago = str((datetime.now(UTC) - timedelta(hours=1)).timestamp())
    fleet.dynamodb.put_item(
        TableName=fleet.cloud.physical_ids["FleetControllerStateTable"],
        Item={"tier": {"S": "gold"}, "low_demand_since_s": {"N": long_ago}},
    )


def _tier(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in result["tiers"] if t["tier"] == name)


def test_a_backlog_scales_the_tier_out_within_one_tick(fleet: Fleet) -> None:
    for tier in ("gold", "silver", "bronze"):
        fleet.host_metrics(tier, gpu_percent=50.0, p95_s=0.4)
    fleet.enqueue("gold", 2500)

    result = fleet.invoke("FleetControllerFunction")

    gold = _tier(result, "gold")
    assert gold["action"] == "scale_out" and gold["applied"] == "scale_out"
    assert (
        gold["signals"]["visible"] == 2500 and gold["desired"] == 2
    )  # 2500 / (8 req/s x 180 s drain window) -> 2 hosts
    assert fleet.desired("gold") == 2
    assert any("queue: backlog 2500" in r for r in gold["reasons"])
    assert _tier(result, "silver")["action"] == "hold" and fleet.desired("silver") == 1
    assert "last_scale_out_s" in fleet.state("gold")
    desired = fleet.cloud.cloudwatch.get_metric_statistics(
        Namespace="AiGame/Fleet",
        MetricName="DesiredCapacity",
        Dimensions=[{"Name": "Tier", "Value": "gold"}],
        StartTime=datetime.now(UTC) - timedelta(minutes=5),
        EndTime=datetime.now(UTC) + timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert max(p["Maximum"] for p in desired) == 2


def test_dry_run_decides_and_records_without_acting(make_cloud: Any) -> None:
    fleet = Fleet(make_cloud(embedding_provider="hash", environment_overrides={"DRY_RUN": "true"}).cloud)
    fleet.enqueue("gold", 2500)

    gold = _tier(fleet.invoke("FleetControllerFunction"), "gold")

    assert gold["action"] == "scale_out" and gold["applied"] == "dry_run" and gold["dry_run"]
    assert fleet.desired("gold") == 1
    assert fleet.state("gold") == {}


def test_stale_host_metrics_never_allow_scale_in(fleet: Fleet) -> None:
    _idle_for_an_hour(fleet, hosts=5, metrics_age=timedelta(minutes=5))

    gold = _tier(fleet.invoke("FleetScaleDownFunction"), "gold")

    assert gold["action"] == "hold" and fleet.desired("gold") == 5
    assert any("no scale-in" in r for r in gold["reasons"])


def test_idle_tiers_scale_in_only_through_the_scale_down_check(fleet: Fleet) -> None:
    _idle_for_an_hour(fleet, hosts=5)

    controller = _tier(fleet.invoke("FleetControllerFunction"), "gold")
    assert controller["action"] == "scale_in", controller["reasons"]
    assert controller["applied"] == "none"
    assert fleet.desired("gold") == 5

    scale_down = _tier(fleet.invoke("FleetScaleDownFunction"), "gold")
    # Idle hosts are a large surplus: one step to the floor (the minimum of 1; nothing is planned).
    assert scale_down["applied"] == "scale_in" and len(scale_down["terminated"]) == 4
    assert fleet.desired("gold") == 1
    # The chosen hosts leave through their terminate hook: they wait there while the drain workflow runs.
    leaving = fleet.autoscaling.describe_auto_scaling_instances(InstanceIds=scale_down["terminated"])[
        "AutoScalingInstances"
    ]
    assert {i["LifecycleState"] for i in leaving} == {"Terminating:Wait"}


def test_waiting_messages_block_scale_in(fleet: Fleet) -> None:
    _idle_for_an_hour(fleet, hosts=5)
    fleet.enqueue("gold", 1)

    gold = _tier(fleet.invoke("FleetScaleDownFunction"), "gold")

    assert gold["action"] == "hold" and fleet.desired("gold") == 5
    assert any("1 messages waiting" in r for r in gold["reasons"])


def test_a_spot_warning_replaces_the_host_without_shrinking_the_tier(fleet: Fleet) -> None:
    group = fleet.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[fleet.groups["silver"]])
    instance_id = group["AutoScalingGroups"][0]["Instances"][0]["InstanceId"]
    event = {
        "source": "aws.ec2",
        "detail-type": "EC2 Spot Instance Interruption Warning",
        "detail": {"instance-id": instance_id, "instance-action": "terminate"},
    }

    result = fleet.invoke("SpotInterruptionFunction", event)

    assert result["action"] == "replacing" and result["group"] == fleet.groups["silver"]
    assert fleet.desired("silver") == 1
    after = fleet.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[fleet.groups["silver"]])
    states = {i["InstanceId"]: i["LifecycleState"] for i in after["AutoScalingGroups"][0]["Instances"]}
    # The replacement is already launched while the interrupted host drains on its hook.
    assert states.pop(instance_id) == "Terminating:Wait"
    assert list(states.values()) == ["InService"]
    assert fleet.invoke("SpotInterruptionFunction", event)["action"] == "ignored"  # already leaving
    assert (
        fleet.invoke("SpotInterruptionFunction", {"detail": {"instance-id": "i-0000000000000000"}})["action"]
        == "ignored"
    )


def test_each_tier_has_a_dashboard_on_its_own_queue(fleet: Fleet) -> None:
    for tier in ("gold", "silver", "bronze"):
        body = fleet.cloud.cloudwatch.get_dashboard(DashboardName=f"kb-local-fleet-{tier}")["DashboardBody"]
        widgets = json.loads(body)["widgets"]
        metrics = json.dumps([w["properties"].get("metrics", []) for w in widgets])  # log widgets have none
        assert fleet.queues[tier].rsplit("/", 1)[-1] in metrics
        assert f'"Tier", "{tier}"' in metrics


# ---------------------------------------------------------------- drain and launch workflows


def _register_host(fleet: Fleet, instance_id: str, **attributes: Any) -> None:
    item = {"instance_id": {"S": instance_id}, "tier": {"S": "gold"}}
    for name, value in attributes.items():
        item[name] = {"N": str(value)} if isinstance(value, int) else {"S": str(value)}
    fleet.dynamodb.put_item(TableName=fleet.cloud.physical_ids["FleetHostsTable"], Item=item)


def _host(fleet: Fleet, instance_id: str) -> dict[str, Any]:
    table = fleet.cloud.physical_ids["FleetHostsTable"]
    return dict(
        fleet.dynamodb.get_item(TableName=table, Key={"instance_id": {"S": instance_id}}).get("Item", {})
    )


def _gold_instance(fleet: Fleet) -> str:
    group = fleet.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[fleet.groups["gold"]])
    return str(group["AutoScalingGroups"][0]["Instances"][0]["InstanceId"])


def test_a_leaving_host_is_drained_before_its_lifecycle_action_completes(make_cloud: Any) -> None:
    fleet = Fleet(make_cloud(embedding_provider="hash", wait_scale=0.01).cloud)
    fleet.autoscaling.set_desired_capacity(AutoScalingGroupName=fleet.groups["gold"], DesiredCapacity=2)
    instance_id = _gold_instance(fleet)
    _register_host(fleet, instance_id, state="ready", in_flight=2)

    with fleet.cloud.capture_executions() as started:
        fleet.autoscaling.terminate_instance_in_auto_scaling_group(
            InstanceId=instance_id, ShouldDecrementDesiredCapacity=True
        )
    (instance,) = fleet.autoscaling.describe_auto_scaling_instances(InstanceIds=[instance_id])[
        "AutoScalingInstances"
    ]
    assert instance["LifecycleState"] == "Terminating:Wait" and len(started) == 1

    for _ in range(200):  # the host sees the drain request on its next poll
        if _host(fleet, instance_id).get("drain_requested", {}).get("BOOL"):
            break
        threading.Event().wait(0.05)
    assert _host(fleet, instance_id)["drain_requested"] == {"BOOL": True}
    assert fleet.cloud.lifecycle.completed == []  # still draining: two requests in flight
    _register_host(fleet, instance_id, state="drained", in_flight=0)

    description = fleet.cloud.wait(started[0], timeout_s=60)

    assert description["status"] == "SUCCEEDED", description.get("cause")
    assert json.loads(description["output"])["status"] == "drained"
    assert fleet.cloud.lifecycle.completed == [
        (instance_id, "autoscaling:EC2_INSTANCE_TERMINATING", "CONTINUE")
    ]
    assert instance_id not in [
        i["InstanceId"]
        for i in fleet.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[fleet.groups["gold"]])[
            "AutoScalingGroups"
        ][0]["Instances"]
    ]
    assert fleet.desired("gold") == 1


def test_a_host_that_never_drains_leaves_after_the_timeout(make_cloud: Any) -> None:
    fleet = Fleet(make_cloud(embedding_provider="hash", wait_scale=0.001).cloud)
    instance_id = _gold_instance(fleet)
    _register_host(fleet, instance_id, state="ready", in_flight=1)

    with fleet.cloud.capture_executions() as started:
        fleet.autoscaling.terminate_instance_in_auto_scaling_group(
            InstanceId=instance_id, ShouldDecrementDesiredCapacity=False
        )
    description = fleet.cloud.wait(started[0], timeout_s=120)

    assert json.loads(description["output"])["checks"] == 90
    assert fleet.cloud.lifecycle.completed == [
        (instance_id, "autoscaling:EC2_INSTANCE_TERMINATING", "CONTINUE")
    ]


@pytest.mark.parametrize(("host_state", "result"), [("ready", "CONTINUE"), ("booting", "ABANDON")])
def test_a_new_host_is_admitted_when_ready_or_abandoned(
    make_cloud: Any, host_state: str, result: str
) -> None:
    fleet = Fleet(make_cloud(embedding_provider="hash", wait_scale=0.001).cloud)
    instance_id = _gold_instance(fleet)
    _register_host(fleet, instance_id, state=host_state, in_flight=0)

    with fleet.cloud.capture_executions() as started:
        fleet.cloud.deliver_event(fleet.cloud.lifecycle.launch_event(fleet.groups["gold"], instance_id))
    description = fleet.cloud.wait(started[0], timeout_s=120)

    assert description["status"] == "SUCCEEDED", description.get("cause")
    assert fleet.cloud.lifecycle.completed == [(instance_id, "autoscaling:EC2_INSTANCE_LAUNCHING", result)]


def _gold_settings(fleet: Fleet) -> Any:
    from fleet.config import FleetSettings, TierTarget

    ids = fleet.cloud.physical_ids
    gold = TierTarget(
        name="gold", queue_url=fleet.queues["gold"], asg_name=fleet.groups["gold"], min_hosts=1, max_hosts=50
    )
    return FleetSettings(
        tiers=(gold,),
        state_table=ids["FleetControllerStateTable"],
        hosts_table=ids["FleetHostsTable"],
        dry_run=False,
    )


def test_state_writes_are_conditional_so_the_two_schedules_lose_no_update(fleet: Fleet) -> None:
    from fleet.adapters.actuator import AutoScalingActuator
    from fleet.adapters.signals import TierSignalReader
    from fleet.adapters.state_store import TierStateStore
    from fleet.controller import run_tick
    from fleet.errors import StateConflictError
    from fleet.policy import TierState

    settings = _gold_settings(fleet)
    store = TierStateStore(fleet.dynamodb, settings.state_table)
    read = store.load("gold")
    store.save("gold", read, {"action": "hold"})
    with pytest.raises(StateConflictError):
        store.save("gold", read, {"action": "hold"})  # written from a stale read: refused
    assert store.load("gold").version == 1

    class RacingStore:
        """The scale-down check writes between this tick's read and its write, once."""

        def __init__(self) -> None:
            self.raced = False

        def load(self, tier: str) -> TierState:
            return store.load(tier)

        def save(self, tier: str, state: TierState, audit: dict[str, Any]) -> None:
            if not self.raced:
                self.raced = True
                other = store.load(tier)
                store.save(tier, dataclasses.replace(other, last_scale_in_s=123.0), {"action": "scale_in"})
            store.save(tier, state, audit)

    fleet.host_metrics("gold", gpu_percent=50.0, p95_s=0.4)
    fleet.enqueue("gold", 2500)
    reader = TierSignalReader(fleet.cloud.sqs, fleet.cloud.cloudwatch, fleet.autoscaling)
    actuator = AutoScalingActuator(fleet.autoscaling, fleet.dynamodb, settings.hosts_table)
    racing = RacingStore()
    [result] = run_tick(
        settings,
        mode="scale_out",
        now=datetime.now(UTC),
        reader=reader,
        store=racing,
        actuator=actuator,
        report=lambda _: None,
    )
    assert racing.raced and result.applied == "scale_out" and fleet.desired("gold") == 2
    stored = store.load("gold")
    # The tick decided again from what the other one stored: its scale-in time survives, and so does ours.
    assert stored.version == 3 and stored.last_scale_in_s == 123.0 and stored.last_scale_out_s is not None


def test_the_tier_p95_is_the_median_over_hosts_not_the_slowest(fleet: Fleet) -> None:
    from fleet.adapters.signals import TierSignalReader

    at = datetime.now(UTC)
    fleet.cloud.cloudwatch.put_metric_data(
        Namespace="AiGame/Fleet",
        MetricData=[
            {
                "MetricName": "RequestLatencyP95",
                "Dimensions": [{"Name": "Tier", "Value": "gold"}],
                "Value": p95,
                "Timestamp": at,
            }
            for p95 in (0.4, 0.5, 0.45, 3.0, 0.55)  # one slow host among five
        ],
    )
    reader = TierSignalReader(fleet.cloud.sqs, fleet.cloud.cloudwatch, fleet.autoscaling)
    signals = reader.read(_gold_settings(fleet).tiers[0], at)
    assert signals.latency_p95_s == 0.5


def test_a_tier_whose_launches_keep_failing_adds_no_hosts(fleet: Fleet) -> None:
    fleet.host_metrics("gold", gpu_percent=50.0, p95_s=0.4)
    fleet.enqueue("gold", 2500)  # would ask for a second host
    fleet.cloud.cloudwatch.put_metric_data(
        Namespace="AiGame/Fleet",
        MetricData=[
            {
                "MetricName": "LaunchFailures",
                "Dimensions": [{"Name": "Tier", "Value": "gold"}],
                "Value": 2.0,
                "Unit": "Count",
                "Timestamp": datetime.now(UTC) - timedelta(minutes=1),
            }
        ],
    )

    gold = _tier(fleet.invoke("FleetControllerFunction"), "gold")

    assert gold["launch_backoff"] and gold["signals"]["launch_failures"] == 2
    assert gold["desired"] == 1 and fleet.desired("gold") == 1
    assert any(r.startswith("launch backoff: 2 launches abandoned") for r in gold["reasons"])
    state = fleet.state("gold")
    assert float(state["launch_backoff_s"]["N"]) == 300.0 and "launch_backoff_until_s" in state


def _launch_failures(fleet: Fleet, tier: str) -> float:
    return fleet.cloud.metric_sum("AiGame/Fleet", "LaunchFailures", {"Tier": tier})


def test_a_host_whose_bootstrap_fails_is_abandoned_at_the_next_poll_with_its_reason(
    make_cloud: Any, tmp_path: Any
) -> None:
    from host_agent.cli import main as host_agent

    fleet = Fleet(make_cloud(embedding_provider="hash", wait_scale=0.001).cloud)
    instance_id = _gold_instance(fleet)
    gold = fleet.cloud.physical_ids
    # The host.env the launch template writes, with the instance id IMDSv2 would give.
    env = tmp_path / "host.env"
    env.write_text(
        f"FLEET_TIER=gold\nAWS_REGION={REGION}\nREQUEST_QUEUE_URL={gold['GoldRequestQueue']}\n"
        f"DEAD_LETTER_QUEUE_URL={gold['GoldRequestDeadLetterQueue']}\n"
        f"RESULTS_TOPIC_ARN={gold['InferenceResultsTopic']}\nHOSTS_TABLE={gold['FleetHostsTable']}\n"
        f"MODEL_ID=Qwen/Qwen2.5-3B-Instruct-AWQ\nINSTANCE_ID={instance_id}\n"
    )
    reason = "bootstrap failed while checking the image: image holds vLLM 0.10.2, the stack asks for 0.11.0"
    # What bootstrap.sh's failure handler runs on the host.
    assert host_agent(["--env-file", str(env), "boot-failed", "--reason", reason]) == 0

    with fleet.cloud.capture_executions() as started:
        fleet.cloud.deliver_event(fleet.cloud.lifecycle.launch_event(fleet.groups["gold"], instance_id))
    description = fleet.cloud.wait(started[0], timeout_s=120)

    assert description["status"] == "SUCCEEDED", description.get("cause")
    assert json.loads(description["output"]) == {
        "instance_id": instance_id,
        "status": "abandoned",
        "checks": 0,  # the first poll, not the 12-minute deadline
        "tier": "gold",
        "cause": "bootstrap_failed",
        "reason": reason,
    }
    assert fleet.cloud.lifecycle.completed == [(instance_id, "autoscaling:EC2_INSTANCE_LAUNCHING", "ABANDON")]
    item = _host(fleet, instance_id)
    assert item["state"] == {"S": "failed"} and item["failure_reason"] == {"S": reason}
    assert item["launch_result"] == {"S": "abandoned"} and item["abandon_reason"] == {"S": reason}
    assert item["abandon_cause"] == {"S": "bootstrap_failed"} and "abandoned_at" in item
    assert _launch_failures(fleet, "gold") == 1 and _launch_failures(fleet, "silver") == 0


@pytest.mark.parametrize(
    ("registered", "reason"),
    [
        (True, "not ready after 12 minutes (last state booting)"),
        (False, "not ready after 12 minutes: the host agent never registered (see the console output)"),
    ],
)
def test_a_host_never_ready_is_abandoned_after_the_deadline_and_counted(
    make_cloud: Any, registered: bool, reason: str
) -> None:
    fleet = Fleet(make_cloud(embedding_provider="hash", wait_scale=0.001).cloud)
    instance_id = _gold_instance(fleet)
    if registered:
        _register_host(fleet, instance_id, state="booting", in_flight=0)

    with fleet.cloud.capture_executions() as started:
        fleet.cloud.deliver_event(fleet.cloud.lifecycle.launch_event(fleet.groups["gold"], instance_id))
    output = json.loads(fleet.cloud.wait(started[0], timeout_s=120)["output"])

    assert output["status"] == "abandoned" and output["cause"] == "not_ready" and output["checks"] == 36
    assert output["reason"] == reason
    assert fleet.cloud.lifecycle.completed == [(instance_id, "autoscaling:EC2_INSTANCE_LAUNCHING", "ABANDON")]
    # Only a host that wrote an item gets the cause on it; the workflow creates none (it would never expire).
    assert ("abandon_reason" in _host(fleet, instance_id)) is registered
    assert _launch_failures(fleet, "gold") == 1


def test_a_host_whose_bootstrap_failed_leaves_through_the_drain_hook_at_once(make_cloud: Any) -> None:
    fleet = Fleet(make_cloud(embedding_provider="hash", wait_scale=0.01).cloud)
    instance_id = _gold_instance(fleet)
    _register_host(fleet, instance_id, state="failed", in_flight=0, failure_reason="no image manifest")

    with fleet.cloud.capture_executions() as started:
        fleet.autoscaling.terminate_instance_in_auto_scaling_group(
            InstanceId=instance_id, ShouldDecrementDesiredCapacity=False
        )
    output = json.loads(fleet.cloud.wait(started[0], timeout_s=60)["output"])

    # No agent runs there to write "drained": waiting would bill the GPU for the drain's 15 minutes.
    assert output["status"] == "drained" and output["checks"] == 0
    assert fleet.cloud.lifecycle.completed == [
        (instance_id, "autoscaling:EC2_INSTANCE_TERMINATING", "CONTINUE")
    ]
