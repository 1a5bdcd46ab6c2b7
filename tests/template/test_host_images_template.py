"""The GPU host images (images/template.yaml) and how the main stack takes them: the image stack is
cfn-lint clean, its component documents are valid AWSTOE documents copied verbatim into it, each tier's
image lands in the SSM parameter the main stack's launch templates read, and every abandoned launch is
counted and reaches a person."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from images import render
from local_runtime.paths import REPO_ROOT
from local_runtime.template import load_sam_template
from tests.template.test_template import BIN, _run

IMAGES = REPO_ROOT / "images" / "template.yaml"
COMPONENTS = sorted((REPO_ROOT / "images" / "components").glob("*.yaml"))
TIERS = ("Gold", "Silver", "Bronze")
PHASES = ("build", "validate", "test")
# AWSTOE's action modules (Image Builder user guide, "Action modules supported by AWSTOE").
KNOWN_ACTIONS = frozenset(
    {
        "ExecuteBash",
        "ExecuteBinary",
        "ExecuteDocument",
        "ExecutePowerShell",
        "S3Download",
        "S3Upload",
        "WebDownload",
        "AppendFile",
        "CopyFile",
        "CopyFolder",
        "CreateFile",
        "CreateFolder",
        "CreateSymlink",
        "DeleteFile",
        "DeleteFolder",
        "ListFiles",
        "MoveFile",
        "MoveFolder",
        "ReadFile",
        "SetFileEncoding",
        "SetFileOwner",
        "SetFolderOwner",
        "SetFilePermissions",
        "SetFolderPermissions",
        "InstallMSI",
        "UninstallMSI",
        "Reboot",
        "SetRegistry",
        "UpdateOS",
        "Assert",
    }
)
SSM_IMAGE = "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"


def _images() -> dict[str, Any]:
    """images/template.yaml with its Fn::ForEach loops expanded (only those), as CloudFormation does."""
    return load_sam_template(IMAGES)


def _document(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def _declared(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: spec for entry in document.get("parameters", []) for name, spec in entry.items()}


def test_the_images_template_passes_cfn_lint() -> None:
    result = _run(str(BIN / "cfn-lint"), "images/template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_template_holds_each_component_document_verbatim() -> None:
    template = IMAGES.read_text()
    assert render.stale(template) == [], "run: .venv/bin/python images/render.py --write"
    assert sorted(p.name for p in render.sources(template).values()) == [p.name for p in COMPONENTS]
    broken = template.replace("uv venv --allow-existing --python 3.12 /opt/gpu-host/vllm", "uv venv /tmp", 1)
    assert render.stale(broken) == ["VllmComponent"] and render.rewrite(broken) == template


@pytest.mark.parametrize("path", COMPONENTS, ids=lambda p: p.stem)
def test_component_documents_are_awstoe_documents(path: Path) -> None:
    document = _document(path)
    assert document["name"] == path.stem and document["schemaVersion"] == 1.0
    assert [phase["name"] for phase in document["phases"]] == list(PHASES)
    declared = _declared(document)
    for phase in document["phases"]:
        names = [step["name"] for step in phase["steps"]]
        assert names and len(names) == len(set(names)), (phase["name"], names)
        for step in phase["steps"]:
            assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", step["name"]), step["name"]
            assert step["action"] in KNOWN_ACTIONS, step["action"]
            assert "inputs" in step, step["name"]
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", path.read_text()))
    assert used <= set(declared), sorted(used - set(declared))
    for name, spec in declared.items():
        assert spec["type"] == "string" and spec.get("description"), name


def test_each_recipe_gives_its_components_what_they_need() -> None:
    resources = _images()["Resources"]
    documents = {
        name: _document(REPO_ROOT / source) for name, source in render.sources(IMAGES.read_text()).items()
    }
    for tier in TIERS:
        components = resources[f"{tier}Recipe"]["Properties"]["Components"]
        order = [c["ComponentArn"]["Ref"] for c in components]
        assert order == ["VllmComponent", "AgentComponent", "ModelComponent", "ManifestComponent"]
        for component in components:
            declared = _declared(documents[component["ComponentArn"]["Ref"]])
            given = {p["Name"] for p in component.get("Parameters", [])}
            required = {name for name, spec in declared.items() if "default" not in spec}
            assert required <= given <= set(declared), (tier, component["ComponentArn"])
        model = next(c for c in components if c["ComponentArn"]["Ref"] == "ModelComponent")
        assert {"Name": "ModelId", "Value": [{"Ref": f"{tier}ModelId"}]} in model["Parameters"]


def _default_image_parameter(template: dict[str, Any], tier: str) -> str:
    distribution = template["Resources"][f"{tier}Distribution"]["Properties"]["Distributions"]
    (target,) = distribution[0]["SsmParameterConfigurations"]
    assert target["DataType"] == "aws:ec2:image"  # SSM checks the value is an AMI
    text, variables = target["ParameterName"]["Fn::Sub"]
    tier_name = template["Mappings"]["TierSettings"][tier]["Name"]
    assert variables == {"TierName": {"Fn::FindInMap": ["TierSettings", tier, "Name"]}}
    prefix = template["Parameters"]["ImageParameterPrefix"]["Default"]
    return str(text.replace("${ImageParameterPrefix}", prefix).replace("${TierName}", tier_name))


def test_each_tier_image_lands_in_the_parameter_its_launch_template_reads() -> None:
    images, main = _images(), load_sam_template()
    for tier in TIERS:
        parameter = main["Parameters"][f"{tier}HostImage"]
        assert parameter["Type"] == SSM_IMAGE  # a missing image parameter refuses the deploy
        assert parameter["Default"] == _default_image_parameter(images, tier)
        data = main["Resources"][f"{tier}LaunchTemplate"]["Properties"]["LaunchTemplateData"]
        assert data["ImageId"] == {"Ref": f"{tier}HostImage"}
        # The image's root volume fits in the launch template's.
        image_volume = images["Resources"][f"{tier}Recipe"]["Properties"]["BlockDeviceMappings"][0]["Ebs"]
        assert data["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] >= image_volume["VolumeSize"]


def test_images_and_hosts_agree_on_models_and_the_vllm_release() -> None:
    images, main = _images()["Parameters"], load_sam_template()["Parameters"]
    for tier in TIERS:
        assert images[f"{tier}ModelId"]["Default"] == main[f"{tier}ModelId"]["Default"]
    assert images["VllmVersion"]["Default"] == main["VllmVersion"]["Default"]
    # What the hosts no longer need: the base AMI, the wheel's bucket and key are the image stack's.
    assert not {"GpuAmiId", "HostAgentArtifactsBucket", "HostAgentWheelKey"} & set(main)
    assert "deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu" in images["ParentImageParameter"]["Default"]
    assert "Default" not in images["HostAgentArtifactsBucket"]  # no image without the agent


def test_images_build_on_cpu_instances_from_the_newest_base_ami() -> None:
    template = _images()
    types = template["Parameters"]["BuildInstanceTypes"]["Default"].split(",")
    assert types and not [t for t in types if re.match(r"(g|p|inf|trn|dl)\d", t)]
    for tier in TIERS:
        recipe = template["Resources"][f"{tier}Recipe"]["Properties"]
        assert recipe["ParentImage"] == {"Fn::Sub": "ssm:${ParentImageParameter}"}
        pipeline = template["Resources"][f"{tier}Pipeline"]["Properties"]
        assert pipeline["ImageTestsConfiguration"]["ImageTestsEnabled"] is True


def test_the_image_test_runs_the_check_every_host_runs_at_boot() -> None:
    manifest = _document(REPO_ROOT / "images" / "components" / "gpu-host-manifest.yaml")
    test_phase = next(p for p in manifest["phases"] if p["name"] == "test")
    commands = json.dumps(test_phase)
    assert "/opt/gpu-host/agent/bin/host-agent check-image" in commands
    bootstrap = (REPO_ROOT / "gpu_hosts/host_agent/userdata/files/bootstrap.sh").read_text()
    assert '"$agent" check-image' in bootstrap


def test_the_hosts_may_no_longer_read_the_artifacts_bucket() -> None:
    role = load_sam_template()["Resources"]["GpuHostRole"]["Properties"]
    assert "s3:" not in json.dumps(role)


# ---------------------------------------------------------------- launch failures


def _launch_workflow() -> tuple[dict[str, Any], dict[str, Any]]:
    resource = load_sam_template()["Resources"]["LaunchHostStateMachine"]["Properties"]
    return resource, json.loads((REPO_ROOT / resource["DefinitionUri"]).read_text())


def test_every_abandon_is_counted_in_the_metric_the_controller_reads() -> None:
    _, machine = _launch_workflow()
    states = machine["States"]
    publish = states["PublishLaunchFailure"]
    assert publish["Resource"] == "arn:aws:states:::aws-sdk:cloudwatch:putMetricData"
    assert publish["Parameters"] == {
        "Namespace": "AiGame/Fleet",
        "MetricData": [
            {
                "MetricName": "LaunchFailures",
                "Dimensions": [{"Name": "Tier", "Value.$": "$.group.tier"}],
                "Value": 1,
                "Unit": "Count",
            }
        ],
    }
    # Every cause goes through Abandon, and Abandon through the count.
    causes = [n for n, s in states.items() if s["Type"] == "Pass" and "cause" in s.get("Parameters", {})]
    assert sorted(causes) == [
        "BootstrapFailed",
        "BootstrapFailedWithoutReason",
        "NeverRegistered",
        "NotReadyInTime",
    ]
    assert {states[c]["Next"] for c in causes} == {"Abandon"}
    chain, name = [], "Abandon"
    while "Next" in states[name]:
        chain.append(name)
        name = states[name]["Next"]
    assert chain == ["Abandon", "ReadTier", "RecordAbandon", "PublishLaunchFailure"]
    # The Tier value is the group's fleet-tier tag, which each group carries as the tier's lowercase name.
    assert {"Name": "key", "Values": ["fleet-tier"]} in states["ReadTier"]["Parameters"]["Filters"]
    resources = load_sam_template()["Resources"]
    for tier in TIERS:
        tags = resources[f"{tier}AutoScalingGroup"]["Properties"]["Tags"]
        assert {"Key": "fleet-tier", "Value": {"Fn::FindInMap": ["FleetTierSettings", tier, "Name"]},
                "PropagateAtLaunch": True} in tags  # fmt: skip


def test_launch_failures_page_the_topic_a_person_is_subscribed_to() -> None:
    resources = load_sam_template()["Resources"]
    assert resources["AlarmEmailSubscription"]["Properties"]["TopicArn"] == {"Ref": "AlarmTopicCritical"}
    for tier in TIERS:
        alarm = resources[f"{tier}LaunchFailuresAlarm"]["Properties"]
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (
            "AiGame/Fleet",
            "LaunchFailures",
            "Sum",
        )
        assert alarm["Dimensions"] == [
            {"Name": "Tier", "Value": {"Fn::FindInMap": ["FleetTierSettings", tier, "Name"]}}
        ]
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopicCritical"}]
        assert alarm["TreatMissingData"] == "notBreaching"  # no launches, no failures


def test_the_launch_workflow_may_do_what_an_abandon_needs() -> None:
    resource, _ = _launch_workflow()
    statements = [s for p in resource["Policies"] if "Statement" in p for s in p["Statement"]]
    actions = {s["Action"]: s for s in statements}
    assert actions["cloudwatch:PutMetricData"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "AiGame/Fleet"}
    }
    assert actions["dynamodb:UpdateItem"]["Resource"] == {"Fn::GetAtt": ["FleetHostsTable", "Arn"]}
    assert "autoscaling:DescribeTags" in actions


def test_the_launch_deadline_ends_before_the_hook_and_after_the_health_grace() -> None:
    _, machine = _launch_workflow()
    states = machine["States"]
    deadline = (
        next(
            c["NumericGreaterThanEquals"]
            for c in states["IsReady"]["Choices"]
            if c.get("Variable") == "$.checks"
        )
        * states["WaitForReady"]["Seconds"]
    )
    resources = load_sam_template()["Resources"]
    for tier in TIERS:
        hooks = resources[f"{tier}AutoScalingGroup"]["Properties"]["LifecycleHookSpecificationList"]
        ready = next(h for h in hooks if h["LifecycleHookName"] == "host-ready")
        assert deadline + 60 <= ready["HeartbeatTimeout"]  # the workflow decides, not the hook's default
    health = (REPO_ROOT / "gpu_hosts/host_agent/userdata/files/vllm-health.sh").read_text()
    grace = re.search(r"^grace_s=(\d+)$", health, re.MULTILINE)
    assert grace and int(grace[1]) < deadline  # a hung vLLM is restarted once before the host is given up
