"""The storyteller's typed client of the knowledge API (docs/openapi.json), for game services and the CLI.

No Lambda imports it; it depends on the knowledge package only for the API's response models.

    client = KnowledgeClient.from_stack("kb-prod")            # URL from the stack's KnowledgeApiUrl output
    hits = client.search("who rules the Ember Court", world_id="emberfall", k=5).hits

Requests are signed with SigV4 (botocore's signer, the caller's AWS credentials), sent with urllib and a
timeout, and retried with exponential backoff and full jitter on 429, 5xx and connection errors, honouring
Retry-After. Every route only reads, so retrying a POST is safe. Other 4xx are raised at once as the
matching KnowledgeApiError subclass. Results are the API's own pydantic response models.
"""

from __future__ import annotations

import enum
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from knowledge.queries.models import (
    ConceptGraph,
    ConceptHistory,
    ConceptList,
    ContextPack,
    SearchResponse,
    StoryEvent,
    Timeline,
    WorldList,
)
from knowledge.queries.worlds import World
from knowledge.story_events.erasure_model import PlayerErasure

__all__ = [
    "AuthError",
    "BadRequestError",
    "KnowledgeApiError",
    "KnowledgeClient",
    "NotFoundError",
    "RetryPolicy",
    "ServiceUnavailableError",
    "ThrottledError",
    "TransportError",
    "ValidationError",
    "resolve_api_url",
]

M = TypeVar("M", bound=BaseModel)


class _Keep(enum.Enum):
    """A left-out argument: keep what is stored (None means "none")."""

    STORED = "stored"


RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class KnowledgeApiError(Exception):
    """The API refused or failed a request. `status` is None when no response came back."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str = "", details: list[Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details or []
        self.retry_after: float | None = None  # seconds the server asked for (429/503)


class BadRequestError(KnowledgeApiError):
    """400, 413, 415: the body could not be read as a JSON request."""


class ValidationError(KnowledgeApiError):
    """422: the request broke the API's rules; `details` says where."""


class AuthError(KnowledgeApiError):
    """401/403: the signature, credentials or API key were refused."""


class NotFoundError(KnowledgeApiError):
    """404: unknown world, concept or route (`code` says which)."""


class ThrottledError(KnowledgeApiError):
    """429 on every attempt."""


class ServiceUnavailableError(KnowledgeApiError):
    """5xx on every attempt (503: database or embedding briefly unavailable)."""


class TransportError(KnowledgeApiError):
    """No response on any attempt: connection refused or reset, DNS, timeout."""


