"""The embedder that follows the store's live generation, so a query is never compared with vectors of
another model.

A deployment runs its configured model and, during a re-embedding, the next one too
(`knowledge.reembedding`). It reads which generation is live (one small query: on the query's own
connection when the caller binds it first, `bind_live`, so no second connection is held; with one model
a connection's reading holds for a short lease, with two it is read on every query) and embeds
with the matching model; when the store holds vectors of a model the deployment does not run,
it raises EmbeddingModelMismatchError instead of returning vectors that would search nonsense. Vectors of
two models are never comparable, even at the same dimension, so the model id is compared, not only the
dimension.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from knowledge.errors import EmbeddingModelMismatchError
from knowledge.ports import Embedder, reject_bare_string

ModelKey = tuple[str, int]

# How long a connection's reading of the live generation is trusted when this deployment runs one model.
# With one model there is nothing to switch to, so a reading only guards against a store that another
# deployment has switched; a short lease bounds that window and takes the query off nearly every search.
SINGLE_MODEL_LEASE_SECONDS = 30.0


class LiveEmbedder:
    def __init__(
        self,
        embedders: Mapping[ModelKey, Callable[[], Embedder]],
        *,
        live: Callable[[], ModelKey],
        live_in: Callable[[Any], ModelKey],
        default: ModelKey,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if default not in embedders:
            raise ValueError(f"the default model {default} is not among {list(embedders)}")
        self._factories = dict(embedders)
        self._built: dict[ModelKey, Embedder] = {}
        self._live = live
        self._live_in = live_in
        self._default = default
        self._lock = threading.Lock()
        self._last = threading.local()
        self._clock = clock
        # conn -> (key, read at); only used with one model, a rebuild's two models read every query.
        self._leases: weakref.WeakKeyDictionary[Any, tuple[ModelKey, float]] = weakref.WeakKeyDictionary()

    def _embedder(self, key: ModelKey) -> Embedder:
        embedder = self._built.get(key)
        if embedder is None:
            with self._lock:
                embedder = self._built.get(key)
                if embedder is None:
                    embedder = self._factories[key]()
                    self._built[key] = embedder
        return embedder

    def bind_live(self, conn: Any) -> None:
        """Read the live generation on `conn` (the query's connection); this thread's embeddings use it
        until the next bind."""
        if len(self._factories) > 1:
            self._last.bound = self._checked(self._live_in(conn))
            return
        now = self._clock()
        with self._lock:
            lease = self._leases.get(conn)
        if lease is not None and now - lease[1] < SINGLE_MODEL_LEASE_SECONDS:
            self._last.bound = lease[0]
            return
        key = self._checked(self._live_in(conn))
        with self._lock:
            self._leases[conn] = (key, now)
        self._last.bound = key

    def current(self) -> Embedder:
        """The embedder of the live generation; EmbeddingModelMismatchError when this deployment has none."""
        key = getattr(self._last, "bound", None) or self._checked(self._live())
        self._last.key = key
        return self._embedder(key)

    def _checked(self, live: ModelKey) -> ModelKey:
        model, dimension = live
        key = (model, int(dimension))
        if key not in self._factories:
            raise EmbeddingModelMismatchError(
                store_model=model, store_dimension=int(dimension), embedders=list(self._factories)
            )
        return key

    @property
    def model_id(self) -> str:
        # The model of this thread's last embedding (a context pack names its tokenizer after embedding).
        return self._embedder(getattr(self._last, "key", self._default)).model_id

    @property
    def dimension(self) -> int:
        return self._embedder(getattr(self._last, "key", self._default)).dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        reject_bare_string(texts)
        return self.current().embed(texts)

    def count_tokens(self, text: str) -> int:
        return self.current().count_tokens(text)


def bind_live(conn: Any, embedder: Embedder) -> Embedder:
    """Have `embedder` (a LiveEmbedder, possibly wrapped) follow the live generation read on `conn`."""
    bind = getattr(embedder, "bind_live", None)
    if bind is not None:
        bind(conn)
    return embedder
