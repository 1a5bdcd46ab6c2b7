"""Each runbook says who owns it and where it escalates, and every stack output it looks up exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from local_runtime.paths import REPO_ROOT
from local_runtime.template import load_sam_template

RUNBOOKS = sorted((REPO_ROOT / "docs" / "runbooks").glob("*.md"))
TIERS = ("Gold", "Silver", "Bronze")
# `$(out NAME)` or `out NAME` in code (the runbooks' lookup helper), and the raw query `OutputKey=='NAME'`.
OUTPUT_REFERENCE = re.compile(r"""(?:\$\(|`)out "?([A-Za-z${}]+)"?|OutputKey=='([A-Za-z${}]+)'""")
OWNER_TABLE = re.compile(r"^\| Owner \| [^|]*\S[^|]*\|$.*^\| Escalation \| [^|]*\S[^|]*\|$", re.M | re.S)


def _output_names() -> set[str]:
    return set(load_sam_template()["Outputs"])


def referenced_outputs(text: str) -> set[str]:
    names = set()
    for match in OUTPUT_REFERENCE.finditer(text):
        name = match[1] or match[2]
        if name == "$1":  # the helper's own definition
            continue
        names |= {name.replace("${TIER}", tier) for tier in TIERS} if "${TIER}" in name else {name}
    return names


def owner_table_problem(text: str) -> str | None:
    head = text.split("\n## ", 1)[0]  # before the first section
    return None if OWNER_TABLE.search(head) else "no owner and escalation table at the top"


def test_there_are_runbooks_for_scaling_and_deploys() -> None:
    names = {path.name for path in RUNBOOKS}
    assert {"scaling.md", "deploy-rollback.md"} <= names
    assert (REPO_ROOT / "docs" / "troubleshooting.md").is_file()


@pytest.mark.parametrize("runbook", RUNBOOKS, ids=lambda path: path.name)
def test_each_runbook_has_an_owner_and_escalation_table_at_the_top(runbook: Path) -> None:
    assert owner_table_problem(runbook.read_text()) is None


@pytest.mark.parametrize(
    "document", [*RUNBOOKS, REPO_ROOT / "docs" / "troubleshooting.md"], ids=lambda path: path.name
)
def test_every_output_a_runbook_looks_up_exists(document: Path) -> None:
    missing = referenced_outputs(document.read_text()) - _output_names()
    assert not missing, f"{document.name} looks up outputs the stack does not have: {sorted(missing)}"


def test_the_checks_catch_a_missing_table_and_an_unknown_output() -> None:
    assert owner_table_problem("# Runbook\n\nSomething fires.\n\n## Act\n| Owner | x |\n") is not None
    assert referenced_outputs('aws sqs receive-message --queue-url "$(out ${TIER}DeadLetterUrl)"') == {
        "GoldDeadLetterUrl",
        "SilverDeadLetterUrl",
        "BronzeDeadLetterUrl",
    }
    assert referenced_outputs("--query \"Stacks[0].Outputs[?OutputKey=='NoSuchOutput'].OutputValue\"") == {
        "NoSuchOutput"
    }


def test_no_runbook_keeps_an_unresolved_placeholder() -> None:
    # Names are looked up from the outputs; what remains in angle brackets is what the reader chooses.
    for runbook in RUNBOOKS:
        for placeholder in ("<dlq", "<group>", "<arn>", "<KnowledgeApiFunction>", "<DocumentsBucketName>"):
            assert placeholder not in runbook.read_text(), (runbook.name, placeholder)


def test_dead_letter_runbook_names_the_attributes_the_host_agent_sets() -> None:
    worker = (REPO_ROOT / "gpu_hosts" / "host_agent" / "worker.py").read_text()
    runbook = (REPO_ROOT / "docs" / "runbooks" / "fleet-dead-letters.md").read_text()
    for attribute in ("failure_reason", "failure_detail"):
        assert f'"{attribute}"' in worker and f"`{attribute}`" in runbook
    assert "`error_type`" not in runbook


def test_queue_age_runbook_names_the_dashboard_the_stack_creates() -> None:
    runbook = (REPO_ROOT / "docs" / "runbooks" / "fleet-queue-age.md").read_text()
    dashboard = load_sam_template()["Resources"]["GoldDashboard"]["Properties"]["DashboardName"]
    assert dashboard["Fn::Sub"][0] == "${AWS::StackName}-fleet-${TierName}"
    assert "$(out ${TIER}DashboardName)" in runbook and "<stack>-fleet-<tier>" in runbook


def test_the_readme_counts_the_alarms_the_stack_creates() -> None:
    from local_runtime.template import translate

    readme = (REPO_ROOT / "README.md").read_text()
    stated = re.search(
        r"Operations: (\d+) alarms with the default three tiers \((\d+) with an existing cluster", readme
    )
    assert stated, "README states no alarm count"
    for parameters, count in (
        ({}, stated[1]),
        (
            {"ExistingDatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"},
            stated[2],
        ),
    ):
        resources = translate({"VpcId": "vpc-1", "PrivateSubnetIds": "subnet-1,subnet-2", **parameters}).full[
            "Resources"
        ]
        assert sum(r["Type"] == "AWS::CloudWatch::Alarm" for r in resources.values()) == int(count)
