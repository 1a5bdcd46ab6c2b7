"""`make scan`: checkov on the deployed template and bandit on the Python code, against one suppressions file.

checkov reads the template CloudFormation receives (template.yaml with its loops expanded and the SAM
transform applied, by the local runtime's own translation), so every tier's resources and every generated
role are scanned, and the two other stacks as written: the pipeline's roles and the host image pipeline
(their findings are named `<file>:<Type>.<LogicalId>`). bandit reads the code that runs anywhere (Lambda, GPU hosts, tools), not the tests.
Inline `# nosec` and checkov skip comments are ignored: `.security/suppressions.yaml` is the one list of
accepted findings, each with its reason, and a suppression that matches nothing fails the scan as well.
Exit status 0 when every finding is suppressed, 1 otherwise, 2 when a scanner could not run.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from local_runtime.paths import REPO_ROOT

SUPPRESSIONS = REPO_ROOT / ".security" / "suppressions.yaml"
RENDERED = REPO_ROOT / ".local" / "scan" / "template.json"
# Placeholders for the parameters without defaults; the defaults decide every condition, as in a first deploy,
# except the optional lore explorer, turned on so that its bucket, distribution and CORS methods are scanned.
DEPLOY_PARAMETERS = {
    "VpcId": "vpc-12345678",
    "PrivateSubnetIds": "subnet-1111aaaa,subnet-2222bbbb",
    "LoreExplorer": "true",
}
# Stacks deployed as written (no transform), scanned beside the application's.
OTHER_TEMPLATES = ("pipeline/roles.yaml", "images/template.yaml")
BANDIT_PATHS = (
    "layers/knowledge/knowledge",
    "layers/fleet/fleet",
    "functions",
    "gpu_hosts",
    "images",
    "cli",
    "fleet_sim",
    "knowledge_client",
    "local_runtime",
    "bench",
)
BANDIT_EXCLUDED = ("*_pb2.py", "*/tests/*")


class ScanError(RuntimeError):
    """A scanner could not run or the suppressions file is malformed."""


@dataclass(frozen=True, slots=True)
class Finding:
    tool: str
    id: str
    where: str  # checkov: "[<file>:]<Type>.<LogicalId>"; bandit: the file, relative to the repository
    line: int
    what: str

    def __str__(self) -> str:
        at = f"{self.where}:{self.line}" if self.line else self.where
        return f"{self.tool} {self.id} {at}: {self.what}"


@dataclass(frozen=True, slots=True)
class Suppression:
    tool: str
    id: str
    patterns: tuple[str, ...]  # globs over Finding.where
    reason: str

    def matches(self, finding: Finding) -> bool:
        return (
            finding.tool == self.tool
            and finding.id == self.id
            and any(fnmatch.fnmatchcase(finding.where, p) for p in self.patterns)
        )


def load_suppressions(path: Path = SUPPRESSIONS) -> list[Suppression]:
    """Every entry needs an id, its resources (checkov) or paths (bandit), and a reason."""
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    found: list[Suppression] = []
    for tool, key in (("checkov", "resources"), ("bandit", "paths")):
        for number, entry in enumerate(document.get(tool) or [], start=1):
            where = f"{path.name}: {tool} entry {number}"
            if not isinstance(entry, dict) or not str(entry.get("id", "")).strip():
                raise ScanError(f"{where} has no id")
            patterns = entry.get(key)
            if (
                not isinstance(patterns, list)
                or not patterns
                or not all(isinstance(p, str) for p in patterns)
            ):
                raise ScanError(f"{where} ({entry['id']}) needs a non-empty list of {key}")
            if len(str(entry.get("reason", "")).split()) < 4:
                raise ScanError(f"{where} ({entry['id']}) needs a reason that says why")
            found.append(Suppression(tool, str(entry["id"]), tuple(patterns), str(entry["reason"])))
    unknown = set(document) - {"checkov", "bandit"}
    if unknown:
        raise ScanError(f"{path.name}: unknown sections {sorted(unknown)}")
    return found


def render_template(target: Path = RENDERED) -> Path:
    from local_runtime.template import translate

    target.parent.mkdir(parents=True, exist_ok=True)
    rendered = translate(DEPLOY_PARAMETERS).full
    # checkov evaluates Conditions with the parameters' defaults: those are the values scanned.
    for name, value in DEPLOY_PARAMETERS.items():
        rendered["Parameters"][name]["Default"] = value
    target.write_text(json.dumps(rendered, indent=1, default=str), encoding="utf-8")
    return target


def render_plain_template(relative: str) -> Path:
    """A stack deployed as written, its `Fn::ForEach` loops expanded (checkov does not expand them)."""
    from local_runtime.template import load_sam_template

    rendered = load_sam_template(REPO_ROOT / relative)
    rendered.pop("Transform", None)
    target = RENDERED.parent / (relative.replace("/", "--") + ".json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(rendered, indent=1, default=str), encoding="utf-8")
    return target


def _run_json(argv: Sequence[str]) -> Any:
    try:
        result = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False)
    except FileNotFoundError:
        raise ScanError(f"{argv[0]} is not installed (make scan installs it)") from None
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        name = Path(argv[0]).name
        raise ScanError(f"{name} gave no report (exit {result.returncode}): {' | '.join(tail)}") from None


def checkov_findings(checkov: str, template: Path, label: str = "") -> list[Finding]:
    """checkov's failed checks of one template; `label` (a file name) prefixes where each one is."""
    report = _run_json(
        [
            checkov,
            "--file",
            str(template),
            "--framework",
            "cloudformation",
            "--output",
            "json",
            "--quiet",
            "--compact",
            "--skip-download",
        ]
    )
    reports = report if isinstance(report, list) else [report]
    return [
        Finding(
            "checkov",
            f["check_id"],
            f"{label}:{f['resource']}" if label else f["resource"],
            0,
            f["check_name"],
        )
        for r in reports
        for f in r.get("results", {}).get("failed_checks", [])
    ]


