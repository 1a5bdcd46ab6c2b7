"""Amazon Bedrock Titan Text Embeddings V2: the deployed embedder (`knowledge.ports.Embedder`)."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from knowledge.errors import ConfigurationError, EmbeddingError, EmbeddingThrottledError
from knowledge.ports import reject_bare_string, seconds_left

TITAN_V2_MODEL_ID = "amazon.titan-embed-text-v2:0"
TITAN_V2_DIMENSIONS = frozenset({256, 512, 1024})
# Titan V2 accepts at most 8,192 tokens or 50,000 characters per input.
TITAN_MAX_CHARS = 50_000

# Error codes that mean "try again later"; everything else is the request's fault.
_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "ModelNotReadyException",
        "TooManyRequestsException",
        "ModelTimeoutException",
        "InternalServerException",
    }
)
_PERMANENT_HINTS = {
    "ValidationException": "Bedrock rejected the embedding request as invalid",
    "AccessDeniedException": (
        "access denied to the Bedrock model: grant bedrock:InvokeModel on it and enable model access "
        "in this account and region"
    ),
    "ResourceNotFoundException": "the Bedrock model was not found in this region (check the model id)",
}
# Network-level failures that outlived botocore's own retries; the next attempt may well get through.
_TRANSIENT_NETWORK_ERRORS = (
    ReadTimeoutError,
    ConnectTimeoutError,
    ConnectionClosedError,
    EndpointConnectionError,
)


# botocore's standard retry mode waits at most min(2 ** (n - 1), 20) s after the n-th failed attempt, plus up to
# 5 s more when the service sends x-amz-retry-after.
_MAX_RETRY_AFTER_EXTRA_S = 5.0
# Below this per attempt, a slow-but-healthy Titan call (hundreds of ms, seconds at the tail) would be cut off.
_MIN_ATTEMPT_S = 3.0


def retry_wait_bound(attempts: int) -> float:
    """The longest botocore's standard mode sleeps between `attempts` attempts."""
    return sum(min(2.0 ** (n - 1), 20.0) + _MAX_RETRY_AFTER_EXTRA_S for n in range(1, attempts))


def bedrock_client_config(*, timeout_s: float = 10.0, max_pool_connections: int = 16) -> Config:
    """The botocore `Config` to build the `bedrock-runtime` client for `TitanEmbedder` with.

    One `invoke_model` call, retries and their waits included, takes at most `timeout_s`
    (`worst_case_seconds`): each function sets that budget below its own timeout (EMBEDDING_TIMEOUT_S;
    tests/template checks), where botocore's defaults (60 s reads, retried) outlast any function. Standard
    retry mode, not adaptive: adaptive's client-side rate limiter sleeps outside these timeouts, so a
    call could outlast its budget; `TitanEmbedder` adapts instead, by its calls in flight (AIMD), and
    always within the time left. What a short budget leaves unretried, `EmbeddingThrottledError` hands to
    `TitanEmbedder`'s own retries, Step Functions' backoff or the caller::

        client = boto3.client("bedrock-runtime", config=bedrock_client_config(timeout_s=10))

    The connection pool is sized above the embedder's thread pool so workers never queue for a socket.
    """
    if not timeout_s > 0:
        raise ConfigurationError(f"the embedding timeout must be positive, not {timeout_s}")
    attempts = 3
    while attempts > 1 and (timeout_s - retry_wait_bound(attempts)) / attempts < _MIN_ATTEMPT_S:
        attempts -= 1
    per_attempt = (timeout_s - retry_wait_bound(attempts)) / attempts
    connect = min(2.0, per_attempt / 4)
    return Config(
        connect_timeout=connect,
        read_timeout=per_attempt - connect,
        retries={"mode": "standard", "total_max_attempts": attempts},
        max_pool_connections=max_pool_connections,
    )


def worst_case_seconds(config: Config) -> float:
    """The longest one call made with `config` can take: every attempt timing out, every wait at its bound.

    (A read timeout bounds each wait for bytes, so a server trickling a response could stretch an attempt;
    Titan answers with one small JSON body.)"""
    retries: dict[str, Any] = dict(getattr(config, "retries", None) or {})
    attempts = int(retries.get("total_max_attempts", retries.get("max_attempts", 4) + 1))
    connect = float(getattr(config, "connect_timeout", 60))
    read = float(getattr(config, "read_timeout", 60))
    return attempts * (connect + read) + retry_wait_bound(attempts)


