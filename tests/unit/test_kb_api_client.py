"""The storyteller client over real HTTP (a loopback server): signing, retries, typed results and errors."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.credentials import Credentials

from knowledge.queries.models import SearchResponse
from knowledge_client import (
    AuthError,
    KnowledgeApiError,
    KnowledgeClient,
    NotFoundError,
    RetryPolicy,
    ServiceUnavailableError,
    ThrottledError,
    TransportError,
    ValidationError,
    resolve_api_url,
)
from local_runtime.api_gateway import LoopbackApi

CREDENTIALS = Credentials("AKIDEXAMPLE", "secret", "token")
OK = {"world_id": "emberfall", "hybrid": False, "hits": []}


def reply(status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body),
    }


@pytest.fixture
def serve() -> Iterator[Callable[[list[dict[str, Any]]], tuple[LoopbackApi, list[float]]]]:
    servers: list[LoopbackApi] = []

    def start(script: list[dict[str, Any]]) -> tuple[LoopbackApi, list[float]]:
        answers = iter(script)
        server = LoopbackApi(lambda event: next(answers)).__enter__()
        servers.append(server)
        return server, []

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def client(url: str, slept: list[float], **kw: Any) -> KnowledgeClient:
    options: dict[str, Any] = {
        "region": "eu-west-1",
        "credentials": CREDENTIALS,
        "retry": RetryPolicy(attempts=3, base_delay_s=0.1, max_delay_s=2.0),
        "sleep": slept.append,
        "rng": lambda: 0.5,
        "opener": urllib.request.build_opener(urllib.request.ProxyHandler({})),
        "timeout_s": 2.0,
    }
    return KnowledgeClient(url, **options | kw)


def test_requests_are_sigv4_signed_for_execute_api_and_results_typed(serve: Any) -> None:
    server, slept = serve([reply(200, OK)])
    result = client(server.url, slept, api_key="k-123").search("who rules", "emberfall", k=3, hybrid=False)

    assert isinstance(result, SearchResponse) and result.world_id == "emberfall"
    event = server.requests[0]
    headers = {k.lower(): v for k, v in event["headers"].items()}
    authorization = headers["authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in authorization
    assert "SignedHeaders=" in authorization and "x-amz-date" in authorization
    assert headers["x-amz-security-token"] == "token" and headers["x-api-key"] == "k-123"
    assert (event["httpMethod"], event["path"]) == ("POST", "/search")
    assert json.loads(event["body"]) == {
        "query": "who rules",
        "world_id": "emberfall",
        "k": 3,
        "hybrid": False,
    }


def test_path_segments_are_percent_encoded_and_queries_sent(serve: Any) -> None:
    history = {
        "concept_id": 1,
        "world_id": "w",
        "name": "A/B c",
        "kind": "k",
        "current_version": 1,
        "versions": [],
    }
    server, slept = serve(
        [reply(200, history), reply(200, {"world_id": "w", "events": [], "next_cursor": None})]
    )
    api = client(server.url, slept, sign=False)
    assert api.concept_history("w", "A/B c").name == "A/B c"
    assert api.events("w", limit=7).events == []
    assert server.requests[0]["path"] == "/worlds/w/concepts/A%2FB%20c/history"
    assert "authorization" not in {k.lower() for k in server.requests[0]["headers"]}
    assert server.requests[1]["queryStringParameters"] == {"limit": "7"}


def test_5xx_and_429_are_retried_with_backoff_honouring_retry_after(serve: Any) -> None:
    server, slept = serve(
        [
            reply(503, {"code": "database_unavailable", "message": "later"}, {"Retry-After": "1"}),
            reply(429, {"message": "Too Many Requests"}),
            reply(200, OK),
        ]
    )
    assert client(server.url, slept).search("q", "emberfall").hits == []
    # attempt 1: jitter 0.5 * 0.1 = 0.05, but Retry-After says 1; attempt 2: 0.5 * 0.2 = 0.1
    assert slept == [1.0, 0.1]
    signatures = [e["headers"]["Authorization"] for e in server.requests]
    assert len(set(signatures)) >= 1 and len(server.requests) == 3


def test_retries_give_up_with_the_last_error(serve: Any) -> None:
    server, slept = serve([reply(503, {"code": "database_unavailable", "message": "down"})] * 3)
    with pytest.raises(ServiceUnavailableError) as raised:
        client(server.url, slept).search("q", "emberfall")
    assert raised.value.status == 503 and raised.value.code == "database_unavailable"
    assert len(server.requests) == 3 and len(slept) == 2

    server, slept = serve([reply(429, {"message": "Too Many Requests"})] * 3)
    with pytest.raises(ThrottledError):
        client(server.url, slept).search("q", "emberfall")


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (404, {"code": "unknown_world", "message": "no world"}, NotFoundError),
        (
            422,
            {"code": "validation_error", "message": "bad", "details": [{"loc": ["body", "k"]}]},
            ValidationError,
        ),
        (403, {"message": "Missing Authentication Token"}, AuthError),
        (409, {"message": "odd"}, KnowledgeApiError),
    ],
)
def test_4xx_are_not_retried(serve: Any, status: int, body: Any, error: type[Exception]) -> None:
    server, slept = serve([reply(status, body), reply(200, OK)])
    with pytest.raises(error) as raised:
        client(server.url, slept).search("q", "emberfall")
    assert len(server.requests) == 1 and slept == []
    assert isinstance(raised.value, KnowledgeApiError) and raised.value.status == status
    if status == 422:
        assert raised.value.details == [{"loc": ["body", "k"]}]


def test_connection_errors_are_retried_then_raised() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    slept: list[float] = []
    with pytest.raises(TransportError) as raised:
        client(f"http://127.0.0.1:{port}/v1", slept).search("q", "emberfall")
    assert raised.value.status is None and len(slept) == 2


def test_backoff_is_capped_full_jitter() -> None:
    policy = RetryPolicy(attempts=10, base_delay_s=0.2, max_delay_s=5.0)
    assert policy.delay(0, None, lambda: 1.0) == pytest.approx(0.2)
    assert policy.delay(10, None, lambda: 1.0) == 5.0
    assert policy.delay(3, None, lambda: 0.0) == 0.0
    assert policy.delay(0, 60.0, lambda: 0.0) == 5.0  # a server's Retry-After is capped too


def test_the_url_and_region_come_from_the_stack() -> None:
    class FakeCloudFormation:
        def describe_stacks(self, StackName: str) -> dict[str, Any]:
            url = "https://abc123.execute-api.eu-west-1.amazonaws.com/v1"
            return {"Stacks": [{"Outputs": [{"OutputKey": "KnowledgeApiUrl", "OutputValue": url}]}]}

    api = KnowledgeClient.from_stack("kb-prod", cloudformation=FakeCloudFormation(), credentials=CREDENTIALS)
    assert api.base_url.endswith("/v1") and api.region == "eu-west-1"

    class Empty:
        def describe_stacks(self, StackName: str) -> dict[str, Any]:
            return {"Stacks": [{"Outputs": []}]}

    with pytest.raises(KnowledgeApiError, match="KnowledgeApiUrl"):
        resolve_api_url("old", cloudformation=Empty())


def test_put_world_sends_only_the_fields_given_and_types_the_world(serve: Any) -> None:
    world = {"world_id": "ashfall", "name": "Ashfall", "parent": "canon", "lineage": ["ashfall", "canon"]}
    cycle = {"code": "parent_cycle", "message": "canon descends from ashfall", "details": []}
    server, slept = serve([reply(201, world), reply(200, world | {"parent": None}), reply(409, cycle)])
    api = client(server.url, slept, sign=False)

    assert api.put_world("ashfall", name="Ashfall", parent="canon").lineage == ["ashfall", "canon"]
    assert api.put_world("ashfall", parent=None).parent is None
    with pytest.raises(KnowledgeApiError) as refused:
        api.put_world("canon", parent="ashfall")

    assert refused.value.status == 409 and refused.value.code == "parent_cycle" and not slept
    assert [(r["httpMethod"], r["path"]) for r in server.requests] == [("PUT", "/worlds/ashfall")] * 2 + [
        ("PUT", "/worlds/canon")
    ]
    assert [json.loads(r["body"]) for r in server.requests] == [
        {"name": "Ashfall", "parent": "canon"},
        {"parent": None},
        {"parent": "ashfall"},
    ]
