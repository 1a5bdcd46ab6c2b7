"""Where a request's time goes: query embedding, token counting, SQL and the handler, for `Server-Timing`.

`measuring()` opens a `RequestTimings` for the request being handled (a context variable, so concurrent
requests on threads of one process keep theirs apart); `timed_services(services)` hands the routes an
embedder and a database whose calls are recorded as the `embed`, `tokens` (the embedder's token counts, a
context pack's budget) and `sql` spans. A span's time excludes the spans nested in it: a search embeds its
query inside the database's read, and that time counts as `embed`, not as `sql`. `sql` is the time with a
pooled connection checked out (the checkout, the round trips, the rows' decoding and the domain code run
between statements), less the embedding and token counting done meanwhile.

The response header names four metrics, always all four so every answer parses the same way:

    Server-Timing: embed;dur=12.41;desc="query embedding", tokens;dur=0.52;desc="token counting",
        sql;dur=3.02;desc="SQL", handler;dur=17.90;desc="handler"

`dur` is in milliseconds (the header's unit), `handler` the whole of the function's handling, screening and
serialisation included. The header says nothing about the request's content, only how long its parts took.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, cast

from knowledge.ports import Embedder

__all__ = [
    "EMBED",
    "HANDLER",
    "SERVER_TIMING_HEADER",
    "SQL",
    "TOKENS",
    "RequestTimings",
    "measuring",
    "parse_server_timing",
    "span",
    "timed_services",
]

SERVER_TIMING_HEADER = "Server-Timing"
EMBED, TOKENS, SQL, HANDLER = "embed", "tokens", "sql", "handler"
_DESCRIPTIONS = {EMBED: "query embedding", TOKENS: "token counting", SQL: "SQL", HANDLER: "handler"}
_METRIC = re.compile(r'^(?P<name>[A-Za-z0-9_-]+);dur=(?P<dur>\d+(?:\.\d+)?)(?:;desc="[^"]*")?$')


class RequestTimings:
    """Milliseconds per span name, each span's own time (nested spans subtracted)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started = clock()
        self._ended: float | None = None
        self._own: dict[str, float] = {}
        self._open: list[float] = []  # per open span: time spent in spans nested in it so far

    @contextmanager
    def span(self, name: str) -> Iterator[None]:
        start = self._clock()
        self._open.append(0.0)
        try:
            yield
        finally:
            elapsed = self._clock() - start
            nested = self._open.pop()
            self._own[name] = self._own.get(name, 0.0) + max(0.0, elapsed - nested)
            if self._open:
                self._open[-1] += elapsed

    def end(self) -> None:
        """The request's handling is over: `handler_ms` stops counting."""
        if self._ended is None:
            self._ended = self._clock()

    def ms(self, name: str) -> float:
        return self._own.get(name, 0.0) * 1000.0

    @property
    def handler_ms(self) -> float:
        end = self._ended if self._ended is not None else self._clock()
        return (end - self._started) * 1000.0

    def server_timing(self) -> str:
        """The `Server-Timing` header value: embed, tokens, sql, handler, in that order, milliseconds."""
        values = {EMBED: self.ms(EMBED), TOKENS: self.ms(TOKENS), SQL: self.ms(SQL), HANDLER: self.handler_ms}
        return ", ".join(f'{name};dur={ms:.2f};desc="{_DESCRIPTIONS[name]}"' for name, ms in values.items())


def parse_server_timing(value: str) -> dict[str, float]:
    """{name: milliseconds} of a `Server-Timing` value as `RequestTimings` writes it; ValueError otherwise."""
    parsed: dict[str, float] = {}
    for part in (p.strip() for p in value.split(",")):
        found = _METRIC.match(part)
        if found is None:
            raise ValueError(f"not a Server-Timing metric with a duration: {part[:100]!r}")
        parsed[found["name"]] = float(found["dur"])
    return parsed


_current: ContextVar[RequestTimings | None] = ContextVar("knowledge_request_timings", default=None)


@contextmanager
def measuring(timings: RequestTimings | None = None) -> Iterator[RequestTimings]:
    """Record the spans of the request handled within (on this thread) in `timings`, or a new one."""
    timings = timings if timings is not None else RequestTimings()
    token = _current.set(timings)
    try:
        yield timings
    finally:
        timings.end()
        _current.reset(token)


@contextmanager
def span(name: str) -> Iterator[None]:
    """A span of the request being measured; nothing when none is (a CLI, a test calling a route)."""
    timings = _current.get()
    if timings is None:
        yield
        return
    with timings.span(name):
        yield


class _TimedEmbedder:
    model_id: str  # read from the inner embedder when asked (`__getattr__`): building this touches nothing
    dimension: int

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        with span(EMBED):
            return self._inner.embed(texts)

    def count_tokens(self, text: str) -> int:
        with span(TOKENS):
            return self._inner.count_tokens(text)


class _TimedReranker:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        with span(EMBED):
            result: list[float] = self._inner.scores(query, texts)
            return result


class _TimedDatabase:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with span(SQL), self._inner.transaction() as conn:
            yield conn

    def read[T](self, fn: Callable[[Any], T]) -> T:
        with span(SQL):
            result: T = self._inner.read(fn)
            return result


class _TimedServices:
    """The routes' services with their embedding and database calls timed; built lazily, as the inner."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    @property
    def database(self) -> Any:
        return _TimedDatabase(self._inner.database)

    @property
    def embedder(self) -> Embedder:
        return _TimedEmbedder(self._inner.embedder)

    @property
    def reranker(self) -> Any:
        # Its scores are a model call: timed as embedding, the span a storyteller's budget reads.
        return _TimedReranker(self._inner.reranker)


def timed_services[S](services: S) -> S:
    """`services` (anything with `database` and `embedder`) whose calls are recorded in the current request's
    timings; typed as the given services, which it stands in for."""
    return cast(S, _TimedServices(services))
