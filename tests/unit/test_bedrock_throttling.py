"""TitanEmbedder under throttling: concurrency adapts (AIMD), every text is embedded once and in order,
and a batch that cannot finish in the time left fails whole, before the function would time out."""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from knowledge.adapters.aws.bedrock import TITAN_V2_MODEL_ID, TitanEmbedder, bedrock_client_config
from knowledge.adapters.aws.payloads import PayloadStore
from knowledge.errors import EmbeddingError, EmbeddingThrottledError
from knowledge.ingestion import steps
from knowledge.ports import seconds_left, time_limit

DIMENSION = 256


def _body(vector: list[float]) -> StreamingBody:
    raw = json.dumps({"embedding": vector, "inputTextTokenCount": 3}).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def _vector_for(text: str) -> list[float]:
    vector = [0.0] * DIMENSION
    vector[int(text.split()[-1]) % DIMENSION] = 1.0
    return vector


def _error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "slow down"}}, "InvokeModel")


class ThrottlingBedrock:
    """Serves `capacity` calls at once and throttles every call beyond them, as a Bedrock quota does."""

    def __init__(
        self, capacity: int, *, permanent: dict[str, str] | None = None, hold_s: float = 0.01
    ) -> None:
        self.capacity = capacity
        self.permanent = permanent or {}
        self.hold_s = hold_s
        self.in_flight = 0
        self.attempted: list[int] = []  # calls in flight, this one included, as each call began
        self.throttles = 0
        self.embedded: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.started_with: list[float | None] = []  # the time left when each call began
        self.clock_ms = 0  # with `seconds_per_call`: the function's time left, spent by each call
        self.seconds_per_call = 0
        self._lock = threading.Lock()

    def remaining_ms(self) -> int:
        return self.clock_ms

    def invoke_model(self, **kwargs: Any) -> dict[str, Any]:
        text = json.loads(kwargs["body"])["inputText"]
        with self._lock:
            self.started_with.append(seconds_left())
            self.calls[text] += 1
            self.clock_ms -= self.seconds_per_call * 1000
            if text in self.permanent:
                raise _error(self.permanent[text])
            self.in_flight += 1
            self.attempted.append(self.in_flight)
            if self.in_flight > self.capacity:
                self.in_flight -= 1
                self.throttles += 1
                raise _error("ThrottlingException")
        try:
            time.sleep(self.hold_s)  # long enough for the other workers' calls to overlap this one
            with self._lock:
                self.embedded[text] += 1
            return {"body": _body(_vector_for(text))}
        finally:
            with self._lock:
                self.in_flight -= 1


def _texts(n: int) -> list[str]:
    return [f"chunk number {i}" for i in range(n)]


def _order(vectors: list[list[float]]) -> list[int]:
    return [vector.index(1.0) for vector in vectors]