_BY_STATUS: dict[int, type[KnowledgeApiError]] = {
    400: BadRequestError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    413: BadRequestError,
    415: BadRequestError,
    422: ValidationError,
    429: ThrottledError,
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4  # in all, the first included
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def delay(self, attempt: int, retry_after: float | None, rng: Callable[[], float]) -> float:
        """Full jitter: uniform in [0, min(max, base * 2^attempt)], but never before Retry-After."""
        jittered = rng() * min(self.max_delay_s, self.base_delay_s * 2**attempt)
        return min(self.max_delay_s, max(jittered, retry_after or 0.0))


def resolve_api_url(stack_name: str, *, region: str | None = None, cloudformation: Any = None) -> str:
    """The KnowledgeApiUrl output of a deployed stack."""
    if cloudformation is None:
        import boto3

        cloudformation = boto3.client("cloudformation", region_name=region)
    stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    for output in stacks[0].get("Outputs", []) if stacks else []:
        if output["OutputKey"] == "KnowledgeApiUrl":
            return str(output["OutputValue"])
    raise KnowledgeApiError(f"stack {stack_name!r} has no KnowledgeApiUrl output (deployed before the API?)")


def _region_from_url(url: str) -> str | None:
    host = urllib.parse.urlsplit(url).hostname or ""
    parts = host.split(".")
    if len(parts) > 3 and parts[1] == "execute-api":
        return parts[2]
    return None


class KnowledgeClient:
    def __init__(
        self,
        base_url: str,
        *,
        region: str | None = None,
        credentials: Any = None,
        sign: bool = True,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        opener: urllib.request.OpenerDirector | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        """`credentials`: botocore credentials (default: the standard AWS chain); `sign=False` for none."""
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self._opener = opener or urllib.request.build_opener()
        self._sleep = sleep
        self._rng = rng
        self._credentials: Any = None
        self.region = region or _region_from_url(base_url)
        if sign:
            import botocore.session

            session = botocore.session.get_session()
            self._credentials = credentials or session.get_credentials()
            self.region = self.region or session.get_config_variable("region") or "us-east-1"
            if self._credentials is None:
                raise AuthError("no AWS credentials found to sign requests with")

    @classmethod
    def from_stack(
        cls, stack_name: str, *, region: str | None = None, cloudformation: Any = None, **options: Any
    ) -> KnowledgeClient:
        url = resolve_api_url(stack_name, region=region, cloudformation=cloudformation)
        return cls(url, region=region, **options)

    # ------------------------------------------------------------ routes
    def search(
        self,
        query: str,
        world_id: str,
        *,
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        hybrid: bool = True,
        rerank: bool = False,
    ) -> SearchResponse:
        body: dict[str, Any] = {"query": query, "world_id": world_id, "k": k, "hybrid": hybrid}
        if rerank:
            body["rerank"] = True
        if filters:
            body["filters"] = dict(filters)
        return self._call("POST", "/search", SearchResponse, body=body)

    def context(
        self, world_id: str, situation: str, *, token_budget: int = 1500, **limits: int
    ) -> ContextPack:
        """`limits`: max_chunks, max_concepts, max_events."""
        body = {"world_id": world_id, "situation": situation, "token_budget": token_budget, **limits}
        return self._call("POST", "/context", ContextPack, body=body)

    def concept_history(self, world_id: str, name: str) -> ConceptHistory:
        path = f"/worlds/{_segment(world_id)}/concepts/{_segment(name)}/history"
        return self._call("GET", path, ConceptHistory)

    def relationships(
        self,
        world_id: str,
        concept_id: int,
        *,
        depth: int = 1,
        type: str | None = None,
        direction: str = "both",
    ) -> ConceptGraph:
        query = {"world_id": world_id, "depth": str(depth), "direction": direction}
        if type is not None:
            query["type"] = type
        return self._call("GET", f"/concepts/{int(concept_id)}/relationships", ConceptGraph, query=query)

    def events(
        self, world_id: str, *, since: datetime | None = None, limit: int = 50, cursor: str | None = None
    ) -> Timeline:
        query = {"limit": str(limit)}
        if since is not None:
            query["since"] = since.isoformat()
        if cursor is not None:
            query["cursor"] = cursor
        return self._call("GET", f"/worlds/{_segment(world_id)}/events", Timeline, query=query)

    def iter_events(
        self, world_id: str, *, since: datetime | None = None, page_size: int = 200
    ) -> Iterator[StoryEvent]:
        """Every event from `since` on, following the cursor page by page."""
        page = self.events(world_id, since=since, limit=page_size)
        while True:
            yield from page.events
            if page.next_cursor is None:
                return
            page = self.events(world_id, limit=page_size, cursor=page.next_cursor)

    def worlds(self) -> WorldList:
        """The worlds the knowledge base holds, with their counts of documents, concepts and events."""
        return self._call("GET", "/worlds", WorldList)

    def put_world(
        self, world_id: str, *, name: str | None = None, parent: str | _Keep | None = _Keep.STORED
    ) -> World:
        """Create `world_id` or change its name or parent (docs/worlds.md). `parent=None` detaches it from
        its parent; leaving `parent` out keeps what is stored. A cycle is a 409 (code parent_cycle), an
        unknown parent a ValidationError (invalid_parent)."""
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if parent is not _Keep.STORED:
            body["parent"] = parent
        return self._call("PUT", f"/worlds/{_segment(world_id)}", World, body=body)

    def concepts(self, world_id: str, *, prefix: str | None = None, limit: int = 200) -> ConceptList:
        """The world's concepts by name (`prefix`: names starting with it, any case)."""
        query = {"limit": str(limit)}
        if prefix is not None:
            query["prefix"] = prefix
        return self._call("GET", f"/worlds/{_segment(world_id)}/concepts", ConceptList, query=query)

    def erase_player(self, world_id: str, player_id: str) -> PlayerErasure:
        """Erase the player's story events and what they wrote (docs/privacy.md); safe to retry."""
        path = f"/worlds/{_segment(world_id)}/players/{_segment(player_id)}"
        return self._call("DELETE", path, PlayerErasure)

    # ------------------------------------------------------------ transport
    def _call(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
    ) -> M:
        url = self.base_url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        last: KnowledgeApiError | None = None
        for attempt in range(self.retry.attempts):
            if attempt:
                self._sleep(self.retry.delay(attempt - 1, last.retry_after if last else None, self._rng))
            try:
                status, headers, payload = self._send(method, url, data)
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                last = TransportError(f"{method} {path}: {getattr(exc, 'reason', exc)}")
                continue
            if 200 <= status < 300:
                return model.model_validate_json(payload)
            error = _error_from(status, payload, method, path)
            if status not in RETRYABLE_STATUSES:
                raise error
            error.retry_after = _retry_after(headers.get("retry-after"))
            last = error
        assert last is not None
        raise last

    def _send(self, method: str, url: str, data: bytes | None) -> tuple[int, dict[str, str], bytes]:
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["x-api-key"] = self.api_key
        if self._credentials is not None:
            headers = self._signed(method, url, data, headers)
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return response.status, _lower(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, _lower(exc.headers), exc.read()

    def _signed(self, method: str, url: str, data: bytes | None, headers: dict[str, str]) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        # Signed per attempt: the signature covers X-Amz-Date, and refreshable credentials may rotate.
        assert self._credentials is not None and self.region is not None
        request = AWSRequest(method=method, url=url, data=data or b"", headers=headers)
        SigV4Auth(self._credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(request)
        return dict(request.headers.items())


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()} if headers is not None else {}


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _error_from(status: int, payload: bytes, method: str, path: str) -> KnowledgeApiError:
    code, message, details = "", "", []
    try:
        parsed = json.loads(payload)
        if isinstance(parsed, dict):
            code = str(parsed.get("code", ""))
            message = str(parsed.get("message", ""))
            details = list(parsed.get("details") or [])
    except ValueError:
        message = payload[:200].decode("utf-8", "replace")
    kind = _BY_STATUS.get(status, ServiceUnavailableError if status >= 500 else KnowledgeApiError)
    text = f"{method} {path}: {status} {code + ': ' if code else ''}{message or 'no message'}"
    return kind(text, status=status, code=code, details=details)
