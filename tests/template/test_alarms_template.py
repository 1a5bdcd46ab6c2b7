"""Every alarm notifies on ALARM and OK, names a runbook that exists and watches a metric something publishes;
the blind spots of issue 12 have alarms on AWS's own metrics; every asynchronous target has a dead-letter queue."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest

from local_runtime.paths import REPO_ROOT
from local_runtime.template import LocalTemplate, load_sam_template, translate
from tests.template.metric_sources import emitted_metrics

TIERS = ("Gold", "Silver", "Bronze")
DEPLOY_PARAMETERS = {"VpcId": "vpc-12345678", "PrivateSubnetIds": "subnet-1111aaaa,subnet-2222bbbb"}


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return load_sam_template()


@pytest.fixture(scope="module")
def deployed() -> LocalTemplate:
    return translate(DEPLOY_PARAMETERS)


def _alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def watched(props: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any], str]]:
    """(namespace, metric, dimensions, statistic) of an alarm: its metric, or each metric of its math."""
    if "MetricName" in props:
        dims = {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}
        yield (
            props["Namespace"],
            props["MetricName"],
            dims,
            props.get("Statistic") or props["ExtendedStatistic"],
        )
    for query in props.get("Metrics", []):
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            yield metric["Namespace"], metric["MetricName"], dims, query["MetricStat"]["Stat"]


def runbook_problems(resources: dict[str, Any]) -> list[str]:
    problems = []
    for logical_id, props in _alarms(resources).items():
        description = props["AlarmDescription"]
        if isinstance(description, dict):  # Fn::Sub text, or [text, variables]
            description = description["Fn::Sub"]
            description = description[0] if isinstance(description, list) else description
        match = re.search(r"Runbook (docs/runbooks/[\w.-]+\.md)", description)
        if not match:
            problems.append(f"{logical_id} names no runbook")
        elif not (REPO_ROOT / match[1]).is_file():
            problems.append(f"{logical_id}: {match[1]} does not exist")
        for key in ("AlarmActions", "OKActions"):
            if not props.get(key):
                problems.append(f"{logical_id} has no {key}")
        if props.get("AlarmActions") != props.get("OKActions"):
            problems.append(f"{logical_id} tells a different topic it is OK again")
    return problems


def test_every_alarm_names_an_existing_runbook_and_notifies_on_alarm_and_ok(sam: dict[str, Any]) -> None:
    assert runbook_problems(sam["Resources"]) == []


def test_an_alarm_without_ok_actions_or_runbook_is_caught(sam: dict[str, Any]) -> None:
    broken = copy.deepcopy(sam["Resources"])
    del broken["DocumentsQuarantinedAlarm"]["Properties"]["OKActions"]
    broken["DatabaseCpuAlarm"]["Properties"]["AlarmDescription"] = (
        "CPU high. Runbook docs/runbooks/nowhere.md"
    )
    assert runbook_problems(broken) == [
        "DocumentsQuarantinedAlarm has no OKActions",
        "DocumentsQuarantinedAlarm tells a different topic it is OK again",
        "DatabaseCpuAlarm: docs/runbooks/nowhere.md does not exist",
    ]


def test_every_alarm_watches_a_metric_the_code_or_aws_publishes(sam: dict[str, Any]) -> None:
    emitted = emitted_metrics(sam)
    problems = [
        f"{logical_id}: {problem}"
        for logical_id, props in _alarms(sam["Resources"]).items()
        for namespace, name, dims, _ in watched(props)
        if (problem := emitted.problem(namespace, name, {k: str(v) for k, v in dims.items()}))
    ]
    assert problems == []


def _watching(sam: dict[str, Any], namespace: str, name: str) -> list[tuple[str, dict[str, Any], str]]:
    return [
        (logical_id, dims, stat)
        for logical_id, props in _alarms(sam["Resources"]).items()
        for ns, metric, dims, stat in watched(props)
        if (ns, metric) == (namespace, name)
    ]


def _functions(sam: dict[str, Any]) -> set[str]:
    return {k for k, r in sam["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}


def test_lambda_errors_of_the_important_functions_and_throttles_of_every_function(
    sam: dict[str, Any],
) -> None:
    errors = {dims["FunctionName"]["Ref"] for _, dims, _ in _watching(sam, "AWS/Lambda", "Errors")}
    assert errors == {
        "KnowledgeApiFunction",
        "KnowledgeApiErasureFunction",
        "ProcessStoryEventsFunction",
        "FleetControllerFunction",
        "FleetScaleDownFunction",
        "SpotInterruptionFunction",
        "RotateDatabaseSecretFunction",
    }
    throttles = {dims["FunctionName"]["Ref"] for _, dims, _ in _watching(sam, "AWS/Lambda", "Throttles")}
    # The rotation function exists with the stack's own cluster only; its rare runs have the Errors alarm.
    assert throttles == _functions(sam) - {"RotateDatabaseSecretFunction"}


def test_the_api_error_alarm_counts_timeouts_and_init_crashes(sam: dict[str, Any]) -> None:
    # API Gateway's 5XXError includes the 502/504 of a function that crashed or timed out, which the
    # handler's own ApiServerErrors never counts.
    alarm = sam["Resources"]["KnowledgeApiErrorRateAlarm"]["Properties"]
    metrics = {name for _, name, _, _ in watched(alarm)}
    assert metrics == {"5XXError", "Count"}
    assert alarm["Threshold"] == 5 and alarm["AlarmActions"] == [{"Ref": "AlarmTopicCritical"}]
    latency = _watching(sam, "AWS/ApiGateway", "Latency")
    assert any(
        stat == "p99" and sam["Resources"][a]["Properties"]["Threshold"] == 1000 for a, _, stat in latency
    )


def _state_machine(sam: dict[str, Any], arn: dict[str, Any]) -> str:
    """The state machine an alarm's StateMachineArn names: by Ref, or by the ARN of its fixed Name (which lets a
    function's deployment group watch the alarm without a dependency cycle)."""
    if "Ref" in arn:
        return str(arn["Ref"])
    prefix = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:"
    assert arn["Fn::Sub"].startswith(prefix), arn
    [machine] = [
        k
        for k, r in sam["Resources"].items()
        if r["Type"] == "AWS::Serverless::StateMachine"
        and r["Properties"].get("Name") == {"Fn::Sub": arn["Fn::Sub"].removeprefix(prefix)}
    ]
    return machine


