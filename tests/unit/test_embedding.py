"""Embedder adapters that need no model weights: Titan over a stubbed client, HashEmbedder, the factory."""

from __future__ import annotations

import io
import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from knowledge.adapters.aws.bedrock import TITAN_V2_MODEL_ID, TitanEmbedder, bedrock_client_config
from knowledge.embedding.hashing import HashEmbedder
from knowledge.embedding.minilm import MINILM_MODEL_ID, MiniLmEmbedder
from knowledge.errors import ConfigurationError, EmbeddingError, EmbeddingThrottledError
from knowledge.ports import Embedder
from knowledge.services import embedder_from_settings


def _norm(vector: list[float]) -> float:
    return math.sqrt(math.fsum(v * v for v in vector))


def _body(payload: dict[str, Any]) -> StreamingBody:
    raw = json.dumps(payload).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


class FakeBedrock:
    """Answers invoke_model with a vector derived from the text, so results can be matched to inputs."""

    def __init__(self, dimension: int = 256, *, fail_on: dict[str, Exception] | None = None) -> None:
        self.dimension = dimension
        self.fail_on = fail_on or {}
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def invoke_model(self, **kwargs: Any) -> dict[str, Any]:
        body = json.loads(kwargs["body"])
        with self._lock:
            self.requests.append({**kwargs, "body": body})
        text = body["inputText"]
        if text in self.fail_on:
            raise self.fail_on[text]
        # Later texts answer sooner, so completion order differs from submission order.
        time.sleep(0.005 / (1 + len(text)))
        vector = [0.0] * self.dimension
        vector[len(text) % self.dimension] = 2.0  # deliberately not unit length
        return {"body": _body({"embedding": vector, "inputTextTokenCount": 3})}


def _client_error(code: str, message: str = "nope") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "InvokeModel")


# --- Titan: request and response ------------------------------------------------------------------------


def test_titan_request_body_and_parameters() -> None:
    client = FakeBedrock(dimension=512)
    embedder = TitanEmbedder(client, dimension=512)

    [vector] = embedder.embed(["hello there"])

    [request] = client.requests
    assert request["modelId"] == TITAN_V2_MODEL_ID
    assert request["contentType"] == "application/json"
    assert request["accept"] == "application/json"
    assert request["body"] == {"inputText": "hello there", "dimensions": 512, "normalize": True}
    assert len(vector) == 512
    assert _norm(vector) == pytest.approx(1.0)


def test_titan_truncates_input_to_fifty_thousand_characters() -> None:
    client = FakeBedrock()
    TitanEmbedder(client, dimension=256).embed(["x" * 60_000])
    assert len(client.requests[0]["body"]["inputText"]) == 50_000


@pytest.mark.parametrize("dimension", [100, 384, 1536])
def test_titan_rejects_unsupported_dimensions(dimension: int) -> None:
    with pytest.raises(ConfigurationError, match="256"):
        TitanEmbedder(FakeBedrock(), dimension=dimension)


