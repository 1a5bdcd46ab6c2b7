"""The knowledge API deployed on the local runtime (moto API Gateway resources, the function invoked through
moto's Lambda, the embedded PostgreSQL): every route, the client end to end, and `kb --target aws`."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from cli.kb import main as kb
from cli.openapi import REGENERATE
from cli.openapi import main as openapi_main
from knowledge.adapters.postgres import documents
from knowledge.embedding.hashing import HashEmbedder
from knowledge.model import Chunk, ConceptSpec, RelationshipSpec
from knowledge_client import KnowledgeClient, NotFoundError, ValidationError
from local_runtime.api_gateway import LoopbackApi

EMBEDDER = HashEmbedder(384)
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
COURT = "Queen Ysolde rules the Ember Court from Kharos Keep"


def _seed(cloud: Any) -> None:
    texts = [COURT, "The Hearth-Lords tithe fire each winter"]
    concepts = [
        ConceptSpec("Queen Ysolde", "character", "Queen of Emberfall"),
        ConceptSpec("Hearth-Lords", "faction", "Lords of the fire"),
    ]
    with cloud.database.transaction() as conn:
        documents.store_document(
            conn,
            documents.DocumentToStore(
                world_id="emberfall",
                s3_key="incoming/emberfall/court.md",
                title="court.md",
                media_type="text/markdown",
                content_sha256="a" * 64,
                size_bytes=100,
                embedding_model=cloud.embedding_environment["EMBEDDING_MODEL_ID"],
                chunks=[
                    Chunk(i, f"Part {i}", t, i * 100, i * 100 + len(t), len(t.split()))
                    for i, t in enumerate(texts)
                ],
                chunk_vectors=EMBEDDER.embed(texts),
                concepts=concepts,
                concept_vectors=EMBEDDER.embed([c.description for c in concepts]),
                relationships=[RelationshipSpec("Hearth-Lords", "Queen Ysolde", "serves")],
                metadata={},
            ),
        )
        for n in range(3):
            conn.execute(
                "INSERT INTO story_events (event_id, world_id, occurred_at, kind, summary, payload, concept_ids)"
                " VALUES (%s, 'emberfall', %s, 'scene', %s, %s, %s)",
                (f"e{n}", T0 + timedelta(minutes=n), f"scene {n}", Jsonb({}), []),
            )


@pytest.fixture
def cloud(make_cloud: Any) -> Any:
    workflow = make_cloud(embedding_provider="hash")
    _seed(workflow.cloud)
    return workflow.cloud


def _json(response: dict[str, Any]) -> tuple[int, Any]:
    return response["statusCode"], json.loads(response["body"])


def test_the_template_deploys_the_api_and_every_route_answers(cloud: Any) -> None:
    apigateway = boto3.client("apigateway", region_name="us-east-1")
    api_id = cloud.physical_ids["KnowledgeApi"]
    methods = {
        (method, resource["path"]): resource["resourceMethods"][method]
        for resource in apigateway.get_resources(restApiId=api_id, embed=["methods"])["items"]
        for method in resource.get("resourceMethods", {})
    }
    assert set(methods) == {
        ("POST", "/search"),
        ("POST", "/context"),
        ("GET", "/worlds/{world_id}/concepts/{name}/history"),
        ("GET", "/concepts/{concept_id}/relationships"),
        ("GET", "/worlds/{world_id}/events"),
    }
    assert {m["authorizationType"] for m in methods.values()} == {"AWS_IAM"}

    status, found = _json(
        cloud.api_request("POST", "/search", {"query": COURT, "world_id": "emberfall", "k": 2})
    )
    assert status == 200 and found["hits"][0]["text"] == COURT
    assert found["hits"][0]["citation"]["document_key"] == "incoming/emberfall/court.md"
    status, hybrid = _json(
        cloud.api_request("POST", "/search", {"query": "tithe fire", "world_id": "emberfall", "hybrid": True})
    )
    assert status == 200 and hybrid["hybrid"] is True and hybrid["hits"]

    status, pack = _json(
        cloud.api_request(
            "POST", "/context", {"world_id": "emberfall", "situation": COURT, "token_budget": 200}
        )
    )
    assert status == 200 and pack["tokens_used"] <= 200 and pack["chunks"]
    assert {c["name"] for c in pack["concepts"]} >= {"Queen Ysolde"}

    status, history = _json(cloud.api_request("GET", "/worlds/emberfall/concepts/queen%20ysolde/history"))
    assert status == 200 and history["name"] == "Queen Ysolde"
    assert history["versions"][0]["source_document_key"] == "incoming/emberfall/court.md"

    status, graph = _json(
        cloud.api_request(
            "GET",
            f"/concepts/{history['concept_id']}/relationships",
            query={"world_id": "emberfall", "depth": "2", "type": "serves"},
        )
    )
    assert status == 200 and [e["type"] for e in graph["edges"]] == ["serves"]
    assert {n["name"] for n in graph["nodes"]} == {"Queen Ysolde", "Hearth-Lords"}

    status, page = _json(cloud.api_request("GET", "/worlds/emberfall/events", query={"limit": "2"}))
    assert status == 200 and [e["event_id"] for e in page["events"]] == ["e0", "e1"]
    status, rest = _json(
        cloud.api_request("GET", "/worlds/emberfall/events", query={"cursor": page["next_cursor"]})
    )
    assert [e["event_id"] for e in rest["events"]] == ["e2"] and rest["next_cursor"] is None

    for method, path, body, query in [
        ("POST", "/search", {"query": "x", "world_id": "tidewatch"}, None),
        ("GET", "/worlds/emberfall/concepts/Nobody/history", None, None),
        ("GET", "/concepts/999999/relationships", None, {"world_id": "emberfall"}),
        ("GET", "/worlds/tidewatch/events", None, None),
    ]:
        assert cloud.api_request(method, path, body, query=query)["statusCode"] == 404


def test_the_client_end_to_end_through_the_real_handler_and_the_cli_aws_target(
    cloud: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with LoopbackApi(cloud.invoke_api) as server:
        client = KnowledgeClient(
            server.url,
            region="us-east-1",
            credentials=Credentials("testing", "testing"),
            opener=urllib.request.build_opener(urllib.request.ProxyHandler({})),
        )
        assert client.search(COURT, "emberfall", k=1).hits[0].text == COURT
        assert client.concept_history("emberfall", "Queen Ysolde").current_version == 1
        assert [e.event_id for e in client.iter_events("emberfall", page_size=2)] == ["e0", "e1", "e2"]
        with pytest.raises(NotFoundError) as missing:
            client.concept_history("emberfall", "Nobody")
        assert missing.value.code == "concept_not_found"
        with pytest.raises(ValidationError):
            client.search("", "emberfall")
        assert server.requests[0]["headers"]["Authorization"].startswith("AWS4-HMAC-SHA256")

        # A deployed stack, as far as `kb --target aws` can tell: its outputs name the API's URL.
        boto3.client("cloudformation", region_name="us-east-1").create_stack(
            StackName="kb-deployed",
            TemplateBody=json.dumps(
                {
                    "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
                    "Outputs": {"KnowledgeApiUrl": {"Value": server.url}},
                }
            ),
        )
        aws = ["--world", "emberfall", "--json", "--target", "aws", "--stack-name", "kb-deployed"]
        capsys.readouterr()
        assert kb(["search", COURT, "--k", "2", *aws]) == 0
        hits = json.loads(capsys.readouterr().out)
        assert hits[0]["text"] == COURT and set(hits[0]) == {
            "rank", "score", "document", "title", "heading", "text", "start", "end", "world"
        }  # fmt: skip
        assert kb(["context", "who rules the court", "--budget", "300", *aws]) == 0
        assert json.loads(capsys.readouterr().out)["token_budget"] == 300
        assert kb(["search", "anything", *aws[:-4], "--target", "aws", "--stack-name", "kb-deployed"]) == 0
        assert (
            kb(["context", "x", "--world", "tidewatch", "--target", "aws", "--stack-name", "kb-deployed"])
            == 1
        )
        with pytest.raises(SystemExit, match="--stack-name"):
            kb(["search", "x", "--world", "emberfall", "--target", "aws"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.fixed_dictionaries(
        {"query": st.text(max_size=80), "world_id": st.sampled_from(["emberfall", "tidewatch", "x--y"])},
        optional={
            "k": st.integers(-2, 60),
            "hybrid": st.booleans(),
            "filters": st.dictionaries(
                st.sampled_from(["tags", "concepts", "key_prefix", "metadata", "media_types"]),
                st.lists(st.text(max_size=20), max_size=3) | st.text(max_size=20),
                max_size=3,
            ),
        },
    ),
    name=st.text(min_size=1, max_size=40).map(lambda s: s.replace("/", "")).filter(bool),
)
def test_hostile_input_against_the_real_database_never_5xx(cloud: Any, body: Any, name: str) -> None:
    from urllib.parse import quote

    assert cloud.api_request("POST", "/search", body)["statusCode"] < 500
    path = f"/worlds/emberfall/concepts/{quote(name, safe='')}/history"
    assert cloud.api_request("GET", path)["statusCode"] < 500


def test_the_committed_openapi_document_is_current() -> None:
    assert openapi_main(["--check"]) == 0, f"docs/openapi.json is stale: run {REGENERATE}"
