"""The baseline of bench/bench_search.py: langchain-postgres `PGVector.similarity_search_by_vector`.

Runs in its own virtual environment (langchain-postgres pins pgvector<0.4, the Lambda layer pins 0.5.1):
bench_search.py starts it as a subprocess. Imports nothing of this repository.

    python baseline_langchain.py setup --url URL --collection NAME
    python baseline_langchain.py ids --url URL --collection NAME --queries Q.npy [--worlds W.json]
    python baseline_langchain.py qps --url URL --collection NAME --queries Q.npy [--worlds W.json]
        --clients 4 --seconds 5

`setup` creates the store's tables and collection through its API (the bench then copies the vectors in
with SQL); `ids` prints the top-10 ids per query; `qps` runs `--clients` processes for `--seconds`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


class _NoEmbeddings:
    """The bench passes vectors; the store never needs to embed text."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError

    def embed_query(self, text: str) -> list[float]:
        raise NotImplementedError


def _store(url: str, collection: str) -> Any:
    from langchain_postgres import PGVector

    return PGVector(
        _NoEmbeddings(),
        connection=url,
        collection_name=collection,
        embedding_length=384,
        use_jsonb=True,
        create_extension=False,
    )


def _search(store: Any, vector: list[float], world: str | None) -> list[str]:
    documents = store.similarity_search_by_vector(vector, k=10, filter={"world": world} if world else None)
    return [d.id for d in documents]


def _client(
    args: tuple[str, str, list[list[float]], list[str | None], float, float, int],
) -> tuple[int, list[float]]:
    url, collection, vectors, worlds, start_at, seconds, offset = args
    store = _store(url, collection)
    _search(store, vectors[0], worlds[0])  # connect and warm up before the clock starts
    time.sleep(max(0.0, start_at - time.time()))
    end = time.perf_counter() + seconds
    latencies: list[float] = []
    i = offset  # clients start at different queries, so they do not walk the same index pages in step
    while (now := time.perf_counter()) < end:
        _search(store, vectors[i % len(vectors)], worlds[i % len(worlds)])
        latencies.append(time.perf_counter() - now)
        i += 1
    return len(latencies), latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["setup", "ids", "qps"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--queries")
    parser.add_argument("--worlds")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)

    if args.mode == "setup":
        store = _store(args.url, args.collection)
        with store._make_sync_session() as session:
            print(json.dumps({"collection_uuid": str(store.get_collection(session).uuid)}))
        return 0

    vectors = np.load(args.queries).astype(float).tolist()
    worlds: list[str | None] = (
        json.loads(Path(args.worlds).read_text()) if args.worlds else [None] * len(vectors)
    )
    if args.mode == "ids":
        store = _store(args.url, args.collection)
        print(json.dumps([_search(store, v, w) for v, w in zip(vectors, worlds, strict=True)]))
        return 0

    start_at = time.time() + 2.0
    jobs = [
        (args.url, args.collection, vectors, worlds, start_at, args.seconds, 37 * c)
        for c in range(args.clients)
    ]
    with multiprocessing.get_context("fork").Pool(args.clients) as pool:
        results = pool.map(_client, jobs)
    count = sum(n for n, _ in results)
    latencies = sorted(t for _, ts in results for t in ts)
    print(
        json.dumps(
            {
                "qps": count / args.seconds,
                "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
                "p95_ms": 1000 * latencies[int(len(latencies) * 0.95)] if latencies else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
