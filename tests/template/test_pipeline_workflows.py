"""The GitHub Actions workflows: actionlint and shellcheck clean, every check of `make test` on a pull
request, one build deployed to staging, smoke-tested, then to production behind its environment, and AWS
reached only through the stages' OIDC roles."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from local_runtime.paths import REPO_ROOT
from local_runtime.template import load_sam_template

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
CONFIGURE_CREDENTIALS = "aws-actions/configure-aws-credentials@"


def _load(name: str) -> dict[str, Any]:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True)  # YAML 1.1 reads the key `on` as true
    return dict(workflow)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(str(s["run"]).strip() for s in _steps(job) if "run" in s)


def test_actionlint_and_shellcheck_are_clean() -> None:
    result = _run(str(BIN / "actionlint"))
    assert result.returncode == 0, result.stdout + result.stderr
    result = _run(str(BIN / "shellcheck"), "pipeline/deploy.sh")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_pull_request_runs_every_check_of_make_test() -> None:
    pull_request = _load("pull-request.yml")
    assert pull_request["on"] == {"pull_request": {"branches": ["main"]}}
    assert pull_request["jobs"] == {"checks": {"uses": "./.github/workflows/checks.yml"}}
    checks = _load("checks.yml")
    assert checks["on"] == {"workflow_call": None}
    commands = {name: _runs(job) for name, job in checks["jobs"].items()}
    assert sorted(commands.values()) == sorted(
        f"make {t}" for t in ("lint", "typecheck", "validate", "scan", "coverage", "test-functional")
    )
    for job in checks["jobs"].values():
        [python] = [s for s in _steps(job) if s.get("uses", "").startswith("actions/setup-python@")]
        assert python["with"]["python-version"] == "3.12" and python["with"]["cache"] == "pip"
    assert checks["permissions"] == {"contents": "read"}


def test_the_coverage_threshold_is_the_one_documented() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    [threshold] = re.findall(r"^COVERAGE_MIN := (\d+)$", makefile, re.MULTILINE)
    assert "--cov-fail-under=$(COVERAGE_MIN)" in makefile
    assert f"fails under {threshold} %" in (WORKFLOWS / "checks.yml").read_text()
    assert f"{threshold} %" in (REPO_ROOT / "docs" / "deploy.md").read_text()


def test_main_is_built_once_then_staging_smoke_then_production() -> None:
    release = _load("release.yml")
    assert release["on"] == {"push": {"branches": ["main"]}}
    assert release["concurrency"] == {"group": "release", "cancel-in-progress": False}
    jobs = release["jobs"]
    assert jobs["checks"] == {"uses": "./.github/workflows/checks.yml"}
    builders = [name for name, job in jobs.items() if "make build" in _runs(job) or "sam build" in _runs(job)]
    assert builders == ["build"] and jobs["build"]["needs"] == "checks"
    assert jobs["deploy-staging"]["needs"] == "build"
    assert jobs["smoke-staging"]["needs"] == "deploy-staging"
    assert sorted(jobs["deploy-production"]["needs"]) == ["build", "smoke-staging"]
    assert "python -m cli.smoke --stack" in _runs(jobs["smoke-staging"])
    for name, stage in (("deploy-staging", "staging"), ("deploy-production", "prod")):
        job = jobs[name]
        [download] = [s for s in _steps(job) if s.get("uses", "").startswith("actions/download-artifact@")]
        assert download["with"]["name"] == "sam-build"
        [deploy] = [s for s in _steps(job) if "pipeline/deploy.sh" in str(s.get("run", ""))]
        assert deploy["run"] == f"pipeline/deploy.sh {stage}"
        assert deploy["env"]["ARTIFACT_DIGEST"] == "${{ needs.build.outputs.digest }}"


def test_aws_is_reached_only_through_each_environments_oidc_role() -> None:
    roles = load_sam_template(REPO_ROOT / "pipeline" / "roles.yaml")
    environments = roles["Parameters"]["GitHubEnvironment"]["AllowedValues"]
    release = _load("release.yml")
    assert release["permissions"] == {"contents": "read"}
    seen = set()
    for name, job in release["jobs"].items():
        credentials = [s for s in _steps(job) if s.get("uses", "").startswith(CONFIGURE_CREDENTIALS)]
        if not credentials:
            assert "id-token" not in job.get("permissions", {}), name
            continue
        # The token's subject is repo:OWNER/NAME:environment:<name>, which is all the role trusts.
        assert job["environment"] in environments, name
        assert job["permissions"] == {"contents": "read", "id-token": "write"}, name
        for step in credentials:
            assert set(step["with"]) == {"role-to-assume", "role-session-name", "aws-region"}
            assert step["with"]["role-to-assume"] == "${{ vars.PIPELINE_EXECUTION_ROLE }}"
        seen.add(job["environment"])
    assert seen == set(environments)
    assert release["jobs"]["deploy-production"]["environment"] == "production"
    for path in WORKFLOWS.glob("*.yml"):
        text = path.read_text()
        assert "aws-access-key-id" not in text and "secrets.AWS" not in text, path.name


@pytest.mark.parametrize("config_env", ["staging", "prod"])
def test_each_stage_the_pipeline_deploys_is_in_samconfig(config_env: str) -> None:
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())[config_env]
    stack = config["global"]["parameters"]["stack_name"]
    assert re.fullmatch(r"[a-z][a-z0-9-]{0,31}", stack)  # pipeline/roles.yaml's ApplicationStackName
    overrides = config["deploy"]["parameters"]["parameter_overrides"]
    assert f"Stage={config_env}" in overrides
    if config_env == "staging":
        # The smoke test's fleet check and staging's own controller only decide, never scale.
        assert "ControllerDryRun=true" in overrides


def test_deploy_refuses_an_archive_that_is_not_the_build_jobs(tmp_path: Path) -> None:
    archive = tmp_path / "sam-build.tgz"
    archive.write_bytes(b"not the build")
    env = {
        "PATH": os.environ["PATH"],  # no sam here: the script must stop before it would run it
        "ARTIFACT": str(archive),
        "ARTIFACT_DIGEST": "0" * 64,
        "ARTIFACTS_BUCKET": "artifacts",
        "CLOUDFORMATION_EXECUTION_ROLE": "arn:aws:iam::123456789012:role/deploy",
        "GITHUB_SHA": "abc",
        "GITHUB_OUTPUT": str(tmp_path / "output"),
    }
    script = str(REPO_ROOT / "pipeline" / "deploy.sh")
    result = subprocess.run([script, "staging"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "is not the build job's archive" in result.stdout, result
    del env["ARTIFACTS_BUCKET"]
    result = subprocess.run([script, "staging"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "ARTIFACTS_BUCKET" in result.stderr, result
    assert not (tmp_path / "output").exists()
