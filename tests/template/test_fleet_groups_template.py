"""A deploy never resizes the GPU fleet, and a new image or launch template reaches the running hosts
through an instance refresh that drains each host and keeps most of the tier serving."""

from __future__ import annotations

import json
from typing import Any

from samtranslator.yaml_helper import yaml_parse

from local_runtime.paths import REPO_ROOT, TEMPLATE_PATH
from local_runtime.template import load_sam_template

TIERS = ("Gold", "Silver", "Bronze")


def _groups(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in resources.items() if v["Type"] == "AWS::AutoScaling::AutoScalingGroup"}


def _refresh_task() -> dict[str, Any]:
    resource = load_sam_template()["Resources"]["RefreshHostsStateMachine"]["Properties"]
    asl = json.loads((REPO_ROOT / resource["DefinitionUri"]).read_text())
    return dict(asl["States"]["StartInstanceRefresh"])


def _refresh_states() -> dict[str, Any]:
    resource = load_sam_template()["Resources"]["RefreshHostsStateMachine"]["Properties"]
    return dict(json.loads((REPO_ROOT / resource["DefinitionUri"]).read_text())["States"])


def test_no_group_sets_a_desired_capacity() -> None:
    # The tier loop is the one place groups are written; check it before and after the expansion.
    raw = yaml_parse(TEMPLATE_PATH.read_text())
    looped = raw["Resources"]["Fn::ForEach::FleetTier"][2]["${Tier}AutoScalingGroup"]
    assert "DesiredCapacity" not in looped["Properties"]
    groups = _groups(load_sam_template()["Resources"])
    assert set(groups) == {f"{tier}AutoScalingGroup" for tier in TIERS}
    for name, group in groups.items():
        assert "DesiredCapacity" not in group["Properties"], name
        # A CloudFormation rolling or replacing update would fight the controller's resizing.
        assert "UpdatePolicy" not in group, name


def test_a_group_update_of_this_stack_starts_the_refresh_workflow() -> None:
    resource = load_sam_template()["Resources"]["RefreshHostsStateMachine"]["Properties"]
    pattern = resource["Events"]["GroupUpdated"]["Properties"]["Pattern"]
    assert pattern["source"] == ["aws.cloudformation"]
    assert pattern["detail-type"] == ["CloudFormation Resource Status Change"]
    assert pattern["detail"] == {
        "stack-id": [{"Ref": "AWS::StackId"}],
        "resource-type": ["AWS::AutoScaling::AutoScalingGroup"],
        "status-details": {"status": ["UPDATE_COMPLETE"]},
    }


def test_the_refresh_keeps_the_tier_healthy_and_replaces_only_outdated_hosts() -> None:
    task = _refresh_task()
    assert task["Resource"] == "arn:aws:states:::aws-sdk:autoscaling:startInstanceRefresh"
    parameters = task["Parameters"]
    assert parameters["AutoScalingGroupName.$"] == "$.group.name"
    assert parameters["Strategy"] == "Rolling"  # terminations go through the group's lifecycle hooks
    preferences = parameters["Preferences"]
    assert preferences["MinHealthyPercentage"] >= 90
    assert 100 < preferences["MaxHealthyPercentage"] <= preferences["MinHealthyPercentage"] + 100
    assert preferences["SkipMatching"] is True
    # The new host counts as healthy only after the launch hook and the controller's warm-up.
    assert preferences["InstanceWarmup"] == 300
    # The deploy's launch template version, read from the group CloudFormation updated.
    desired = parameters["DesiredConfiguration"]["MixedInstancesPolicy"]["LaunchTemplate"]
    assert desired["LaunchTemplateSpecification"]["Version.$"] == "$.group.version"


