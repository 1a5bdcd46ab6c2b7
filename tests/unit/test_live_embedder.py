"""LiveEmbedder reads the store's live generation: on every query while two models run (a switch may
happen between two searches), once per connection lease while one runs."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from knowledge.embedding.hashing import HashEmbedder
from knowledge.embedding.live import SINGLE_MODEL_LEASE_SECONDS, LiveEmbedder
from knowledge.errors import EmbeddingModelMismatchError
from knowledge.ports import Embedder


class Connection:
    """Stands in for a pooled connection: hashable by identity, weak-referenceable."""


class Store:
    def __init__(self, live: tuple[str, int]) -> None:
        self.live = live
        self.reads = 0

    def live_in(self, _conn: object) -> tuple[str, int]:
        self.reads += 1
        return self.live


def embedder_for(model: str, dimension: int) -> HashEmbedder:
    embedder = HashEmbedder(dimension=dimension)
    embedder.model_id = model
    return embedder


def build(store: Store, models: list[tuple[str, int]], clock: list[float]) -> LiveEmbedder:
    factories: dict[tuple[str, int], Callable[[], Embedder]] = {
        key: functools.partial(embedder_for, *key) for key in models
    }
    return LiveEmbedder(
        factories,
        live=lambda: store.live,
        live_in=store.live_in,
        default=models[0],
        clock=lambda: clock[0],
    )


def test_one_model_reads_the_live_generation_once_per_connection_lease() -> None:
    store, clock = Store(("m-a", 16)), [100.0]
    live = build(store, [("m-a", 16)], clock)
    conn = Connection()
    for _ in range(5):
        live.bind_live(conn)
        live.embed(["the fire tithe"])
    assert store.reads == 1
    clock[0] += SINGLE_MODEL_LEASE_SECONDS + 1
    live.bind_live(conn)
    assert store.reads == 2
    live.bind_live(Connection())
    assert store.reads == 3


def test_one_model_notices_a_switched_store_when_the_lease_ends() -> None:
    store, clock = Store(("m-a", 16)), [0.0]
    live = build(store, [("m-a", 16)], clock)
    conn = Connection()
    live.bind_live(conn)
    store.live = ("m-b", 16)
    clock[0] += SINGLE_MODEL_LEASE_SECONDS + 1
    with pytest.raises(EmbeddingModelMismatchError):
        live.bind_live(conn)


def test_two_models_read_the_live_generation_on_every_query_and_follow_a_switch() -> None:
    store, clock = Store(("m-a", 16)), [0.0]
    live = build(store, [("m-a", 16), ("m-b", 32)], clock)
    conn = Connection()
    live.bind_live(conn)
    assert len(live.embed(["x"])[0]) == 16
    store.live = ("m-b", 32)
    live.bind_live(conn)
    assert len(live.embed(["x"])[0]) == 32
    assert live.model_id == "m-b"
    assert store.reads == 2