def test_drain_launch_and_ingestion_workflows_alarm_on_failures_and_timeouts(sam: dict[str, Any]) -> None:
    for metric in ("ExecutionsFailed", "ExecutionsTimedOut"):
        machines = {
            _state_machine(sam, dims["StateMachineArn"])
            for _, dims, _ in _watching(sam, "AWS/States", metric)
        }
        assert {"DrainHostStateMachine", "LaunchHostStateMachine", "IngestionStateMachine"} <= machines, (
            metric
        )


def test_aurora_alarms_on_connections_cpu_memory_and_capacity(sam: dict[str, Any]) -> None:
    for metric in ("DatabaseConnections", "CPUUtilization", "FreeableMemory", "ACUUtilization"):
        [(logical_id, dims, _)] = _watching(sam, "AWS/RDS", metric)
        assert dims == {"DBClusterIdentifier": {"Ref": "DatabaseCluster"}}
        assert sam["Resources"][logical_id]["Condition"] == "CreateDatabase"


def test_each_tier_alarms_on_no_ready_hosts_and_gpu_memory(sam: dict[str, Any]) -> None:
    in_service = {
        dims["AutoScalingGroupName"]["Ref"]
        for _, dims, _ in _watching(sam, "AWS/AutoScaling", "GroupInServiceInstances")
    }
    assert in_service == {f"{tier}AutoScalingGroup" for tier in TIERS}
    for tier in TIERS:
        group = sam["Resources"][f"{tier}AutoScalingGroup"]["Properties"]
        assert "GroupInServiceInstances" in group["MetricsCollection"][0]["Metrics"]
        gpu = sam["Resources"][f"{tier}GpuMemoryAlarm"]["Properties"]
        assert (gpu["MetricName"], gpu["Threshold"], gpu["ComparisonOperator"]) == (
            "GpuMemoryUtilization",
            90,
            "GreaterThanThreshold",
        )


