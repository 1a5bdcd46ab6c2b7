"""The static scans' judge (cli/scan.py): every finding needs a listed, justified suppression, and a
suppression that matches nothing is itself a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.scan import SUPPRESSIONS, Finding, ScanError, Suppression, judge, load_suppressions

QUEUE = Finding("checkov", "CKV_AWS_27", "AWS::SQS::Queue.GoldRequestQueue", 0, "queue encryption")
ASSERT = Finding("bandit", "B101", "layers/fleet/fleet/policy.py", 12, "assert used")


def test_a_finding_is_accepted_only_by_its_tool_id_and_place() -> None:
    queues = Suppression("checkov", "CKV_AWS_27", ("AWS::SQS::Queue.*",), "managed SSE is on")
    elsewhere = Suppression("bandit", "B101", ("bench/*",), "benchmarks only")
    open_findings, unused = judge([QUEUE, ASSERT], [queues, elsewhere])
    assert open_findings == [ASSERT]
    assert unused == [elsewhere]
    assert judge([QUEUE], [Suppression("bandit", "CKV_AWS_27", ("*",), "wrong tool")])[0] == [QUEUE]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suppressions.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("checkov:\n  - resources: ['*']\n    reason: because it is fine here\n", "has no id"),
        ("checkov:\n  - id: CKV_AWS_1\n    reason: because it is fine here\n", "non-empty list of resources"),
        ("bandit:\n  - id: B101\n    paths: []\n    reason: because it is fine here\n", "list of paths"),
        ("bandit:\n  - id: B101\n    paths: ['*']\n    reason: fine\n", "reason that says why"),
        ("trivy: []\n", "unknown sections"),
    ],
)
def test_a_malformed_suppressions_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ScanError, match=message):
        load_suppressions(_write(tmp_path, text))


def test_the_projects_suppressions_are_all_justified_and_scoped() -> None:
    suppressions = load_suppressions(SUPPRESSIONS)
    assert {s.tool for s in suppressions} == {"checkov", "bandit"}
    for s in suppressions:
        assert s.reason.strip() and s.patterns, s
        # Blanket entries are for checks that apply to a whole resource type, never to every resource.
        if s.tool == "checkov":
            assert all(
                p.split(":", 1)[-1].startswith("AWS::") if ".yaml:" in p else p.startswith("AWS::")
                for p in s.patterns
            ), s
