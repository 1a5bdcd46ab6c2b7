"""Amazon Bedrock Titan Text Embeddings V2: the deployed embedder (`knowledge.ports.Embedder`)."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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
from knowledge.ports import reject_bare_string

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
    retry mode, not adaptive: adaptive's client-side rate limiter may sleep without bound. What a short
    budget leaves unretried, `EmbeddingThrottledError` hands to Step Functions' backoff or the caller::

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


class TitanEmbedder:
    """Amazon Bedrock Titan Text Embeddings V2 through `bedrock-runtime` `invoke_model`.

    Titan embeds one text per call, so a batch fans out over a small thread pool (boto3 clients are
    thread-safe). Build the client with `bedrock_client_config(timeout_s=...)`.
    """

    def __init__(
        self,
        bedrock_runtime_client: Any,
        *,
        model_id: str = TITAN_V2_MODEL_ID,
        dimension: int = 1024,
        max_workers: int = 8,
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
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        reject_bare_string(texts)
        if len(texts) <= 1 or self._max_workers == 1:
            return [self._embed_one(text) for text in texts]
        futures = [self._executor().submit(self._embed_one, text) for text in texts]
        try:
            return [future.result() for future in futures]
        except BaseException:
            # Don't keep spending quota on a batch that is already lost.
            for future in futures:
                future.cancel()
            raise

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

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self._max_workers, thread_name_prefix="titan-embed"
                )
            return self._pool

    def _embed_one(self, text: str) -> list[float]:
        if not text.strip():
            raise EmbeddingError("cannot embed an empty text")
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
