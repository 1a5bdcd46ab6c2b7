"""The GPU tiers are defined once in template.yaml and expanded the way SAM and CloudFormation do."""

from __future__ import annotations

import re

from samcli.lib.cfn_language_extensions.sam_integration import process_template_for_sam_cli
from samtranslator.yaml_helper import yaml_parse

from local_runtime.paths import TEMPLATE_PATH
from local_runtime.template import load_sam_template

TIERS = ("Gold", "Silver", "Bronze")
# Resources that hold state: renaming them would replace them (queued requests, running hosts, data).
STATEFUL = (
    "RequestQueue",
    "RequestDeadLetterQueue",
    "AutoScalingGroup",
    "LaunchTemplate",
)
SHARED_STATEFUL = (
    "DocumentsBucket",
    "DatabaseCluster",
    "DatabaseInstance",
    "FleetHostsTable",
    "FleetControllerStateTable",
    "StoryEventsIdempotencyTable",
    "StoryEventsQueue",
    "StoryEventsDeadLetterQueue",
    "IngestionEventsDeadLetterQueue",
)
KNOWLEDGE_ONLY = re.compile(r"^(DB_|EMBEDDING_|EMBED_|DOCUMENTS_BUCKET|MAX_DOCUMENT|IDEMPOTENCY|STORY_)")
FLEET_FUNCTIONS = ("FleetControllerFunction", "FleetScaleDownFunction", "SpotInterruptionFunction")


def test_no_resource_is_written_once_per_tier() -> None:
    raw = yaml_parse(TEMPLATE_PATH.read_text())
    written = [name for name in raw["Resources"] if name.startswith(TIERS)]
    assert written == []
    assert set(raw["Mappings"]["FleetTierSettings"]) == set(TIERS)
    assert raw["Parameters"]["FleetTiers"]["Default"] == ",".join(TIERS)


def test_the_expansion_keeps_the_logical_ids_of_stateful_resources() -> None:
    resources = load_sam_template()["Resources"]
    for tier in TIERS:
        for suffix in STATEFUL:
            assert f"{tier}{suffix}" in resources, f"{tier}{suffix}"
    assert all(name in resources for name in SHARED_STATEFUL)


def test_the_local_expansion_is_the_one_sam_cli_makes() -> None:
    raw = yaml_parse(TEMPLATE_PATH.read_text())
    sam_cli = process_template_for_sam_cli(raw, parameter_values={})
    local = load_sam_template()
    assert {k: v["Type"] for k, v in local["Resources"].items()} == {
        k: v["Type"] for k, v in sam_cli["Resources"].items()
    }
    assert set(local["Outputs"]) == set(sam_cli["Outputs"]) >= {f"{t}RequestQueueUrl" for t in TIERS}


def test_fleet_functions_get_no_database_settings_and_no_knowledge_layer() -> None:
    sam = load_sam_template()
    assert set(sam["Globals"]["Function"]["Environment"]["Variables"]) == {"POWERTOOLS_LOG_LEVEL"}
    assert sam["Globals"]["Function"]["Layers"] == [{"Ref": "PowertoolsLayer"}]
    for name in FLEET_FUNCTIONS:
        properties = sam["Resources"][name]["Properties"]
        assert properties["Layers"] == [{"Ref": "FleetLayer"}], name
        assert not [k for k in properties["Environment"]["Variables"] if KNOWLEDGE_ONLY.match(k)], name
        assert "VpcConfig" not in properties, name


def test_knowledge_functions_read_only_the_settings_they_name() -> None:
    from knowledge.config import Settings

    known = set(Settings.from_env.__code__.co_consts) | {
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
    }
    for name, resource in load_sam_template()["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] != "AWS::Serverless::Function" or name in FLEET_FUNCTIONS:
            continue
        assert {"Ref": "KnowledgeLayer"} in properties["Layers"], name
        unknown = set(properties["Environment"]["Variables"]) - known
        assert unknown == set(), f"{name}: {unknown}"


def test_every_tier_reaches_the_drain_and_launch_workflows_through_its_hooks() -> None:
    resources = load_sam_template()["Resources"]
    for tier in TIERS:
        hooks = resources[f"{tier}AutoScalingGroup"]["Properties"]["LifecycleHookSpecificationList"]
        assert {h["LifecycleHookName"] for h in hooks} == {"host-ready", "host-drain"}
        assert all(h["NotificationMetadata"] == {"Ref": "AWS::StackId"} for h in hooks)
    for machine, event in (("DrainHostStateMachine", "TerminateLifecycleAction"),
                           ("LaunchHostStateMachine", "LaunchLifecycleAction")):  # fmt: skip
        pattern = resources[machine]["Properties"]["Events"][event]["Properties"]["Pattern"]
        assert pattern["detail"] == {"NotificationMetadata": [{"Ref": "AWS::StackId"}]}


def test_each_tier_has_its_target_and_scoped_permissions() -> None:
    resources = load_sam_template()["Resources"]
    for tier in TIERS:
        target = resources[f"{tier}TierTarget"]["Properties"]
        assert target["Type"] == "String"
        variables = target["Value"]["Fn::Sub"][1]
        assert variables["Queue"] == {"Ref": f"{tier}RequestQueue"}
        assert variables["Group"] == {"Ref": f"{tier}AutoScalingGroup"}
        assert variables["Hold"] == {"Ref": "FleetScaleInHoldSeconds"}
        assert '"scale_in_hold_s": ${Hold}' in target["Value"]["Fn::Sub"][0]
        scaling = resources[f"{tier}ScalingPolicy"]["Properties"]
        assert {"Ref": "FleetControllerFunctionRole"} in scaling["Roles"]
        assert f"${{{tier}AutoScalingGroup}}" in str(scaling["PolicyDocument"])
        queues = resources[f"{tier}HostQueuesPolicy"]["Properties"]
        assert queues["Roles"] == [{"Ref": "GpuHostRole"}]


def test_a_change_of_any_tier_target_redeploys_the_functions_that_cache_them() -> None:
    # The fleet functions read the tier targets once at cold start; without a changed environment a deploy
    # of new bounds or a new scale-in hold would leave warm functions deciding with the old ones.
    template = load_sam_template()
    resources, parameters = template["Resources"], template["Parameters"]
    watched = [name for name in parameters if name.endswith(("MinSize", "MaxSize"))] + [
        "FleetScaleInHoldSeconds"
    ]
    for function in ("FleetControllerFunction", "FleetScaleDownFunction", "SpotInterruptionFunction"):
        variables = resources[function]["Properties"]["Environment"]["Variables"]
        assert "FLEET_TIERS_PATH" in variables
        revision = variables["FLEET_TIERS_REVISION"]["Fn::Sub"]
        for name in watched:
            assert f"${{{name}}}" in revision, (function, name)