def _async_targets(resources: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Targets of event-pattern rules: EventBridge delivers them asynchronously. Schedules are left out: a
    missed tick is redone by the next one."""
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::Events::Rule" and "EventPattern" in resource["Properties"]:
            for target in resource["Properties"]["Targets"]:
                yield logical_id, target


def dead_letter_problems(resources: dict[str, Any]) -> list[str]:
    problems = []
    alarmed = {
        dims["QueueName"]["Fn::GetAtt"][0]
        for props in _alarms(resources).values()
        for ns, name, dims, _ in watched(props)
        if (ns, name) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
        and "Fn::GetAtt" in dims["QueueName"]
    }
    allowed: dict[str, list[Any]] = {}
    for resource in resources.values():
        if resource["Type"] == "AWS::SQS::QueuePolicy":
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                if statement["Principal"] == {"Service": "events.amazonaws.com"}:
                    sources = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
                    queue = statement["Resource"]["Fn::GetAtt"][0]
                    allowed.setdefault(queue, []).extend(sources if isinstance(sources, list) else [sources])
    for rule, target in _async_targets(resources):
        arn = target.get("DeadLetterConfig", {}).get("Arn")
        if arn is None:
            problems.append(f"{rule} -> {target['Id']} has no dead-letter queue")
            continue
        queue = arn["Fn::GetAtt"][0]
        if {"Fn::GetAtt": [rule, "Arn"]} not in allowed.get(queue, []):
            problems.append(f"{queue} does not let {rule} send its dead letters")
        if queue not in alarmed:
            problems.append(f"no alarm watches {queue}")
        function = target["Arn"].get("Fn::GetAtt", [""])[0]
        alias = resources.get(target["Arn"].get("Ref", ""), {})
        if alias.get("Type") == "AWS::Lambda::Alias":  # a function's live alias: the function it runs
            function = alias["Properties"]["FunctionName"]["Ref"]
        # Lambda runs the event asynchronously: its own failures after two retries need a place too.
        invoked = resources.get(function, {})
        if invoked.get("Type") == "AWS::Lambda::Function" and "DeadLetterConfig" not in invoked["Properties"]:
            problems.append(f"{function} (invoked asynchronously by {rule}) has no dead-letter queue")
    return problems


def test_every_asynchronous_target_has_a_dead_letter_queue_with_an_alarm(deployed: LocalTemplate) -> None:
    resources = deployed.full["Resources"]
    rules = {rule for rule, _ in _async_targets(resources)}
    assert {
        "IngestionStateMachineDocumentChanged",
        "DrainHostStateMachineTerminateLifecycleAction",
        "LaunchHostStateMachineLaunchLifecycleAction",
        "SpotInterruptionFunctionSpotInterruptionWarning",
    } <= rules
    assert dead_letter_problems(resources) == []


def test_a_target_without_a_dead_letter_queue_is_caught(deployed: LocalTemplate) -> None:
    resources = copy.deepcopy(deployed.full["Resources"])
    for target in resources["DrainHostStateMachineTerminateLifecycleAction"]["Properties"]["Targets"]:
        del target["DeadLetterConfig"]
    del resources["SpotInterruptionFunction"]["Properties"]["DeadLetterConfig"]
    problems = dead_letter_problems(resources)
    assert any(p.startswith("DrainHostStateMachineTerminateLifecycleAction -> ") for p in problems)
    assert any(p.startswith("SpotInterruptionFunction (invoked asynchronously") for p in problems)