@pytest.fixture
def stubbed_runtime() -> Iterator[tuple[Any, Stubber]]:
    client = botocore.session.get_session().create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=bedrock_client_config(),
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_titan_over_a_real_client_normalises_the_response(stubbed_runtime: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed_runtime
    stubber.add_response(
        "invoke_model",
        {"body": _body({"embedding": [3.0, 4.0] + [0.0] * 254}), "contentType": "application/json"},
        {"modelId": TITAN_V2_MODEL_ID, "body": ANY, "contentType": "application/json", "accept": ANY},
    )

    [vector] = TitanEmbedder(client, dimension=256).embed(["some text"])

    assert vector[:2] == pytest.approx([0.6, 0.8])
    assert _norm(vector) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "code",
    [
        "ThrottlingException",
        "ServiceUnavailableException",
        "ModelNotReadyException",
        "TooManyRequestsException",
        "ModelTimeoutException",
        "InternalServerException",
    ],
)
def test_titan_transient_errors_become_throttled(stubbed_runtime: tuple[Any, Stubber], code: str) -> None:
    client, stubber = stubbed_runtime
    stubber.add_client_error("invoke_model", service_error_code=code, service_message="slow down")

    with pytest.raises(EmbeddingThrottledError, match=code):
        TitanEmbedder(client, dimension=256).embed(["text"])


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        ("ValidationException", "invalid"),
        ("AccessDeniedException", "bedrock:InvokeModel"),
        ("ResourceNotFoundException", "model id"),
        ("SomethingNewException", "refused"),
    ],
)
def test_titan_permanent_errors_become_embedding_errors(
    stubbed_runtime: tuple[Any, Stubber], code: str, hint: str
) -> None:
    client, stubber = stubbed_runtime
    stubber.add_client_error("invoke_model", service_error_code=code, service_message="bad input")

    with pytest.raises(EmbeddingError, match=hint) as raised:
        TitanEmbedder(client, dimension=256).embed(["text"])
    assert not isinstance(raised.value, EmbeddingThrottledError)
    assert code in str(raised.value)


@pytest.mark.parametrize(
    "error",
    [ReadTimeoutError(endpoint_url="https://bedrock"), ConnectTimeoutError(endpoint_url="https://bedrock")],
)
def test_titan_timeouts_become_throttled(error: Exception) -> None:
    client = FakeBedrock(fail_on={"text": error})
    with pytest.raises(EmbeddingThrottledError):
        TitanEmbedder(client, dimension=256).embed(["text"])


def test_titan_wrong_sized_embedding_is_an_error() -> None:
    client = FakeBedrock(dimension=1024)
    with pytest.raises(EmbeddingError, match="expected 256"):
        TitanEmbedder(client, dimension=256).embed(["text"])


def test_titan_refuses_empty_text_without_calling_bedrock() -> None:
    client = FakeBedrock()
    with pytest.raises(EmbeddingError, match="empty"):
        TitanEmbedder(client, dimension=256).embed(["  "])
    assert client.requests == []


# --- Titan: the thread pool -----------------------------------------------------------------------------


def test_titan_preserves_order_under_the_thread_pool() -> None:
    texts = ["x" * n for n in range(1, 41)]
    embedder = TitanEmbedder(FakeBedrock(), dimension=256, max_workers=8)

    vectors = embedder.embed(texts)

    assert [vector.index(1.0) for vector in vectors] == [len(text) for text in texts]


def test_titan_calls_run_concurrently() -> None:
    # Two calls must be in flight at once for both to pass the barrier.
    barrier = threading.Barrier(2, timeout=5)

    class Blocking(FakeBedrock):
        def invoke_model(self, **kwargs: Any) -> dict[str, Any]:
            barrier.wait()
            return super().invoke_model(**kwargs)

    vectors = TitanEmbedder(Blocking(), dimension=256, max_workers=2).embed(["a", "bb"])
    assert len(vectors) == 2


def test_titan_one_failure_fails_the_batch() -> None:
    client = FakeBedrock(fail_on={"bad": _client_error("ThrottlingException")})
    with pytest.raises(EmbeddingThrottledError):
        TitanEmbedder(client, dimension=256, max_workers=4).embed(["a", "b", "bad", "c", "d"])


def test_titan_empty_batch_makes_no_calls() -> None:
    client = FakeBedrock()
    assert TitanEmbedder(client, dimension=256).embed([]) == []
    assert client.requests == []


def test_titan_count_tokens_is_a_conservative_estimate() -> None:
    embedder = TitanEmbedder(FakeBedrock(), dimension=256)
    assert embedder.count_tokens("") == 0
    assert embedder.count_tokens("one two three") >= 3
    assert embedder.count_tokens("a" * 4000) == 1000