def test_throttling_halves_concurrency_and_every_text_is_embedded_once_in_order() -> None:
    client = ThrottlingBedrock(capacity=2)
    embedder = TitanEmbedder(client, dimension=DIMENSION, max_workers=8, call_timeout_s=5, throttle_pause_s=0)
    texts = _texts(40)

    with time_limit(lambda: 120_000):
        vectors = embedder.embed(texts)

    assert _order(vectors) == list(range(40))
    assert client.embedded == Counter({text: 1 for text in texts})
    assert client.throttles > 0
    assert embedder.concurrency < 8  # it stays near the quota for the next batch
    # The first wave tried all 8 workers; once halved, it never tried more than 4 at once again.
    assert client.attempted[0] >= 1 and max(client.attempted) > 2
    assert max(client.attempted[len(client.attempted) // 2 :]) <= 4


def test_concurrency_grows_back_slowly_after_the_throttling_ends() -> None:
    client = ThrottlingBedrock(capacity=2)
    embedder = TitanEmbedder(client, dimension=DIMENSION, max_workers=8, call_timeout_s=5, throttle_pause_s=0)
    with time_limit(lambda: 120_000):
        embedder.embed(_texts(16))
    low = embedder.concurrency

    client.capacity = 100  # the quota is raised
    with time_limit(lambda: 120_000):
        embedder.embed(_texts(8))
    # One more call in flight per window of successes: up, but not back to 8 at once.
    assert low < embedder.concurrency < 8
    with time_limit(lambda: 120_000):
        embedder.embed(_texts(200))
    assert embedder.concurrency == 8  # and never above max_workers


def test_outside_a_time_limit_a_throttle_fails_the_batch_and_still_lowers_concurrency() -> None:
    client = ThrottlingBedrock(capacity=0)
    embedder = TitanEmbedder(client, dimension=DIMENSION, max_workers=8, throttle_pause_s=0)

    with pytest.raises(EmbeddingThrottledError, match="ThrottlingException"):
        embedder.embed(_texts(8))
    assert embedder.concurrency == 4


def test_a_permanent_error_surfaces_as_embedding_error_and_is_not_retried() -> None:
    client = ThrottlingBedrock(capacity=2, permanent={"chunk number 5": "ValidationException"})
    embedder = TitanEmbedder(client, dimension=DIMENSION, max_workers=4, call_timeout_s=5, throttle_pause_s=0)

    with time_limit(lambda: 120_000), pytest.raises(EmbeddingError, match="ValidationException") as raised:
        embedder.embed(_texts(12))
    assert not isinstance(raised.value, EmbeddingThrottledError)
    assert client.calls["chunk number 5"] == 1
    assert "chunk number 5" not in client.embedded


def test_no_call_starts_that_could_outlast_the_time_left() -> None:
    client = ThrottlingBedrock(capacity=0)  # throttles everything, for as long as it is asked
    client.clock_ms, client.seconds_per_call = 60_000, 3  # each throttled call spends 3 s
    embedder = TitanEmbedder(client, dimension=DIMENSION, max_workers=1, call_timeout_s=8, throttle_pause_s=0)

    with time_limit(client.remaining_ms, reserve_s=5), pytest.raises(EmbeddingThrottledError) as raised:
        embedder.embed(_texts(6))

    assert "0 of 6 texts embedded" in str(raised.value) and "too little for another call" in str(raised.value)
    # 55 s to spend at 3 s a call: every call started with 8 s or more left, and the last one with < 11.
    assert len(client.started_with) == 16
    assert all(left is not None and left >= 8 for left in client.started_with)


def test_too_little_time_from_the_start_makes_no_call() -> None:
    client = ThrottlingBedrock(capacity=8)
    embedder = TitanEmbedder(client, dimension=DIMENSION, call_timeout_s=8)
    with time_limit(lambda: 9_000, reserve_s=5), pytest.raises(EmbeddingThrottledError, match="0 of 3"):
        embedder.embed(_texts(3))
    assert client.started_with == []


def test_a_stubbed_client_throttled_once_is_retried_inside_the_time_limit() -> None:
    client = botocore.session.get_session().create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=bedrock_client_config(timeout_s=8),
    )
    expected = {"modelId": TITAN_V2_MODEL_ID, "body": ANY, "contentType": "application/json", "accept": ANY}
    with Stubber(client) as stubber:
        stubber.add_response(
            "invoke_model", {"body": _body(_vector_for("a 1")), "contentType": "application/json"}, expected
        )
        stubber.add_client_error(
            "invoke_model", service_error_code="ThrottlingException", expected_params=expected
        )
        stubber.add_response(
            "invoke_model", {"body": _body(_vector_for("a 2")), "contentType": "application/json"}, expected
        )
        embedder = TitanEmbedder(client, dimension=DIMENSION, max_workers=1, throttle_pause_s=0)
        with time_limit(lambda: 60_000):
            vectors = embedder.embed(["a 1", "a 2"])
        stubber.assert_no_pending_responses()
    assert _order(vectors) == [1, 2]


class _Objects:
    bucket = "docs"

    def __init__(self) -> None:
        self.stored: dict[str, bytes] = {}

    def put(self, key: str, body: bytes, content_type: str = "") -> None:
        self.stored[key] = body


def test_embed_batch_out_of_time_fails_before_writing_any_vectors() -> None:
    objects = _Objects()
    payloads = PayloadStore(objects, inline_limit=1 << 20)  # type: ignore[arg-type]
    entries = [{"heading": "", "text": text} for text in _texts(4)]
    item = {
        "document": {"world_id": "w", "content_sha256": "c" * 64, "run_id": "r1"},
        "batch": {"index": 0, "kind": "chunks", "count": 4, "ref": payloads.put("chunks-00000", entries)},
    }
    embedder = TitanEmbedder(ThrottlingBedrock(capacity=0), dimension=DIMENSION, call_timeout_s=8)

    # 12 s left: minus the 5 s kept for writing the vectors, too little for an 8 s call.
    with pytest.raises(EmbeddingThrottledError, match="too little"):
        steps.embed_batch(item, payloads=payloads, embedder=embedder, remaining_ms=lambda: 12_000)
    assert objects.stored == {}

    # With time enough the same batch is embedded and written, and no time limit outlives the call.
    embedder = TitanEmbedder(ThrottlingBedrock(capacity=8), dimension=DIMENSION, call_timeout_s=8)
    assert steps.embed_batch(item, payloads=payloads, embedder=embedder, remaining_ms=lambda: 60_000) == {
        "index": 0
    }
    [written] = objects.stored.values()
    assert _order(json.loads(written)["vectors"]) == [0, 1, 2, 3]
    assert seconds_left() is None
