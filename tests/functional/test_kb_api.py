"""The knowledge API deployed on the local runtime (moto API Gateway resources, the function invoked through
moto's Lambda, the embedded PostgreSQL): every route, the client end to end, and `kb --target aws`."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from cli.kb import main as kb
from cli.openapi import OPENAPI_PATH, REGENERATE
from cli.openapi import main as openapi_main
from knowledge.adapters.postgres import documents
from knowledge.embedding.hashing import HashEmbedder
from knowledge.model import Chunk, ConceptSpec, RelationshipSpec
from knowledge_client import KnowledgeClient, NotFoundError, ValidationError
from local_runtime.api_gateway import MAX_PAYLOAD_BYTES, ApiResource, LoopbackApi, RouteTable, lambda_proxy
from local_runtime.postgres import start_embedded_postgres
from tests.functional.conftest import SAMPLES

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
    assert set(methods) >= {
        ("POST", "/search"),
        ("POST", "/context"),
        ("GET", "/worlds/{world_id}/concepts/{name}/history"),
        ("GET", "/concepts/{concept_id}/relationships"),
        ("GET", "/worlds/{world_id}/events"),
    }
    # The deployed routes are the documented ones: neither has a route the other lacks.
    documented = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))["paths"]
    assert set(methods) == {(m.upper(), p) for p, item in documented.items() for m in item}
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


# --- `kb serve`: the handler behind an API Gateway-shaped HTTP server ------------------------------------


class _Served:
    """A `kb serve` process and the URL it printed."""

    def __init__(self, home: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli.kb", "serve", "--port", "0"],
            env={**os.environ, "KB_HOME": str(home), "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until the server is up (or the process died)
        found = re.search(r"http://\S+", line)
        if found is None:
            self.process.kill()
            raise AssertionError(
                f"kb serve printed {line!r}; stderr: {self.process.communicate()[1][-2000:]}"
            )
        self.url = found.group(0)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        stage: bool = True,
    ) -> tuple[int, dict[str, str], Any]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        base = self.url if stage else self.url.removesuffix("/v1")
        # Any Authorization passes locally (no IAM principals), but one is needed, as on API Gateway.
        signed = {"Authorization": "AWS4-HMAC-SHA256 Credential=local", **(headers or {})}
        request = urllib.request.Request(base + path, data=body, method=method, headers=signed)
        try:
            with opener.open(request, timeout=60) as response:
                status, answer_headers, raw = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            status, answer_headers, raw = error.code, dict(error.headers), error.read()
        return status, answer_headers, json.loads(raw) if raw else None

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return self.process.returncode, err


def _postgres_running(home: Path) -> bool:
    return (home / "pg" / "postmaster.pid").exists()


def test_kb_serve_answers_over_http_and_stops_what_it_started_on_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "kb"
    sample = SAMPLES / "emberfall" / "01-the-ember-court.md"
    ingest = subprocess.run(
        [sys.executable, "-m", "cli.kb", "ingest", str(sample), "--world", "emberfall", "--json"],
        env={**os.environ, "KB_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ingest.returncode == 0, ingest.stderr[-2000:]
    # `kb ingest` leaves the embedded server running (as every kb command does): stop it, so this
    # `kb serve` is the one that starts it, and so must stop it.
    start_embedded_postgres(home / "pg").stop()
    assert not _postgres_running(home)

    served = _Served(home)
    try:
        assert served.url.endswith("/v1") and _postgres_running(home)
        body = json.dumps({"query": "who rules the Ember Court", "world_id": "emberfall", "k": 2}).encode()
        status, headers, found = served.request("POST", "/search", body, {"Content-Type": "application/json"})
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert found["hits"] and found["hits"][0]["citation"]["document_key"].startswith(
            "incoming/emberfall/"
        )
        assert headers["x-amzn-RequestId"]

        status, _, history = served.request("GET", "/worlds/tidewatch/events")
        assert (status, history["code"]) == (404, "unknown_world")
        status, headers, refused = served.request("DELETE", "/search")
        assert (status, refused["code"], headers["Allow"]) == (405, "method_not_allowed", "POST")
        status, _, refused = served.request(
            "POST", "/search", b"[" * 1480 + b"]" * 1480, {"Content-Type": "application/json"}
        )
        assert (status, refused["code"]) == (400, "malformed_body")
        status, _, refused = served.request("POST", "/search", body, {"Content-Type": "text/plain"})
        assert (status, refused["code"]) == (415, "unsupported_media_type")
        assert served.request("GET", "/search", stage=False)[0] == 403  # off-stage, as API Gateway answers
        status, _, refused = served.request("GET", "/worlds/emberfall/events", headers={"Authorization": ""})
        assert (status, refused) == (403, {"message": "Missing Authentication Token"})
    finally:
        code, err = served.stop()
    assert code == 0 and "stopped" in err, err[-2000:]
    assert not _postgres_running(home)
    port = int(served.url.rsplit(":", 1)[1].split("/", 1)[0])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def test_kb_serve_on_a_taken_port_fails_at_once_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KB_HOME", str(tmp_path / "kb"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert kb(["serve", "--port", str(port)]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert not (tmp_path / "kb" / "pg").exists()  # no stack, no database was started


def test_the_adapter_builds_the_event_api_gateway_would(cloud: Any) -> None:
    routes = RouteTable.from_rest_api(
        boto3.client("apigateway", region_name="us-east-1"), cloud.physical_ids["KnowledgeApi"]
    )
    # Each method invokes the function's release alias the template integrates it with, as API Gateway does.
    search_function = routes.function_of("POST", "/search") or ""
    assert search_function.endswith(":function:" + cloud.functions["KnowledgeApiFunction"] + ":live")
    assert all(routes.function_of(m, r.template) for r in routes.resources for m in r.methods)
    invoke = lambda_proxy(
        routes, cloud.functions["KnowledgeApiFunction"], boto3.client("lambda", region_name="us-east-1")
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    signed = {"X-Trace": "a", "Authorization": "AWS4-HMAC-SHA256 Credential=local"}
    with LoopbackApi(invoke, routes=routes) as server:
        history = urllib.request.Request(
            server.url + "/worlds/emberfall/concepts/Queen%20Ysolde/history", headers=signed
        )
        with opener.open(history, timeout=60) as response:
            assert response.status == 200 and json.loads(response.read())["name"] == "Queen Ysolde"
        event = server.requests[-1]
        timeline = urllib.request.Request(server.url + "/worlds/emberfall/events?limit=1", headers=signed)
        with opener.open(timeline, timeout=60) as response:
            assert [e["event_id"] for e in json.loads(response.read())["events"]] == ["e0"]
        paged = server.requests[-1]
        repeated = urllib.request.Request(
            server.url + "/worlds/emberfall/events?limit=2&limit=1", headers=signed
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open(repeated, timeout=60)
        assert refused.value.code == 422  # a scalar given twice is ambiguous: refused, not guessed
        twice = server.requests[-1]
        # Under API Gateway's 10 MB but over Lambda's 6 MB: refused as too large, never a 5xx.
        huge = urllib.request.Request(
            server.url + "/search",
            data=b'{"query": "' + b"x" * (7 * 1024 * 1024) + b'"}',
            headers={**signed, "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as too_large:
            opener.open(huge, timeout=60)
        assert too_large.value.code == 413
    assert event["resource"] == "/worlds/{world_id}/concepts/{name}/history"
    assert event["pathParameters"] == {"world_id": "emberfall", "name": "Queen%20Ysolde"}
    assert event["path"] == "/worlds/emberfall/concepts/Queen%20Ysolde/history"
    assert event["requestContext"]["path"] == "/v1/worlds/emberfall/concepts/Queen%20Ysolde/history"
    assert event["requestContext"]["resourcePath"] == event["resource"]
    assert event["headers"]["X-Trace"] == "a" and event["isBase64Encoded"] is False
    assert event["queryStringParameters"] is None and event["body"] is None
    assert paged["resource"] == "/worlds/{world_id}/events"
    assert paged["pathParameters"] == {"world_id": "emberfall"}
    assert paged["queryStringParameters"] == {"limit": "1"}
    assert twice["multiValueQueryStringParameters"] == {"limit": ["2", "1"]}
    assert twice["queryStringParameters"] == {"limit": "1"}  # the last, as API Gateway gives it


def test_the_adapter_refuses_what_api_gateway_refuses_before_the_function() -> None:
    invoked: list[dict[str, Any]] = []

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        invoked.append(event)
        return {"statusCode": 200, "body": "{}"}

    routes = RouteTable([ApiResource("/search", {"POST": "AWS_IAM"}, {})])
    with LoopbackApi(invoke, routes=routes) as server:
        host, port = server.url.split("//", 1)[1].split("/", 1)[0].split(":")

        def raw(head: str) -> bytes:
            with socket.create_connection((host, int(port)), timeout=10) as connection:
                connection.sendall(f"{head}\r\nHost: x\r\nAuthorization: AWS4 x\r\n\r\n".encode())
                return connection.recv(200)

        assert raw(f"POST /v1/search HTTP/1.1\r\nContent-Length: {MAX_PAYLOAD_BYTES + 1}").startswith(
            b"HTTP/1.0 413"
        )
        assert raw("POST /v1/search HTTP/1.1\r\nContent-Length: many").startswith(b"HTTP/1.0 400")
        assert raw("POST /v1/search HTTP/1.1\r\nContent-Length: -1").startswith(b"HTTP/1.0 400")
        assert raw("POST /v1/search HTTP/1.1\r\nTransfer-Encoding: chunked").startswith(b"HTTP/1.0 411")
        assert raw("GET /search HTTP/1.1").startswith(b"HTTP/1.0 403")  # off-stage
    assert invoked == []


def test_an_integration_failure_is_a_502_and_an_oversized_event_a_413() -> None:
    class FailingLambda:
        def __init__(self, error: Exception | None) -> None:
            self.error = error

        def invoke(self, FunctionName: str, Payload: str) -> dict[str, Any]:
            if self.error is not None:
                raise self.error
            return {"FunctionError": "Unhandled", "Payload": io.BytesIO(b'{"errorType": "Boom"}')}

    routes = RouteTable([ApiResource("/search", {"POST": "NONE"}, {"POST": "search-function"})])
    too_large = ClientError({"Error": {"Code": "RequestEntityTooLargeException"}}, "Invoke")
    throttled = ClientError({"Error": {"Code": "TooManyRequestsException"}}, "Invoke")
    event = {"httpMethod": "POST", "resource": "/search"}
    assert lambda_proxy(routes, "default", FailingLambda(too_large))(event)["statusCode"] == 413
    with pytest.raises(ClientError):
        lambda_proxy(routes, "default", FailingLambda(throttled))(event)
    with pytest.raises(RuntimeError, match="search-function failed: Boom"):
        lambda_proxy(routes, "default", FailingLambda(None))(event)
    with LoopbackApi(lambda_proxy(routes, "default", FailingLambda(None)), routes=routes) as server:
        request = urllib.request.Request(server.url + "/search", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30)
    assert failed.value.code == 502
    assert json.loads(failed.value.read()) == {"message": "Internal server error: RuntimeError"}