def bandit_findings(bandit: str) -> list[Finding]:
    report = _run_json(
        [
            bandit,
            "--recursive",
            *BANDIT_PATHS,
            "--exclude",
            ",".join(BANDIT_EXCLUDED),
            "--format",
            "json",
            "--quiet",
            "--ignore-nosec",
        ]
    )
    return [
        Finding(
            "bandit", r["test_id"], r["filename"].removeprefix("./"), int(r["line_number"]), r["issue_text"]
        )
        for r in report.get("results", [])
    ]


def judge(
    findings: Sequence[Finding], suppressions: Sequence[Suppression]
) -> tuple[list[Finding], list[Suppression]]:
    """The findings no suppression accepts, and the suppressions that accept no finding."""
    open_findings = [f for f in findings if not any(s.matches(f) for s in suppressions)]
    unused = [s for s in suppressions if not any(s.matches(f) for f in findings)]
    return open_findings, unused


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scan", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--checkov", default=str(REPO_ROOT / ".local" / "scan-venv" / "bin" / "checkov"))
    parser.add_argument("--bandit", default=str(Path(sys.executable).parent / "bandit"))
    args = parser.parse_args(argv)
    try:
        suppressions = load_suppressions()
        findings = checkov_findings(args.checkov, render_template())
        for other in OTHER_TEMPLATES:
            findings += checkov_findings(args.checkov, render_plain_template(other), label=other)
        findings += bandit_findings(args.bandit)
    except ScanError as exc:
        print(f"scan: {exc}", file=sys.stderr)
        return 2
    open_findings, unused = judge(findings, suppressions)
    for finding in open_findings:
        print(f"finding: {finding}")
    for suppression in unused:
        print(f"unused suppression: {suppression.tool} {suppression.id} {list(suppression.patterns)}")
    accepted = len(findings) - len(open_findings)
    print(
        f"scan: {len(findings)} findings, {accepted} suppressed in {SUPPRESSIONS.relative_to(REPO_ROOT)},"
        f" {len(open_findings)} open, {len(unused)} unused suppressions"
    )
    return 1 if open_findings or unused else 0


if __name__ == "__main__":
    sys.exit(main())