class _Concurrency:
    """How many Titan calls may be in flight: additive increase, multiplicative decrease (AIMD).

    A throttle halves the limit, once per congestion event: throttles of calls started before the last
    decrease are the same event, not new ones. Each success adds 1/limit, so a full window of successes
    adds one call. Kept per embedder, so a warm function starts where its last batch left off.
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self._limit = float(maximum)
        self._epoch = 0
        self._lock = threading.Lock()

    @property
    def limit(self) -> int:
        return max(1, int(self._limit))

    @property
    def epoch(self) -> int:
        return self._epoch

    def succeeded(self) -> None:
        with self._lock:
            self._limit = min(float(self.maximum), self._limit + 1.0 / self._limit)

    def throttled(self, epoch: int) -> None:
        with self._lock:
            if epoch == self._epoch:
                self._limit = max(1.0, self._limit / 2)
                self._epoch += 1


class TitanEmbedder:
    """Amazon Bedrock Titan Text Embeddings V2 through `bedrock-runtime` `invoke_model`.

    Titan embeds one text per call, so a batch fans out over a small thread pool (boto3 clients are
    thread-safe), at most `limit` calls in flight: halved when Bedrock throttles, grown again one call per
    window of successes (`_Concurrency`). Inside a `knowledge.ports.time_limit` (EmbedBatch: the Lambda
    context's remaining time) a throttled text is retried at the lower concurrency for as long as another
    call fits in the time left; when none does, the batch fails with EmbeddingThrottledError before the
    function times out, and nothing of it is kept. Outside one, a throttle fails the batch at once (the
    caller's own budget, e.g. the API's, has no room for more rounds). Build the client with
    `bedrock_client_config(timeout_s=...)`: `call_timeout_s` defaults to that budget.
    """

    def __init__(
        self,
        bedrock_runtime_client: Any,
        *,
        model_id: str = TITAN_V2_MODEL_ID,
        dimension: int = 1024,
        max_workers: int = 8,
        call_timeout_s: float | None = None,
        throttle_pause_s: float = 0.25,
    ) -> None:
        if dimension not in TITAN_V2_DIMENSIONS:
            raise ConfigurationError(
                f"Titan Text Embeddings V2 supports dimensions {sorted(TITAN_V2_DIMENSIONS)}, not {dimension}"
            )
        if max_workers < 1:
            raise ConfigurationError(f"max_workers must be at least 1, not {max_workers}")
        self.model_id = model_id
        self.dimension = dimension
        self._client = bedrock_runtime_client
        self._max_workers = max_workers
        self._concurrency = _Concurrency(max_workers)
        config = getattr(getattr(bedrock_runtime_client, "meta", None), "config", None)
        self._call_timeout_s = (
            call_timeout_s
            if call_timeout_s is not None
            else worst_case_seconds(config)
            if isinstance(config, Config)
            else 10.0
        )
        self._throttle_pause_s = throttle_pause_s
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @property
    def concurrency(self) -> int:
        """Calls the next batch may have in flight (at most `max_workers`)."""
        return self._concurrency.limit

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        reject_bare_string(texts)
        if any(not text.strip() for text in texts):
            raise EmbeddingError("cannot embed an empty text")
        vectors: list[list[float] | None] = [None] * len(texts)
        pending = deque(range(len(texts)))
        in_flight: dict[Future[list[float]], tuple[int, int]] = {}  # future -> (text, epoch at its start)
        resume_at, pause = 0.0, self._throttle_pause_s
        try:
            while pending or in_flight:
                while pending and len(in_flight) < self._concurrency.limit and time.monotonic() >= resume_at:
                    left = seconds_left()
                    if left is not None and left < self._call_timeout_s:
                        if in_flight:
                            break  # let the calls under way finish (each ends in time), then stop
                        raise EmbeddingThrottledError(
                            f"{self.model_id}: {len(texts) - len(pending)} of {len(texts)} texts embedded "
                            f"when {max(left, 0.0):.1f} s were left, too little for another call (up to "
                            f"{self._call_timeout_s:.1f} s); the batch is to be retried whole"
                        )
                    index = pending.popleft()
                    in_flight[self._submit(texts[index], inline=len(texts) == 1)] = (
                        index,
                        self._concurrency.epoch,
                    )
                if not in_flight:  # paused after a throttle at one call in flight
                    wait_s, left = max(0.0, resume_at - time.monotonic()), seconds_left()
                    if left is not None and left - wait_s < self._call_timeout_s:
                        resume_at = 0.0  # no call would fit after the pause: fail now, not later
                    else:
                        time.sleep(wait_s)
                    continue
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    index, epoch = in_flight.pop(future)
                    try:
                        vectors[index] = future.result()
                    except EmbeddingThrottledError:
                        at_floor = self._concurrency.limit == 1
                        self._concurrency.throttled(epoch)
                        if seconds_left() is None:
                            raise
                        if at_floor:
                            # Already one call at a time: wait before the next, longer each time.
                            resume_at, pause = time.monotonic() + pause, min(pause * 2, 4.0)
                        pending.appendleft(index)
                    else:
                        self._concurrency.succeeded()
                        pause = self._throttle_pause_s
        except BaseException:
            # Don't keep spending quota on a batch that is already lost.
            for future in in_flight:
                future.cancel()
            raise
        return [vector for vector in vectors if vector is not None]

    def count_tokens(self, text: str) -> int:
        """Estimate Titan's token count without calling the service.

        Titan's tokenizer is not public. English averages about 4 to 4.7 characters and 0.75 words per
        token, so take the larger of words * 4/3 and characters / 4: it errs high, which only makes
        chunks a little smaller, never too big for the model.
        """
        if not text:
            return 0
        words = len(text.split())
        return max(math.ceil(words * 4 / 3), math.ceil(len(text) / 4))

    def _submit(self, text: str, *, inline: bool) -> Future[list[float]]:
        if not inline and self._max_workers > 1:
            return self._executor().submit(self._embed_one, text)
        # One text, or one worker: in the calling thread, no hand-off.
        future: Future[list[float]] = Future()
        try:
            future.set_result(self._embed_one(text))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self._max_workers, thread_name_prefix="titan-embed"
                )
            return self._pool

    def _embed_one(self, text: str) -> list[float]:
        body = json.dumps(
            {"inputText": text[:TITAN_MAX_CHARS], "dimensions": self.dimension, "normalize": True}
        )
        try:
            response = self._client.invoke_model(
                modelId=self.model_id,
                body=body,
                contentType="application/json",
                accept="application/json",
            )
            payload = json.loads(response["body"].read())
        except ClientError as exc:
            raise _translate_client_error(exc, self.model_id) from exc
        except _TRANSIENT_NETWORK_ERRORS as exc:
            raise EmbeddingThrottledError(f"Bedrock could not be reached in time: {exc}") from exc
        return self._unit_vector(payload)

    def _unit_vector(self, payload: Any) -> list[float]:
        vector = payload.get("embedding") if isinstance(payload, dict) else None
        if not isinstance(vector, list) or len(vector) != self.dimension:
            got = len(vector) if isinstance(vector, list) else type(vector).__name__
            raise EmbeddingError(f"{self.model_id} returned an embedding of {got}, expected {self.dimension}")
        # Titan normalises on request; renormalising guards against float drift in the JSON round trip.
        norm = math.sqrt(math.fsum(v * v for v in vector))
        if not norm or not math.isfinite(norm):
            raise EmbeddingError(f"{self.model_id} returned a zero or non-finite embedding")
        return [float(v) / norm for v in vector]


def _translate_client_error(exc: ClientError, model_id: str) -> Exception:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    message = str(error.get("Message", exc))
    if code in _TRANSIENT_CODES:
        return EmbeddingThrottledError(f"{model_id}: {code}: {message}")
    hint = _PERMANENT_HINTS.get(code, "Bedrock refused the embedding request")
    return EmbeddingError(f"{model_id}: {hint} ({code}: {message})")