def test_bedrock_client_config_bounds_each_call_by_its_budget() -> None:
    # Standard retries: adaptive mode's client-side rate limiter may sleep past any budget. (vars: the
    # botocore stubs do not declare Config's attributes.)
    options = vars(bedrock_client_config(timeout_s=20))
    assert options["retries"] == {"mode": "standard", "total_max_attempts": 2}
    assert options["connect_timeout"] + options["read_timeout"] < 20
    assert options["max_pool_connections"] >= 8


# --- HashEmbedder ---------------------------------------------------------------------------------------


def test_hash_embedder_is_deterministic_and_unit_length() -> None:
    texts = ["The dragon sleeps under the mountain.", "A tavern full of bards", ""]
    first = HashEmbedder().embed(texts)
    second = HashEmbedder().embed(texts)

    assert first == second
    assert all(len(v) == 384 and _norm(v) == pytest.approx(1.0) for v in first)


def test_hash_embedder_reflects_shared_words() -> None:
    same, near, far = HashEmbedder(dimension=256).embed(
        ["red dragon lair", "the red dragon lair", "quiet harbour town"]
    )
    assert sum(a * b for a, b in zip(same, near, strict=True)) > 0.8
    assert abs(sum(a * b for a, b in zip(same, far, strict=True))) < 0.5


def test_hash_embedder_counts_words() -> None:
    assert HashEmbedder().count_tokens("Hello, brave new world!") == 4


@pytest.mark.parametrize(
    "embedder", [HashEmbedder(), TitanEmbedder(FakeBedrock(), dimension=256)], ids=["hash", "titan"]
)
def test_a_bare_string_is_rejected(embedder: Embedder) -> None:
    with pytest.raises(TypeError):
        embedder.embed("not a list")


# --- factory --------------------------------------------------------------------------------------------


def test_factory_builds_titan_with_the_given_client() -> None:
    client = FakeBedrock(dimension=512)
    embedder = embedder_from_settings(
        "bedrock", dimension=512, model_id=None, bedrock_client_factory=lambda: client
    )

    assert isinstance(embedder, TitanEmbedder)
    assert isinstance(embedder, Embedder)
    assert (embedder.model_id, embedder.dimension) == (TITAN_V2_MODEL_ID, 512)
    embedder.embed(["hi"])
    assert client.requests[0]["body"]["dimensions"] == 512


def test_factory_passes_a_custom_bedrock_model_id() -> None:
    embedder = embedder_from_settings(
        "bedrock", dimension=1024, model_id="custom-model", bedrock_client_factory=FakeBedrock
    )
    assert embedder.model_id == "custom-model"


def test_factory_rejects_a_bad_titan_dimension() -> None:
    with pytest.raises(ConfigurationError):
        embedder_from_settings("bedrock", dimension=384, model_id=None, bedrock_client_factory=FakeBedrock)


def test_factory_builds_local_minilm_lazily() -> None:
    embedder = embedder_from_settings("local-minilm", dimension=384, model_id=None)
    assert isinstance(embedder, MiniLmEmbedder)
    assert (embedder.model_id, embedder.dimension) == (MINILM_MODEL_ID, 384)
    assert embedder_from_settings("local-minilm", dimension=384, model_id=MINILM_MODEL_ID).dimension == 384


@pytest.mark.parametrize(
    ("dimension", "model_id"), [(1024, None), (256, MINILM_MODEL_ID), (384, "amazon.titan-embed-text-v2:0")]
)
def test_factory_rejects_local_settings_the_model_cannot_meet(dimension: int, model_id: str | None) -> None:
    with pytest.raises(ConfigurationError):
        embedder_from_settings("local-minilm", dimension=dimension, model_id=model_id)


def test_factory_builds_hash_embedder() -> None:
    embedder = embedder_from_settings("hash", dimension=64, model_id=None)
    assert isinstance(embedder, HashEmbedder)
    assert embedder.dimension == 64


def test_factory_rejects_unknown_providers() -> None:
    with pytest.raises(ConfigurationError, match="openai"):
        embedder_from_settings("openai", dimension=1536, model_id=None)
