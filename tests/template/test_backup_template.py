"""Backups, point-in-time recovery and deletion protection of everything that holds state (docs/dr.md)."""

from __future__ import annotations

import re
from typing import Any

from local_runtime.paths import REPO_ROOT
from local_runtime.template import load_sam_template

PROTECTED = {"Fn::If": ["ProtectFromDeletion", True, False]}


def _resources() -> dict[str, Any]:
    return dict(load_sam_template()["Resources"])


def _tables(resources: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resources.items() if v["Type"] == "AWS::DynamoDB::Table"}


def test_deletion_protection_is_on_unless_a_stack_turns_it_off() -> None:
    sam = load_sam_template()
    assert sam["Parameters"]["DeletionProtection"]["Default"] == "true"
    assert sam["Conditions"]["ProtectFromDeletion"] == {"Fn::Equals": [{"Ref": "DeletionProtection"}, "true"]}
    cluster = sam["Resources"]["DatabaseCluster"]
    assert cluster["Properties"]["DeletionProtection"] == PROTECTED
    assert cluster["DeletionPolicy"] == cluster["UpdateReplacePolicy"] == "Snapshot"
    for name, table in _tables(sam["Resources"]).items():
        assert table["Properties"]["DeletionProtectionEnabled"] == PROTECTED, name


def test_every_table_has_point_in_time_recovery_and_survives_the_stack() -> None:
    tables = _tables(_resources())
    assert {"FleetHostsTable", "FleetControllerStateTable", "StoryEventsIdempotencyTable"} <= set(tables)
    for name, table in tables.items():
        pitr = table["Properties"]["PointInTimeRecoverySpecification"]
        assert pitr == {"PointInTimeRecoveryEnabled": True}, name
        assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain", name
    resources = _resources()
    for name in ("DocumentsBucket", "BackupVault", "BackupKey"):
        assert resources[name]["DeletionPolicy"] == "Retain", name


def test_the_plan_backs_up_daily_keeps_30_days_and_copies_when_a_region_is_given() -> None:
    resources = _resources()
    (rule,) = resources["BackupPlan"]["Properties"]["BackupPlan"]["BackupPlanRule"]
    assert rule["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert rule["Lifecycle"] == {"DeleteAfterDays": 30}
    assert rule["TargetBackupVault"] == {"Ref": "BackupVault"}
    condition, (copy,), absent = rule["CopyActions"]["Fn::If"]
    assert condition == "CopyBackups" and absent == {"Ref": "AWS::NoValue"}
    assert "${BackupCopyRegion}" in copy["DestinationBackupVaultArn"]["Fn::Sub"]
    assert copy["Lifecycle"] == {"DeleteAfterDays": 30}
    conditions = load_sam_template()["Conditions"]
    assert conditions["CopyBackups"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "BackupCopyRegion"}, ""]}]}


def test_the_copy_region_parameter_accepts_regions_and_empty_only() -> None:
    parameter = load_sam_template()["Parameters"]["BackupCopyRegion"]
    assert parameter["Default"] == ""
    pattern = re.compile(parameter["AllowedPattern"])
    for good in ("", "eu-west-1", "us-gov-west-1", "ap-southeast-2"):
        assert pattern.fullmatch(good), good
    for bad in ("eu-west", "EU-WEST-1", "arn:aws:backup", "eu-west-1 "):
        assert not pattern.fullmatch(bad), bad


def test_the_selection_covers_the_cluster_and_every_table() -> None:
    resources = _resources()
    selection = resources["BackupSelection"]["Properties"]["BackupSelection"]
    assert selection["IamRoleArn"] == {"Fn::GetAtt": ["BackupRole", "Arn"]}
    chosen = selection["Resources"]
    for name in _tables(resources):
        assert {"Fn::GetAtt": [name, "Arn"]} in chosen, name
    (cluster,) = [r for r in chosen if "Fn::If" in r]
    assert cluster["Fn::If"][0] == "CreateDatabase"
    assert "${DatabaseCluster}" in cluster["Fn::If"][1]["Fn::Sub"]


def test_the_recovery_document_states_rto_rpo_and_the_restore_commands() -> None:
    text = (REPO_ROOT / "docs" / "dr.md").read_text()
    for needed in ("RTO", "RPO", "restore-db-cluster-to-point-in-time", "restore-table-to-point-in-time",
                   "start-restore-job", "kb backup", "kb restore"):  # fmt: skip
        assert needed in text, needed
