"""pipeline/roles.yaml: the deploy role trusts only this repository's GitHub environment of its stage, may
pass only the CloudFormation execution role, and no role is an administrator; the execution role covers
exactly the services template.yaml deploys."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.smoke import SMOKE_PREFIX
from local_runtime.paths import REPO_ROOT
from local_runtime.template import load_sam_template, translate

ROLES = REPO_ROOT / "pipeline" / "roles.yaml"
BIN = Path(sys.executable).parent
OIDC = "token.actions.githubusercontent.com"
DEPLOY_PARAMETERS = {"VpcId": "vpc-12345678", "PrivateSubnetIds": "subnet-1111aaaa,subnet-2222bbbb"}
# The IAM service prefix of each CloudFormation resource namespace template.yaml uses.
SERVICE_OF = {
    "ApiGateway": "apigateway",
    "AutoScaling": "autoscaling",
    "Backup": "backup",
    "Chatbot": "chatbot",
    "CloudFront": "cloudfront",
    "CloudWatch": "cloudwatch",
    "CodeDeploy": "codedeploy",
    "DynamoDB": "dynamodb",
    "EC2": "ec2",
    "Events": "events",
    "IAM": "iam",
    "KMS": "kms",
    "Lambda": "lambda",
    "Logs": "logs",
    "RDS": "rds",
    "S3": "s3",
    "SNS": "sns",
    "SQS": "sqs",
    "SSM": "ssm",
    "SecretsManager": "secretsmanager",
    "StepFunctions": "states",
}
# Services the execution role needs beyond the resources' own: a backup vault's storage, the transforms, and
# the CodeDeploy deployments CloudFormation starts to shift a function alias with a DeploymentPreference.
SUPPORTING_SERVICES = {"backup-storage", "cloudformation", "codedeploy"}
ADMIN_POLICIES = ("AdministratorAccess", "PowerUserAccess", "IAMFullAccess")


@pytest.fixture(scope="module")
def roles() -> dict[str, Any]:
    return load_sam_template(ROLES)


def _resources(roles: dict[str, Any]) -> dict[str, Any]:
    return dict(roles["Resources"])


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(roles: dict[str, Any], role: str) -> Iterator[dict[str, Any]]:
    """Every statement that grants the role something: its inline policies and the policies naming it."""
    resources = _resources(roles)
    for policy in resources[role]["Properties"].get("Policies", []):
        yield from policy["PolicyDocument"]["Statement"]
    for resource in resources.values():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role} in resource["Properties"]["Roles"]:
            yield from resource["Properties"]["PolicyDocument"]["Statement"]


def _sub(value: Any) -> str:
    assert isinstance(value, dict) and set(value) == {"Fn::Sub"}, value
    return str(value["Fn::Sub"])


def _deployed_resource_types() -> set[str]:
    """Every type template.yaml may deploy: its own resources (whatever their condition) and what the SAM
    transform turns them into."""
    sam = load_sam_template()
    types = {r["Type"] for r in sam["Resources"].values()}
    types |= {r["Type"] for r in translate(DEPLOY_PARAMETERS).full["Resources"].values()}
    return {t for t in types if t.startswith("AWS::") and not t.startswith("AWS::Serverless::")}


def test_cfn_lint_is_clean() -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [str(BIN / "cfn-lint"), str(ROLES)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_deploy_role_trusts_only_this_repositorys_environment_of_its_stage(roles: dict[str, Any]) -> None:
    [statement] = _resources(roles)["PipelineExecutionRole"]["Properties"]["AssumeRolePolicyDocument"][
        "Statement"
    ]
    assert statement["Effect"] == "Allow" and statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"]["Federated"] == {
        "Fn::If": ["CreateOidcProvider", {"Ref": "GitHubOidcProvider"}, {"Ref": "ExistingOidcProviderArn"}]
    }
    # Exact matches only: no StringLike, so no branch, pull request or other repository gets in.
    assert set(statement["Condition"]) == {"StringEquals"}
    condition = statement["Condition"]["StringEquals"]
    assert condition[f"{OIDC}:aud"] == "sts.amazonaws.com"
    assert (
        _sub(condition[f"{OIDC}:sub"]) == "repo:${GitHubOrg}/${GitHubRepo}:environment:${GitHubEnvironment}"
    )
    parameters = roles["Parameters"]
    assert parameters["GitHubEnvironment"]["AllowedValues"] == ["staging", "production"]
    for name in ("GitHubOrg", "GitHubRepo"):
        assert "*" not in parameters[name]["AllowedPattern"] and "Default" not in parameters[name]


def test_the_oidc_provider_is_githubs_or_an_existing_one(roles: dict[str, Any]) -> None:
    provider = _resources(roles)["GitHubOidcProvider"]
    assert provider["Condition"] == "CreateOidcProvider"
    assert provider["Properties"]["Url"] == f"https://{OIDC}"
    assert provider["Properties"]["ClientIdList"] == ["sts.amazonaws.com"]
    assert roles["Conditions"]["CreateOidcProvider"] == {
        "Fn::Equals": [{"Ref": "ExistingOidcProviderArn"}, ""]
    }


def test_the_execution_role_is_for_cloudformation_of_this_account_only(roles: dict[str, Any]) -> None:
    [statement] = _resources(roles)["CloudFormationExecutionRole"]["Properties"]["AssumeRolePolicyDocument"][
        "Statement"
    ]
    assert statement["Principal"] == {"Service": "cloudformation.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_no_role_is_an_administrator(roles: dict[str, Any]) -> None:
    for role in ("PipelineExecutionRole", "CloudFormationExecutionRole"):
        properties = _resources(roles)[role]["Properties"]
        assert not any(
            name in str(arn) for arn in properties.get("ManagedPolicyArns", []) for name in ADMIN_POLICIES
        )
        for statement in _statements(roles, role):
            assert statement["Effect"] == "Allow"
            assert "NotAction" not in statement and "NotResource" not in statement, statement
            for action in _as_list(statement["Action"]):
                assert action != "*" and not action.startswith(("iam:*", "sts:*", "organizations:")), (
                    role,
                    action,
                )


def test_the_deploy_role_passes_only_the_execution_role_and_only_to_cloudformation(
    roles: dict[str, Any],
) -> None:
    passing = [
        s for s in _statements(roles, "PipelineExecutionRole") if "iam:PassRole" in _as_list(s["Action"])
    ]
    assert passing == [
        {
            "Sid": "PassOnlyTheExecutionRole",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": {"Fn::GetAtt": ["CloudFormationExecutionRole", "Arn"]},
            "Condition": {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}},
        }
    ]
    # No other IAM action at all: the deploy role cannot make itself a role.
    iam = [
        a
        for s in _statements(roles, "PipelineExecutionRole")
        for a in _as_list(s["Action"])
        if a.startswith("iam:")
    ]
    assert iam == ["iam:PassRole"]


def test_the_deploy_role_changes_only_its_stack_and_writes_only_the_artifacts_bucket(
    roles: dict[str, Any],
) -> None:
    stack = "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/${ApplicationStackName}/*"
    for statement in _statements(roles, "PipelineExecutionRole"):
        actions = _as_list(statement["Action"])
        resources = _as_list(statement["Resource"])
        if statement["Sid"] == "ChangeSetsOfTheStack":
            assert [_sub(r) for r in resources] == [stack]
            assert all(a.startswith("cloudformation:") for a in actions)
        elif statement["Sid"] == "TheTemplatesTransforms":
            assert actions == ["cloudformation:CreateChangeSet"]
            assert all(":aws:transform/" in _sub(r) for r in resources)
        elif statement["Sid"] == "TemplateChecks":
            assert actions == ["cloudformation:ValidateTemplate"]  # has no resource-level permissions
        elif statement["Sid"] == "ArtifactsBucket":
            assert resources == [
                {"Fn::GetAtt": ["ArtifactsBucket", "Arn"]},
                {"Fn::Sub": "${ArtifactsBucket.Arn}/*"},
            ]
            assert "s3:DeleteObject" not in actions
        elif statement["Sid"] == "SmokeDocuments":
            assert actions == ["s3:PutObject", "s3:DeleteObject"]
            assert _sub(statement["Resource"]).endswith(f"-documentsbucket-*/{SMOKE_PREFIX}*")
        elif statement["Sid"] == "ExplorerFiles":
            assert "s3:PutObject" in actions and not [a for a in actions if a.endswith("*")]
            assert [_sub(r) for r in resources] == [
                "arn:${AWS::Partition}:s3:::${ApplicationStackName}-explorerbucket-*",
                "arn:${AWS::Partition}:s3:::${ApplicationStackName}-explorerbucket-*/*",
            ]
        elif statement["Sid"] == "ExplorerCache":
            assert actions == ["cloudfront:CreateInvalidation", "cloudfront:GetInvalidation"]
        elif statement["Sid"] == "PassOnlyTheExecutionRole":
            continue  # test_the_deploy_role_passes_only_the_execution_role_and_only_to_cloudformation
        elif any(a.startswith(("s3:", "cloudformation:")) for a in actions):
            pytest.fail(f"unexpected S3 or CloudFormation grant: {statement}")
        else:
            # What is left is read only (the host images, the smoke test's API calls and fleet reads).
            read_only = ("Get", "Describe", "List")
            calls = ("execute-api:Invoke", "apigateway:GET")  # the API's two routes; reading its key
            assert all(a in calls or a.split(":")[1].startswith(read_only) for a in actions), statement


def test_the_execution_role_manages_iam_only_for_the_stacks_own_roles(roles: dict[str, Any]) -> None:
    for statement in _statements(roles, "CloudFormationExecutionRole"):
        actions = [a for a in _as_list(statement["Action"]) if a.startswith("iam:")]
        if not actions:
            continue
        if statement["Sid"] == "ServiceLinkedRoles":
            assert actions == ["iam:CreateServiceLinkedRole"] and "iam:AWSServiceName" in str(statement)
        elif statement["Sid"] == "ManagedPoliciesTheStackAttaches":
            assert actions == ["iam:GetPolicy", "iam:GetPolicyVersion"]
        elif statement["Sid"] == "TheManagedPoliciesTheStackAttaches":
            assert (
                actions == ["iam:AttachRolePolicy"] and "iam:PolicyARN" in statement["Condition"]["ArnEquals"]
            )
        else:
            assert statement["Sid"] == "TheStacksRoles"
            assert [_sub(r) for r in statement["Resource"]] == [
                "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${ApplicationStackName}-*",
                "arn:${AWS::Partition}:iam::${AWS::AccountId}:instance-profile/${ApplicationStackName}-*",
            ]
            assert not {"iam:CreateUser", "iam:CreateAccessKey", "iam:CreatePolicyVersion"} & set(actions)


def _attached_managed_policies() -> set[str]:
    """Every AWS managed policy a role of template.yaml attaches, under each optional part of the stack."""
    found: set[str] = set()
    for extra in ({}, {"LoreExplorer": "true", "AlarmSlackWorkspaceId": "T0", "AlarmSlackChannelId": "C0"}):
        resources = translate({**DEPLOY_PARAMETERS, **extra}).full["Resources"]
        for resource in resources.values():
            if resource["Type"] == "AWS::IAM::Role":
                for arn in resource["Properties"].get("ManagedPolicyArns", []):
                    text = arn if isinstance(arn, str) else _sub(arn)
                    found.add(text.replace("arn:aws:", "arn:${AWS::Partition}:"))
    return found


def test_the_execution_role_attaches_only_the_managed_policies_the_template_names(
    roles: dict[str, Any],
) -> None:
    attach = [
        s
        for s in _statements(roles, "CloudFormationExecutionRole")
        if "iam:AttachRolePolicy" in _as_list(s["Action"])
    ]
    assert [s["Sid"] for s in attach] == ["TheManagedPoliciesTheStackAttaches"]
    allowed = {_sub(arn) for arn in attach[0]["Condition"]["ArnEquals"]["iam:PolicyARN"]}
    assert allowed == _attached_managed_policies()
    assert not any(name in arn for arn in allowed for name in ADMIN_POLICIES)


def test_the_execution_role_covers_exactly_the_services_the_template_deploys(roles: dict[str, Any]) -> None:
    types = _deployed_resource_types()
    unknown = sorted(t for t in types if t.split("::")[1] not in SERVICE_OF)
    assert not unknown, f"map these resource types to their IAM service in SERVICE_OF: {unknown}"
    needed = {SERVICE_OF[t.split("::")[1]] for t in types}
    granted = {
        action.split(":")[0]
        for statement in _statements(roles, "CloudFormationExecutionRole")
        for action in _as_list(statement["Action"])
    }
    assert needed - granted == set(), "template.yaml deploys resources the execution role cannot create"
    assert granted - needed - SUPPORTING_SERVICES == set(), "the execution role grants services nothing uses"


def test_the_stack_name_keeps_generated_names_under_the_policies_prefixes(roles: dict[str, Any]) -> None:
    pattern = roles["Parameters"]["ApplicationStackName"]["AllowedPattern"]
    assert pattern == "^[a-z][a-z0-9-]{0,31}$"  # lower case (bucket names) and short (role names keep it)
