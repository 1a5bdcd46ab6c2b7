"""Gradual releases: every function behind a `live` alias with a DeploymentPreference and rollback alarms on
the alias, every caller on the alias (or traffic shifting would shift nothing), the long-running workflows
published as versions behind aliases their rules start."""

from __future__ import annotations

import json
from typing import Any

import pytest

from local_runtime.paths import REPO_ROOT
from local_runtime.template import LocalTemplate, load_sam_template, translate

PARAMETERS = {"VpcId": "vpc-12345678", "PrivateSubnetIds": "subnet-1111aaaa,subnet-2222bbbb"}
CANARY = {"KnowledgeApiFunction", "ProcessStoryEventsFunction"}
LINEAR = {"FleetControllerFunction", "FleetScaleDownFunction"}
ALARMED = CANARY | LINEAR | {"KnowledgeApiErasureFunction", "SpotInterruptionFunction"}
VERSIONED_WORKFLOWS = (
    "IngestionStateMachine",
    "DrainHostStateMachine",
    "LaunchHostStateMachine",
    "RefreshHostsStateMachine",
)


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return load_sam_template()


@pytest.fixture(scope="module")
def deployed() -> LocalTemplate:
    return translate(PARAMETERS)


def _of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: r for k, r in resources.items() if r["Type"] == kind}


def test_every_function_is_published_behind_its_live_alias_with_a_deployment_preference(
    sam: dict[str, Any],
) -> None:
    globals_ = sam["Globals"]["Function"]
    assert globals_["AutoPublishAlias"] == "live" and globals_["DeploymentPreference"]["Type"] == "AllAtOnce"
    for logical_id, function in _of_type(sam["Resources"], "AWS::Serverless::Function").items():
        props = function["Properties"]
        assert props.get("AutoPublishAlias", "live") == "live", logical_id
        kind = props.get("DeploymentPreference", globals_["DeploymentPreference"])["Type"]
        if logical_id in CANARY:
            assert kind.startswith("Canary"), logical_id
        elif logical_id in LINEAR:
            assert kind.startswith("Linear"), logical_id
        else:
            assert kind == "AllAtOnce", logical_id


def test_each_alarmed_release_rolls_back_on_its_aliases_errors_throttles_and_latency(
    sam: dict[str, Any],
) -> None:
    resources = sam["Resources"]
    for function in ALARMED:
        alarms = resources[function]["Properties"]["DeploymentPreference"]["Alarms"]
        watched = {}
        for reference in alarms:
            props = resources[reference["Ref"]]["Properties"]
            dims = {d["Name"]: d["Value"] for d in props["Dimensions"]}
            assert dims["FunctionName"] == {"Ref": function}
            assert dims["Resource"] == {"Fn::Sub": f"${{{function}}}:live"}  # the alias, not every version
            watched[props["MetricName"]] = props
        assert set(watched) == {"Errors", "Throttles", "Duration"}, function
        assert watched["Duration"]["ExtendedStatistic"] == "p99"
        timeout_ms = resources[function]["Properties"]["Timeout"] * 1000
        budget = sam["Mappings"]["ReleaseAlarmSettings"][function]["LatencyP99Ms"]
        assert budget < timeout_ms, function


def test_every_release_names_alarms_that_roll_it_back(sam: dict[str, Any], deployed: LocalTemplate) -> None:
    resources = sam["Resources"]
    for logical_id, function in _of_type(resources, "AWS::Serverless::Function").items():
        alarms = function["Properties"].get("DeploymentPreference", {}).get("Alarms")
        assert alarms, f"{logical_id} ships with nothing watching it"
        for reference in alarms:
            alarm = resources[reference["Ref"]]
            assert alarm["Type"] == "AWS::CloudWatch::Alarm", logical_id
            assert alarm.get("Condition") == function.get("Condition"), logical_id
    groups = _of_type(deployed.full["Resources"], "AWS::CodeDeploy::DeploymentGroup")
    assert len(groups) == len(_of_type(resources, "AWS::Serverless::Function"))
    for logical_id, group in groups.items():
        configuration = group["Properties"]["AlarmConfiguration"]
        assert configuration["Enabled"] is True and configuration["Alarms"], logical_id


def test_every_caller_invokes_a_functions_alias(deployed: LocalTemplate) -> None:
    resources = deployed.full["Resources"]
    aliases = _of_type(resources, "AWS::Lambda::Alias")
    assert len(aliases) == len(_of_type(resources, "AWS::Lambda::Function"))

    def is_alias(value: Any) -> bool:
        return isinstance(value, dict) and value.get("Ref") in aliases

    for logical_id, rule in _of_type(resources, "AWS::Events::Rule").items():
        for target in rule["Properties"]["Targets"]:
            if "LambdaTarget" in target["Id"]:
                assert is_alias(target["Arn"]), logical_id
    for logical_id, mapping in _of_type(resources, "AWS::Lambda::EventSourceMapping").items():
        assert is_alias(mapping["Properties"]["FunctionName"]), logical_id
    for logical_id, permission in _of_type(resources, "AWS::Lambda::Permission").items():
        assert is_alias(permission["Properties"]["FunctionName"]), logical_id
    for logical_id, method in _of_type(resources, "AWS::ApiGateway::Method").items():
        text, variables = method["Properties"]["Integration"]["Uri"]["Fn::Sub"]
        assert "${Alias}" in text and is_alias(variables["Alias"]), logical_id
    for logical_id, (_, substitutions) in deployed.definitions.items():
        for name, value in substitutions.items():
            if name.endswith("FunctionArn"):
                assert is_alias(value), f"{logical_id}: {name}"
    assert is_alias(resources["DatabaseMigration"]["Properties"]["ServiceToken"])
    # No function ARN left unqualified anywhere a caller could use it.
    text = json.dumps({k: r for k, r in resources.items() if r["Type"] != "AWS::Lambda::Alias"})
    functions = _of_type(resources, "AWS::Lambda::Function")
    for function in functions:
        for unqualified in (f'["{function}", "Arn"]', "${" + function + ".Arn}"):
            assert unqualified not in text, f"{function} is called without its alias"


def test_the_long_running_workflows_are_versions_behind_aliases_their_rules_start(
    sam: dict[str, Any], deployed: LocalTemplate
) -> None:
    resources = deployed.full["Resources"]
    for machine in VERSIONED_WORKFLOWS:
        props = sam["Resources"][machine]["Properties"]
        assert props["AutoPublishAlias"] == "live" and props["UseAliasAsEventTarget"] is True
        assert props["DeploymentPreference"]["Type"] in {"ALL_AT_ONCE", "CANARY", "LINEAR"}
        alias = f"{machine}Aliaslive"
        assert resources[alias]["Type"] == "AWS::StepFunctions::StateMachineAlias"
        rules = [
            r
            for k, r in _of_type(resources, "AWS::Events::Rule").items()
            if k.startswith(machine) and "Schedule" not in json.dumps(r)
        ]
        assert rules and all(t["Arn"] == {"Ref": alias} for r in rules for t in r["Properties"]["Targets"])
    ingestion = sam["Resources"]["IngestionStateMachine"]["Properties"]["DeploymentPreference"]
    assert ingestion["Type"] == "CANARY" and ingestion["Alarms"] == [
        {"Ref": "IngestionExecutionsFailedAlarm"}
    ]


def test_the_release_runbook_exists_and_names_the_alarms() -> None:
    runbook = (REPO_ROOT / "docs" / "runbooks" / "release-rollback.md").read_text()
    for suffix in ("-release-errors", "-release-throttles", "-release-latency"):
        assert suffix in runbook
