"""The knowledge API in template.yaml: IAM on every method, optional API key and usage plan, the function's
network and least-privilege policies, routes in step with docs/openapi.json."""

from __future__ import annotations

import json
from typing import Any

from local_runtime.paths import REPO_ROOT
from local_runtime.template import load_sam_template, translate

PARAMETERS = {"VpcId": "vpc-12345678", "PrivateSubnetIds": "subnet-1111aaaa,subnet-2222bbbb"}


def _of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: r for k, r in resources.items() if r["Type"] == kind}


def _paths(resources: dict[str, Any]) -> dict[str, str]:
    """Resource logical id -> full path, following ParentId up to the root."""
    paths: dict[str, str] = {}

    def path(logical_id: str) -> str:
        if logical_id not in paths:
            props = resources[logical_id]["Properties"]
            parent = props["ParentId"]
            prefix = "" if "Fn::GetAtt" in parent else path(parent["Ref"])
            paths[logical_id] = f"{prefix}/{props['PathPart']}"
        return paths[logical_id]

    for logical_id in _of_type(resources, "AWS::ApiGateway::Resource"):
        path(logical_id)
    return paths


def test_every_method_needs_iam_and_the_methods_are_the_openapi_routes() -> None:
    resources = load_sam_template()["Resources"]
    methods = _of_type(resources, "AWS::ApiGateway::Method")
    # The lore explorer's CORS preflights (OPTIONS, no authorization): tests/template/test_explorer_template.py.
    methods = {k: m for k, m in methods.items() if m["Properties"]["HttpMethod"] != "OPTIONS"}
    paths = _paths(resources)
    routes = set()
    for method in methods.values():
        props = method["Properties"]
        assert props["AuthorizationType"] == "AWS_IAM"
        assert props["ApiKeyRequired"] == {"Fn::If": ["RequireApiKey", True, False]}
        assert props["Integration"]["Type"] == "AWS_PROXY"
        # The writing routes run in a function of their own (a database role that may delete or write worlds).
        path = paths[props["ResourceId"]["Ref"]]
        writes = (props["HttpMethod"], path) in {
            ("DELETE", "/worlds/{world_id}/players/{player_id}"),
            ("PUT", "/worlds/{world_id}"),
        }
        function = "KnowledgeApiErasureFunction" if writes else "KnowledgeApiFunction"
        # Through the function's live alias, so that a release's traffic shifting is what the API gets.
        text, variables = props["Integration"]["Uri"]["Fn::Sub"]
        assert "/functions/${Alias}/invocations" in text and variables == {
            "Alias": {"Ref": f"{function}.Alias"}
        }
        routes.add((props["HttpMethod"].lower(), paths[props["ResourceId"]["Ref"]]))
    openapi = json.loads((REPO_ROOT / "docs" / "openapi.json").read_text())
    assert routes == {(m, p) for p, item in openapi["paths"].items() for m in item}
    deployment = next(iter(_of_type(resources, "AWS::ApiGateway::Deployment").values()))
    assert set(deployment["DependsOn"]) == set(methods)  # a new method is in the deployed snapshot


def test_the_api_key_and_usage_plan_exist_only_when_enabled() -> None:
    plain = translate(PARAMETERS).full["Resources"]
    assert not _of_type(plain, "AWS::ApiGateway::UsagePlan") and not _of_type(
        plain, "AWS::ApiGateway::ApiKey"
    )

    keyed = translate({**PARAMETERS, "ApiKeyRequired": "true"}).full["Resources"]
    (plan,) = _of_type(keyed, "AWS::ApiGateway::UsagePlan").values()
    assert plan["Properties"]["ApiStages"] == [
        {"ApiId": {"Ref": "KnowledgeApi"}, "Stage": {"Ref": "KnowledgeApiStage"}}
    ]
    assert set(plan["Properties"]["Throttle"]) == {"RateLimit", "BurstLimit"}
    (key,) = _of_type(keyed, "AWS::ApiGateway::UsagePlanKey").values()
    assert key["Properties"]["KeyId"] == {"Ref": "KnowledgeApiKey"}
    stage = keyed["KnowledgeApiStage"]["Properties"]
    assert stage["TracingEnabled"] is True and stage["MethodSettings"][0]["ThrottlingRateLimit"]


def test_the_function_runs_in_the_vpc_with_least_privilege() -> None:
    sam = load_sam_template()["Resources"]["KnowledgeApiFunction"]["Properties"]
    assert sam["VpcConfig"] == {
        "SecurityGroupIds": [{"Ref": "FunctionSecurityGroup"}],
        "SubnetIds": {"Ref": "PrivateSubnetIds"},
    }
    assert sam["Timeout"] < 29  # API Gateway's integration timeout
    statements = [s for policy in sam["Policies"] for s in policy["Statement"]]
    # and what the stack's shared policies grant the function's role (the database secret)
    for resource in load_sam_template()["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy":
            properties = resource["Properties"]
            if {"Ref": "KnowledgeApiFunctionRole"} in properties["Roles"]:
                statements += properties["PolicyDocument"]["Statement"]
    # Rerank (search's second stage) is granted only with a rerank model; it has no resource type to scope to.
    conditional = [s["Fn::If"] for s in statements if "Fn::If" in s]
    assert conditional == [
        [
            "HasRerankModel",
            {"Effect": "Allow", "Action": "bedrock:Rerank", "Resource": "*"},
            {"Ref": "AWS::NoValue"},
        ]
    ]
    statements = [s for s in statements if "Fn::If" not in s]
    assert sorted(s["Action"] for s in statements) == ["bedrock:InvokeModel", "secretsmanager:GetSecretValue"]
    assert all(s["Effect"] == "Allow" and "*" not in json.dumps(s["Resource"]) for s in statements)
    environment = sam["Environment"]["Variables"]
    assert environment["RERANK_MODEL_ARN"]["Fn::If"][0] == "HasRerankModel"

    resources = translate(PARAMETERS).full["Resources"]
    permission = resources["KnowledgeApiInvokePermission"]["Properties"]
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert "${KnowledgeApi}/" in permission["SourceArn"]["Fn::Sub"]


def test_the_database_proxy_is_optional_and_fronts_the_created_cluster() -> None:
    assert "DatabaseProxy" not in translate(PARAMETERS).full["Resources"]
    resources = translate({**PARAMETERS, "CreateDatabaseProxy": "true"}).full["Resources"]
    proxy = resources["DatabaseProxy"]["Properties"]
    assert proxy["EngineFamily"] == "POSTGRESQL" and proxy["RequireTLS"] is True
    targets = resources["DatabaseProxyTargetGroup"]["Properties"]
    assert targets["DBClusterIdentifiers"] == [{"Ref": "DatabaseCluster"}]
    host = resources["KnowledgeApiFunction"]["Properties"]["Environment"]["Variables"]["DB_HOST"]
    assert host["Fn::If"][0] == "UseDatabaseProxy"
    # An existing cluster is never fronted by a proxy the stack cannot target.
    existing = {
        **PARAMETERS,
        "CreateDatabaseProxy": "true",
        "ExistingDatabaseSecretArn": "arn:aws:secretsmanager:x",
    }
    assert "DatabaseProxy" not in translate(existing).full["Resources"]


def test_the_stack_outputs_the_api_url() -> None:
    output = load_sam_template()["Outputs"]["KnowledgeApiUrl"]["Value"]["Fn::Sub"]
    assert output.startswith("https://${KnowledgeApi}.execute-api.") and output.endswith(
        "/${KnowledgeApiStage}"
    )
