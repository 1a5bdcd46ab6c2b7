"""CORS for the lore explorer on the stack deployed into moto: with ExplorerAllowedOrigin set, the API's
preflights exist without authorization, and every answer of the function, errors included, names the
origin; without it, no answer does. The explorer's CloudFront hosting is never deployed locally."""

from __future__ import annotations

from typing import Any

import boto3

from local_runtime.cloud import REGION
from tests.functional.conftest import Workflow

ORIGIN = "https://lore.example.com"
EXPLORER_PATHS = {
    "/search",
    "/context",
    "/worlds",
    "/worlds/{world_id}/concepts",
    "/worlds/{world_id}/concepts/{name}/history",
    "/worlds/{world_id}/events",
    "/concepts/{concept_id}/relationships",
}


def _headers(response: dict[str, Any]) -> dict[str, str]:
    multi = {k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()}
    return {**multi, **(response.get("headers") or {})}


def test_an_allowed_origin_is_on_every_answer_and_preflights_need_no_signature(make_cloud: Any) -> None:
    # LoreExplorer=true too: the runtime keeps the hosting off (`kb serve` serves the explorer at /).
    workflow = make_cloud(
        embedding_provider="hash", parameters={"ExplorerAllowedOrigin": ORIGIN, "LoreExplorer": "true"}
    )
    cloud = workflow.cloud

    worlds = cloud.api_request("GET", "/worlds")
    unknown = cloud.api_request("GET", "/worlds/nowhere/concepts")
    malformed = cloud.api_request("POST", "/search", "{not json")

    assert (worlds["statusCode"], unknown["statusCode"], malformed["statusCode"]) == (200, 404, 400)
    for response in (worlds, unknown, malformed):
        headers = _headers(response)
        assert headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "Server-Timing" in headers["Access-Control-Expose-Headers"]
    apigateway = boto3.client("apigateway", region_name=REGION)
    items = apigateway.get_resources(
        restApiId=cloud.physical_ids["KnowledgeApi"], limit=500, embed=["methods"]
    )
    preflights = {
        item["path"]: item["resourceMethods"]["OPTIONS"]
        for item in items["items"]
        if "OPTIONS" in (item.get("resourceMethods") or {})
    }
    assert set(preflights) == EXPLORER_PATHS
    assert {m["authorizationType"] for m in preflights.values()} == {"NONE"}
    assert not [k for k in cloud.physical_ids if k.startswith("Explorer")]


def test_without_an_allowed_origin_no_answer_names_one(workflow: Workflow) -> None:
    response = workflow.cloud.api_request("GET", "/worlds")

    assert response["statusCode"] == 200
    assert not [h for h in _headers(response) if h.lower().startswith("access-control-")]