def test_the_refresh_pauses_at_checkpoints_and_rolls_back_on_failure_or_alarm() -> None:
    preferences = _refresh_task()["Parameters"]["Preferences"]
    checkpoints = preferences["CheckpointPercentages"]
    assert checkpoints == sorted(checkpoints) and checkpoints[-1] == 100 and len(checkpoints) >= 2
    assert preferences["CheckpointDelay"] >= 300
    assert preferences["AutoRollback"] is True
    assert preferences["AlarmSpecification"]["Alarms"] == [
        "${LaunchWorkflowFailedAlarm}",
        "${DrainWorkflowFailedAlarm}",
    ]
    substitutions = load_sam_template()["Resources"]["RefreshHostsStateMachine"]["Properties"]
    assert substitutions["DefinitionSubstitutions"] == {
        "LaunchWorkflowFailedAlarm": {"Ref": "LaunchHostWorkflowFailedAlarm"},
        "DrainWorkflowFailedAlarm": {"Ref": "DrainHostWorkflowFailedAlarm"},
    }
    states = _refresh_states()
    # A rollback restores the configuration saved on the group before the refresh: the previous version.
    pin = states["PinPreviousVersion"]["Parameters"]["MixedInstancesPolicy"]["LaunchTemplate"]
    assert pin["LaunchTemplateSpecification"]["Version.$"] == "States.Format('{}', $.group.previous)"
    assert states["PinPreviousVersion"]["Next"] == "StartInstanceRefresh"
    # A refresh that cannot start leaves the group on the deploy's version, and fails for the alarm.
    assert states["StartInstanceRefresh"]["Catch"][0]["Next"] == "RestoreDeployedVersion"
    restore = states["RestoreDeployedVersion"]["Parameters"]["MixedInstancesPolicy"]["LaunchTemplate"]
    assert restore["LaunchTemplateSpecification"]["Version.$"] == "$.group.version"
    assert states[states["RestoreDeployedVersion"]["Next"]]["Type"] == "Fail"


def test_a_refresh_already_running_is_waited_for_not_dropped() -> None:
    retries = _refresh_task()["Retry"]
    in_progress = [r for r in retries if "AutoScaling.InstanceRefreshInProgressException" in r["ErrorEquals"]]
    assert in_progress, retries
    assert in_progress[0]["IntervalSeconds"] * in_progress[0]["MaxAttempts"] >= 3600


def test_each_tier_lets_only_the_refresh_workflow_refresh_only_its_group() -> None:
    resources = load_sam_template()["Resources"]
    for tier in TIERS:
        policy = resources[f"{tier}RefreshPolicy"]["Properties"]
        assert policy["Roles"] == [{"Ref": "RefreshHostsStateMachineRole"}]
        statement, launch = policy["PolicyDocument"]["Statement"]
        assert statement["Action"] == [
            "autoscaling:StartInstanceRefresh",
            "autoscaling:UpdateAutoScalingGroup",
        ]
        assert f"${{{tier}AutoScalingGroup}}" in json.dumps(statement["Resource"])
        assert launch["Action"] == "ec2:RunInstances" and f"{tier}LaunchTemplate" in json.dumps(
            launch["Resource"]
        )
    for name in ("FleetControllerFunction", "DrainHostStateMachine", "LaunchHostStateMachine"):
        assert "StartInstanceRefresh" not in json.dumps(resources[name]), name


def test_every_group_drains_and_admits_hosts_through_its_hooks() -> None:
    # What makes a refresh safe: each replaced host drains, each new one is ready before it counts.
    for name, group in _groups(load_sam_template()["Resources"]).items():
        hooks = {h["LifecycleTransition"]: h for h in group["Properties"]["LifecycleHookSpecificationList"]}
        assert hooks["autoscaling:EC2_INSTANCE_TERMINATING"]["LifecycleHookName"] == "host-drain", name
        assert hooks["autoscaling:EC2_INSTANCE_LAUNCHING"]["DefaultResult"] == "ABANDON", name


def test_a_refresh_that_cannot_start_pages_someone() -> None:
    alarm = load_sam_template()["Resources"]["RefreshHostsFailedAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/States", "ExecutionsFailed")
    assert alarm["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "RefreshHostsStateMachine"}}]
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopicWarning"}]


def test_the_refresh_desires_the_groups_whole_policy_not_only_its_launch_template() -> None:
    # A successful refresh sets the group to its desired configuration: instance types and the On-Demand/Spot
    # split left out of it would be lost (tests/functional/test_instance_refresh.py shows it end to end).
    raw = yaml_parse(TEMPLATE_PATH.read_text())
    looped = raw["Resources"]["Fn::ForEach::FleetTier"][2]["${Tier}AutoScalingGroup"]
    distribution = looped["Properties"]["MixedInstancesPolicy"]["InstancesDistribution"]
    read = _refresh_states()["ReadGroup"]["ResultSelector"]
    assert {k.removesuffix(".$") for k in read["distribution"]} == set(distribution)
    assert read["overrides.$"].endswith("MixedInstancesPolicy.LaunchTemplate.Overrides")
    desired = _refresh_task()["Parameters"]["DesiredConfiguration"]["MixedInstancesPolicy"]
    assert desired["LaunchTemplate"]["Overrides.$"] == "$.group.overrides"
    assert desired["InstancesDistribution.$"] == "$.group.distribution"
