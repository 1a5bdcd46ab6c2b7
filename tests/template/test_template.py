"""template.yaml, the ASL files and the local runtime's view of them stay consistent."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from knowledge import errors
from local_runtime.paths import REPO_ROOT
from local_runtime.template import (
    LOCALLY_PROVIDED,
    MOTO_CREATED,
    NOT_EMULATED,
    UnsupportedResourceError,
    check_supported,
    load_sam_template,
    translate,
)

BIN = Path(sys.executable).parent
LOCAL_PARAMETERS = {
    "VpcId": "vpc-12345678",
    "PrivateSubnetIds": "subnet-1111aaaa,subnet-2222bbbb",
    "ExistingDatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
}
DEPLOY_PARAMETERS = {"VpcId": "vpc-12345678", "PrivateSubnetIds": "subnet-1111aaaa,subnet-2222bbbb"}


def _run(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cfn_lint_is_clean() -> None:
    result = _run(str(BIN / "cfn-lint"), "template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_is_clean() -> None:
    result = _run(str(BIN / "sam"), "validate", "--lint", "--region", "us-east-1")
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_build_succeeds_without_a_container(tmp_path: Path) -> None:
    build_dir = tmp_path / "build"
    result = _run(
        str(BIN / "sam"), "build", "--build-dir", str(build_dir), "--cache-dir", str(tmp_path / "c")
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    knowledge = build_dir / "KnowledgeLayer" / "python"
    assert (knowledge / "knowledge" / "ingestion" / "steps.py").exists()
    assert (knowledge / "knowledge" / "schema" / "migrations" / "0001_initial.sql").exists()
    assert (knowledge / "psycopg").is_dir()
    assert (build_dir / "FleetLayer" / "python" / "fleet" / "policy.py").exists()
    assert (build_dir / "MessagesLayer" / "python" / "messages" / "knowledge_pb2.py").exists()
    assert (build_dir / "PowertoolsLayer" / "python" / "aws_lambda_powertools").is_dir()
    assert (build_dir / "ValidateDocumentFunction" / "app.py").exists()


def _state_machines() -> list[tuple[str, dict, str]]:
    sam = load_sam_template()
    found = []
    for logical_id, resource in sam["Resources"].items():
        if resource["Type"] == "AWS::Serverless::StateMachine":
            props = resource["Properties"]
            found.append((logical_id, props, (REPO_ROOT / props["DefinitionUri"]).read_text()))
    return found


def test_every_asl_substitution_is_defined_and_used() -> None:
    for logical_id, props, text in _state_machines():
        used = set(re.findall(r"\$\{([A-Za-z0-9]+)\}", text))
        defined = set(props.get("DefinitionSubstitutions", {}))
        assert used == defined, f"{logical_id}: used {sorted(used)} vs defined {sorted(defined)}"
        assert "arn:aws:lambda" not in text, "ARNs come from DefinitionSubstitutions, never literals"


def _error_names(node: object) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("Retry", "Catch"):
                for rule in value:
                    names.update(rule["ErrorEquals"])
            names |= _error_names(value)
    elif isinstance(node, list):
        for item in node:
            names |= _error_names(item)
    return names


def test_asl_error_names_are_domain_errors_or_service_errors() -> None:
    domain = {name for name, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, Exception)}
    for _, _, text in _state_machines():
        for name in _error_names(json.loads(text)):
            assert name in domain or name.startswith(("States.", "Lambda.", "AutoScaling.")), name


def test_local_translation_accounts_for_every_resource() -> None:
    local = translate(LOCAL_PARAMETERS)
    types = {r["Type"] for r in local.full["Resources"].values()}
    assert types <= MOTO_CREATED | set(LOCALLY_PROVIDED) | set(NOT_EMULATED)
    # The database comes from the secret parameter locally: no RDS resources are created.
    assert "AWS::RDS::DBCluster" not in types
    # The runtime substitutes ${...} itself after the stack exists (moto's Fn::Sub would collapse "$$").
    text, substitutions = local.definitions["IngestionStateMachine"]
    assert "${ValidateDocumentFunctionArn}" in text and "$$.Map.Item.Value" in text
    assert substitutions["ValidateDocumentFunctionArn"] == {"Ref": "ValidateDocumentFunctionAliaslive"}


def test_deployed_translation_creates_the_database_and_is_accounted_for() -> None:
    local = translate(DEPLOY_PARAMETERS)
    types = {r["Type"] for r in local.full["Resources"].values()}
    assert {"AWS::RDS::DBCluster", "AWS::RDS::DBInstance", "Custom::DatabaseMigration"} <= types


def test_an_unknown_resource_type_fails_loudly() -> None:
    with pytest.raises(UnsupportedResourceError, match="AWS::Kendra::Index"):
        check_supported({"Search": {"Type": "AWS::Kendra::Index"}})


def test_quarantine_alarm_watches_the_metric_the_handler_emits() -> None:
    sam = load_sam_template()
    alarm = sam["Resources"]["DocumentsQuarantinedAlarm"]["Properties"]
    env = sam["Resources"]["QuarantineDocumentFunction"]["Properties"]["Environment"]["Variables"]
    assert alarm["Namespace"] == env["POWERTOOLS_METRICS_NAMESPACE"]
    assert {"Name": "service", "Value": env["POWERTOOLS_SERVICE_NAME"]} in alarm["Dimensions"]
    handler = (REPO_ROOT / "functions" / "quarantine_document" / "app.py").read_text()
    assert f'name="{alarm["MetricName"]}"' in handler


def test_alarms_point_at_runbooks_that_exist() -> None:
    sam = load_sam_template()
    for logical_id, resource in sam["Resources"].items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            description = resource["Properties"]["AlarmDescription"]
            if isinstance(description, dict):  # Fn::Sub [text, variables] of a per-tier alarm
                description = description["Fn::Sub"][0]
            match = re.search(r"Runbook (docs/runbooks/[\w.-]+\.md)", description)
            assert match, f"{logical_id} names no runbook"
            assert (REPO_ROOT / match[1]).is_file(), match[1]


def test_sample_s3_events_match_the_workflow_rule() -> None:
    from moto.events.models import EventPattern

    sam = load_sam_template()
    pattern = sam["Resources"]["IngestionStateMachine"]["Properties"]["Events"]["DocumentChanged"][
        "Properties"
    ]["Pattern"]
    for name in ("s3-object-created.json", "s3-object-deleted.json"):
        event = json.loads((REPO_ROOT / "events" / name).read_text())
        concrete = json.loads(
            json.dumps(pattern).replace(
                '{"Ref": "DocumentsBucket"}', json.dumps(event["detail"]["bucket"]["name"])
            )
        )
        assert EventPattern.load(json.dumps(concrete)).matches_event(event), name


def test_generated_protobuf_code_is_current(tmp_path: Path) -> None:
    protos = sorted((REPO_ROOT / "proto").rglob("*.proto"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            "proto",
            f"--python_out={tmp_path}",
            *[str(p.relative_to(REPO_ROOT)) for p in protos],
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    for generated in tmp_path.rglob("*_pb2.py"):
        committed = REPO_ROOT / "layers" / "messages" / generated.relative_to(tmp_path)
        assert committed.read_text() == generated.read_text(), f"run `make proto`: {committed} is stale"


def test_sam_build_needs_python312_on_path() -> None:
    assert shutil.which("python3.12", path=str(BIN)) or sys.version_info[:2] == (3, 12)
