"""The lore explorer's hosting in template.yaml (LoreExplorer=true): a private bucket that only its CloudFront
distribution reads through origin access control, HTTPS only with security headers; and CORS on the
knowledge API for exactly the explorer's origin, with unauthenticated preflights and gateway errors that
carry the origin too."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from local_runtime.paths import REPO_ROOT
from local_runtime.template import NOT_EMULATED, translate

PARAMETERS = {"VpcId": "vpc-12345678", "PrivateSubnetIds": "subnet-1111aaaa,subnet-2222bbbb"}
HOSTED = {**PARAMETERS, "LoreExplorer": "true"}
ELSEWHERE = {**PARAMETERS, "ExplorerAllowedOrigin": "https://lore.example.com"}
DISTRIBUTION_ORIGIN = {"Fn::Sub": "https://${ExplorerDistribution.DomainName}"}
# The request headers a SigV4-signed call of cli/explorer/explorer.js sends beyond the safelisted ones.
SIGNED_HEADERS = {"authorization", "content-type", "x-amz-date", "x-amz-security-token", "x-api-key"}


def _resources(parameters: dict[str, str]) -> dict[str, Any]:
    return dict(translate(parameters).full["Resources"])


def _of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: r for k, r in resources.items() if r["Type"] == kind}


def _origin(value: Any, parameters: dict[str, str]) -> Any:
    """The origin an `Fn::If [HasExplorerAllowedOrigin, ...]` picks with these parameters."""
    condition, given, own = value["Fn::If"]
    assert condition == "HasExplorerAllowedOrigin"
    return given if parameters.get("ExplorerAllowedOrigin") else own


def _quoted_origin(value: Any, parameters: dict[str, str]) -> Any:
    """The origin of a header mapping `Fn::Sub ["'${Origin}'", {Origin: ...}]` (a quoted static value)."""
    text, variables = value["Fn::Sub"]
    assert text == "'${Origin}'"
    return _origin(variables["Origin"], parameters)


def _paths(resources: dict[str, Any]) -> dict[str, str]:
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


def _explorer_calls() -> set[tuple[str, str]]:
    """(method, API resource path) of every call cli/explorer/explorer.js makes."""
    source = (REPO_ROOT / "cli" / "explorer" / "explorer.js").read_text(encoding="utf-8")
    calls = set()
    for method, path in re.findall(r'api\("(GET|POST|PUT|DELETE)", [`"]([^`"]+)[`"]', source):
        path = re.sub(r"\$\{encodeURIComponent\(world\(\)\)\}", "{world_id}", path)
        path = re.sub(r"\$\{encodeURIComponent\(name\)\}", "{name}", path)
        path = re.sub(r"\$\{h\.concept_id\}", "{concept_id}", path)
        calls.add((method, path))
    return calls


def test_nothing_of_the_explorer_is_deployed_unless_asked() -> None:
    resources = _resources(PARAMETERS)
    assert not [k for k in resources if k.startswith("Explorer") or k.endswith("Preflight")]
    assert not _of_type(resources, "AWS::CloudFront::Distribution")
    assert not _of_type(resources, "AWS::ApiGateway::GatewayResponse")
    stage = resources["KnowledgeApiStage"]["Properties"]
    assert stage["DeploymentId"]["Fn::If"][0] == "AllowExplorerOrigin"
    assert "KnowledgeApiCorsDeploymentV1" not in resources
    variables = resources["KnowledgeApiFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["CORS_ALLOW_ORIGIN"]["Fn::If"][0] == "AllowExplorerOrigin"


def test_the_site_bucket_is_private_and_read_only_by_the_distribution() -> None:
    resources = _resources(HOSTED)
    bucket = resources["ExplorerBucket"]["Properties"]
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert bucket["BucketEncryption"] == resources["DocumentsBucket"]["Properties"]["BucketEncryption"]
    assert "WebsiteConfiguration" not in bucket  # no public website endpoint: CloudFront only
    assert bucket["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": "ExplorerLogsBucket"}
    policy = resources["ExplorerBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "ExplorerBucket"}
    allowed = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert allowed == [
        {
            "Sid": "DistributionReads",
            "Effect": "Allow",
            "Principal": {"Service": "cloudfront.amazonaws.com"},
            "Action": "s3:GetObject",
            "Resource": {"Fn::Sub": "${ExplorerBucket.Arn}/*"},
            "Condition": {
                "StringEquals": {
                    "aws:SourceArn": {
                        "Fn::Sub": "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/"
                        "${ExplorerDistribution}"
                    }
                }
            },
        }
    ]
    (deny,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    logs = resources["ExplorerLogsBucket"]["Properties"]
    assert set(logs["PublicAccessBlockConfiguration"].values()) == {True}
    assert logs["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 30


def test_the_distribution_reads_through_origin_access_control_over_https_with_security_headers() -> None:
    resources = _resources(HOSTED)
    config = resources["ExplorerDistribution"]["Properties"]["DistributionConfig"]
    (origin,) = config["Origins"]
    assert origin["DomainName"] == {"Fn::GetAtt": ["ExplorerBucket", "RegionalDomainName"]}
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["ExplorerOriginAccessControl", "Id"]}
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}  # OAC, not the legacy identity
    control = resources["ExplorerOriginAccessControl"]["Properties"]["OriginAccessControlConfig"]
    assert (
        control["OriginAccessControlOriginType"],
        control["SigningBehavior"],
        control["SigningProtocol"],
    ) == (
        "s3",
        "always",
        "sigv4",
    )
    assert config["DefaultRootObject"] == "index.html"
    behaviour = config["DefaultCacheBehavior"]
    assert behaviour["ViewerProtocolPolicy"] == "https-only"
    assert behaviour["AllowedMethods"] == ["GET", "HEAD"]
    assert behaviour["ResponseHeadersPolicyId"] == {"Ref": "ExplorerResponseHeadersPolicy"}
    assert config["Logging"]["Bucket"] == {"Fn::GetAtt": ["ExplorerLogsBucket", "DomainName"]}
    headers = resources["ExplorerResponseHeadersPolicy"]["Properties"]["ResponseHeadersPolicyConfig"]
    security = headers["SecurityHeadersConfig"]
    assert security["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    assert security["FrameOptions"]["FrameOption"] == "DENY"
    assert "ContentTypeOptions" in security and "ReferrerPolicy" in security
    policy = security["ContentSecurityPolicy"]["ContentSecurityPolicy"]["Fn::Sub"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    # The page may call this stack's API, which is what it is for.
    assert "https://${KnowledgeApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}" in policy
    assert all(v.get("Override") is True for v in security.values())


@pytest.mark.parametrize("parameters", [HOSTED, ELSEWHERE], ids=["hosted", "elsewhere"])
def test_cors_allows_exactly_the_explorers_origin(parameters: dict[str, str]) -> None:
    resources = _resources(parameters)
    expected = parameters.get("ExplorerAllowedOrigin") and {"Ref": "ExplorerAllowedOrigin"}
    expected = expected or DISTRIBUTION_ORIGIN
    assert ("ExplorerDistribution" in resources) == (parameters.get("LoreExplorer") == "true")
    variables = resources["KnowledgeApiFunction"]["Properties"]["Environment"]["Variables"]
    condition, origin, _ = variables["CORS_ALLOW_ORIGIN"]["Fn::If"]
    assert condition == "AllowExplorerOrigin" and _origin(origin, parameters) == expected
    preflights = {
        k: r for k, r in _of_type(resources, "AWS::ApiGateway::Method").items() if k.endswith("Preflight")
    }
    assert len(preflights) == 7
    for preflight in preflights.values():
        (answer,) = preflight["Properties"]["Integration"]["IntegrationResponses"]
        allowed = answer["ResponseParameters"]["method.response.header.Access-Control-Allow-Origin"]
        assert _quoted_origin(allowed, parameters) == expected
    for response in _of_type(resources, "AWS::ApiGateway::GatewayResponse").values():
        allowed = response["Properties"]["ResponseParameters"][
            "gatewayresponse.header.Access-Control-Allow-Origin"
        ]
        assert _quoted_origin(allowed, parameters) == expected
    # Never any origin: no wildcard, and no echo of the request's Origin header.
    text = json.dumps(resources)
    assert "'*'" not in text and "method.request.header.Origin" not in text


def test_every_call_of_the_explorer_has_an_unauthenticated_preflight_for_its_methods() -> None:
    resources = _resources({**HOSTED, "ApiKeyRequired": "true"})
    paths = _paths(resources)
    methods = _of_type(resources, "AWS::ApiGateway::Method")
    preflights = {
        paths[m["Properties"]["ResourceId"]["Ref"]]: m["Properties"]
        for m in methods.values()
        if m["Properties"]["HttpMethod"] == "OPTIONS"
    }
    calls = _explorer_calls()
    assert {p for _, p in calls} == set(preflights)
    for path, props in preflights.items():
        # The browser sends the preflight unsigned and without the key: API Gateway answers it itself.
        assert props["AuthorizationType"] == "NONE" and props["ApiKeyRequired"] is False
        integration = props["Integration"]
        assert integration["Type"] == "MOCK" and "Uri" not in integration
        (answer,) = integration["IntegrationResponses"]
        headers = answer["ResponseParameters"]
        route_methods = {
            m["Properties"]["HttpMethod"]
            for m in methods.values()
            if paths[m["Properties"]["ResourceId"]["Ref"]] == path
            and m["Properties"]["HttpMethod"] != "OPTIONS"
        }
        text, variables = headers["method.response.header.Access-Control-Allow-Methods"]["Fn::Sub"]
        assert text == "'${Methods}'"
        mapping = variables["Methods"]["Fn::FindInMap"]
        allowed = translate(HOSTED).full["Mappings"][mapping[0]][mapping[1]][mapping[2]]
        assert set(allowed.split(",")) == route_methods | {"OPTIONS"}
        assert {m for m, p in calls if p == path} <= route_methods
        requested = headers["method.response.header.Access-Control-Allow-Headers"].strip("'")
        assert set(requested.split(",")) == SIGNED_HEADERS
        declared = props["MethodResponses"][0]["ResponseParameters"]
        assert set(declared) == set(headers) and set(declared.values()) == {True}
    # The signed methods still need IAM (and the key) with CORS on.
    for props in (m["Properties"] for m in methods.values()):
        if props["HttpMethod"] != "OPTIONS":
            assert props["AuthorizationType"] == "AWS_IAM"


def test_gateway_errors_carry_the_origin_and_the_cors_snapshot_holds_everything() -> None:
    resources = _resources(HOSTED)
    responses = _of_type(resources, "AWS::ApiGateway::GatewayResponse")
    assert {r["Properties"]["ResponseType"] for r in responses.values()} == {"DEFAULT_4XX", "DEFAULT_5XX"}
    assert all(r["Properties"]["RestApiId"] == {"Ref": "KnowledgeApi"} for r in responses.values())
    deployment = resources["KnowledgeApiCorsDeploymentV1"]
    methods = _of_type(resources, "AWS::ApiGateway::Method")
    assert set(deployment["DependsOn"]) == set(methods) | set(responses)
    # The plain snapshot (renamed with each change of a method) when CORS is off.
    (plain,) = (k for k in _of_type(resources, "AWS::ApiGateway::Deployment") if "Cors" not in k)
    stage = resources["KnowledgeApiStage"]["Properties"]
    assert stage["DeploymentId"] == {
        "Fn::If": [
            "AllowExplorerOrigin",
            {"Ref": "KnowledgeApiCorsDeploymentV1"},
            {"Ref": plain},
        ]
    }


def test_the_local_runtime_accounts_for_the_explorers_resources() -> None:
    # translate() fails on a type the local runtime neither creates nor lists as not emulated.
    types = {r["Type"] for r in _resources(HOSTED).values()}
    hosting = {t for t in types if t.startswith("AWS::CloudFront::")} | {"AWS::ApiGateway::GatewayResponse"}
    assert hosting and hosting <= set(NOT_EMULATED)
