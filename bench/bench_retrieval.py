"""Retrieval quality on the public set in bench/retrieval/ (a SQuAD 2.0 train slice): ours against the
rankings a user would otherwise pick, with the real MiniLM embedder.

The documents go through the ingestion code itself -- parse, PII scrub, chunk (the deployed settings:
200 tokens, 32 overlap, MiniLM's tokenizer) and `store_document` into a dedicated database of the
embedded PostgreSQL, migrated as deployed -- without the Step Functions orchestration around them.
Vectors are cached by chunk content hash under .local/bench-retrieval/ (`--no-cache` re-embeds
everything). Each run rebuilds the database (HNSW graphs differ from build to build); the table is the
mean of `--runs` runs. Rows:

* vector (HNSW): `search_chunks(mode="vector")`, the API's `hybrid: false`;
* hybrid (ours, the default): BM25 from the database's per-world statistics fused with the vector arm,
  then its sentence stage (the head reordered by the query terms one sentence holds); the row without it too;
* BM25 (ours): the keyword arm alone;
* exact cosine: every chunk's vector against the query's, in numpy;
* rank_bm25: `BM25Okapi` over the same chunks, lower-cased word tokens (no stemming, no stop words);
* RRF (vector + rank_bm25): reciprocal rank fusion (k = 60) of the vector and rank_bm25 lists, 40 deep.

`--weights` also reports hybrid at other keyword weights (tuned on this set: read them as such).
`--sentence-rerank W [W ...]` adds a second stage that is measured, not shipped: hybrid's top 10
reordered by (1 - W) x its min-max-scaled score + W x the min-max-scaled best cosine between the query and
any one sentence of the chunk (MiniLM sentence vectors, cached like the chunks'), so a one-sentence fact
inside a long chunk counts at full strength.
`--baseline-chunker REV` adds the same rows for the chunker of git revision REV (the chunking
comparison). `--qps` measures hybrid queries/s on the set with concurrent client processes.

    .venv/bin/python bench/bench_retrieval.py --runs 3 [--weights 0.3 0.5 0.7] [--qps]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from knowledge import pii
from knowledge.adapters.postgres import documents
from knowledge.adapters.postgres.database import Database
from knowledge.adapters.postgres.migrations import apply_migrations
from knowledge.embedding.minilm import MINILM_DIMENSION, MINILM_MODEL_ID, MiniLmEmbedder
from knowledge.evaluation import EvalQuery, Metrics, evaluate, parse_eval_line
from knowledge.ingestion import chunking, parsing
from knowledge.model import Chunk, content_hash
from knowledge.queries.search import SearchRow, search_chunks
from local_runtime.postgres import drop_database, embedded_postgres, start_embedded_postgres

REPO = Path(__file__).resolve().parent.parent
SET = REPO / "bench" / "retrieval" / "squad"
CACHE = REPO / ".local" / "bench-retrieval"
DATABASE = "bench_retrieval"
WORLD = "squad"
DEPTH = 40
RRF_K = 60
MAX_TOKENS, OVERLAP_TOKENS = 200, 32  # the deployed CHUNK_MAX_TOKENS and CHUNK_OVERLAP_TOKENS
_TOKEN = re.compile(r"\w+")
# A sentence ends at . ! or ? (and any closing quote or bracket) before white space.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


@dataclass(frozen=True, slots=True)
class Passage:
    """A chunk as the judge reads it (knowledge.evaluation.RankedPassage)."""

    document: str
    text: str
    start: int
    end: int


class VectorCache:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.vectors: dict[str, np.ndarray[Any, Any]] = {}
        if path is not None and path.is_file():
            with np.load(path) as data:
                self.vectors = {k: data[k] for k in data.files}
        self.embedded = 0

    def embed(self, embedder: MiniLmEmbedder, chunks: Sequence[Chunk]) -> list[Any]:
        todo = [c for c in chunks if c.content_hash not in self.vectors]
        if todo:
            for c, v in zip(todo, embedder.embed([c.embedding_text for c in todo]), strict=True):
                self.vectors[c.content_hash] = np.asarray(v, dtype=np.float32)
            self.embedded += len(todo)
        return [self.vectors[c.content_hash] for c in chunks]

    def embed_texts(self, embedder: MiniLmEmbedder, texts: Sequence[str]) -> list[Any]:
        keys = [content_hash("sentence", t) for t in texts]
        todo = sorted({(k, t) for k, t in zip(keys, texts, strict=True) if k not in self.vectors})
        if todo:
            for (k, _), v in zip(todo, embedder.embed([t for _, t in todo]), strict=True):
                self.vectors[k] = np.asarray(v, dtype=np.float32)
            self.embedded += len(todo)
        return [self.vectors[k] for k in keys]

    def save(self) -> None:
        if self.path is not None and self.embedded:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.path, **self.vectors)  # type: ignore[arg-type]


def _load_chunker(revision: str | None) -> Callable[..., list[Chunk]]:
    if revision is None:
        return chunking.chunk_sections
    source = subprocess.run(
        ["git", "show", f"{revision}:layers/knowledge/knowledge/ingestion/chunking.py"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(f"chunking_{revision}", f.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.chunk_sections


def _ingest(
    database: Database, embedder: MiniLmEmbedder, cache: VectorCache, chunker: Callable[..., list[Chunk]]
) -> list[Chunk]:
    stored: list[Chunk] = []
    for path in sorted((SET / "docs").glob("*.md")):
        key = f"incoming/{WORLD}/{path.name}"
        data = path.read_bytes()
        parsed = parsing.parse_document(data, key, max_bytes=50_000_000)
        sections, counts = pii.scrub_sections(parsed.sections)
        chunks = chunker(
            sections, max_tokens=MAX_TOKENS, overlap_tokens=OVERLAP_TOKENS, count_tokens=embedder.count_tokens
        )
        vectors = cache.embed(embedder, chunks)
        with database.transaction() as conn:
            documents.store_document(
                conn,
                documents.DocumentToStore(
                    world_id=WORLD,
                    s3_key=key,
                    title=parsed.title,
                    media_type=parsed.media_type,
                    content_sha256=content_hash(key, data.decode()),
                    size_bytes=len(data),
                    embedding_model=MINILM_MODEL_ID,
                    chunks=chunks,
                    chunk_vectors=vectors,
                    pii_redactions=dict(counts),
                ),
            )
        stored.extend(chunks)
    return stored


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _rrf(*lists: Sequence[int]) -> list[int]:
    score: dict[int, float] = {}
    for ranked in lists:
        for rank, i in enumerate(ranked, start=1):
            score[i] = score.get(i, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(score, key=lambda i: (-score[i], i))


def _sentence_rerank(
    first_stage: list[list[SearchRow]],
    query_vectors: np.ndarray[Any, Any],
    sentence_vector: Callable[[str], list[np.ndarray[Any, Any]]],
    weight: float,
) -> list[list[SearchRow]]:
    def scaled(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        spread = float(x.max() - x.min()) if len(x) else 0.0
        return (x - x.min()) / spread if spread > 0 else np.zeros_like(x)

    out = []
    for rows, v in zip(first_stage, query_vectors, strict=True):
        if not rows:
            out.append(rows)
            continue
        best = np.array([max(float(s @ v) for s in sentence_vector(r.text)) for r in rows])
        score = (1 - weight) * scaled(np.array([r.score for r in rows])) + weight * scaled(best)
        out.append([rows[i] for i in np.argsort(-score, kind="stable")])
    return out


def _one_run(
    pg: Any,
    queries: list[EvalQuery],
    chunker: Callable[..., list[Chunk]],
    cache: VectorCache,
    embedder: MiniLmEmbedder,
    query_vectors: np.ndarray[Any, Any],
    weights: Sequence[float],
    rerank_weights: Sequence[float] = (),
    sentence_weights: Sequence[float] = (),
) -> dict[str, Any]:
    from rank_bm25 import BM25Okapi

    drop_database(pg, DATABASE)
    start_embedded_postgres(pg.data_dir, DATABASE)
    database = Database(lambda: pg.conninfo(DATABASE))
    with database.schema_connection() as conn:
        apply_migrations(conn, embedding_model=MINILM_MODEL_ID, embedding_dimension=MINILM_DIMENSION)
    _ingest(database, embedder, cache, chunker)
    results: dict[str, Metrics] = {}
    try:
        with database.transaction() as conn:
            rows = conn.execute(
                "SELECT d.s3_key, c.content, c.start_offset, c.end_offset, c.heading, c.embedding"
                " FROM document_chunks c JOIN narrative_documents d USING (document_id)"
                " WHERE c.world_id = %s ORDER BY c.chunk_id",
                (WORLD,),
            ).fetchall()
            passages = [Passage(r[0], r[1], r[2], r[3]) for r in rows]
            matrix = np.stack([np.asarray(r[5].to_numpy(), dtype=np.float32) for r in rows])
            by_position = {(p.document, p.start, p.end, p.text): i for i, p in enumerate(passages)}

            def ranked(
                mode: str, depth: int = 10, weight: float | None = None, sentence: float | None = None
            ) -> list[list[SearchRow]]:
                out = []
                for q, v in zip(queries, query_vectors, strict=True):
                    if weight is None and sentence is None:
                        out.append(search_chunks(conn, v, world_id=WORLD, k=depth, query=q.q, mode=mode))  # type: ignore[arg-type]
                    else:
                        from knowledge.adapters.postgres.search import (
                            KEYWORD_WEIGHT,
                            SENTENCE_WEIGHT,
                            search_by_vector,
                        )

                        hits = search_by_vector(
                            conn,
                            v,
                            world_id=WORLD,
                            k=depth,
                            keywords=q.q,
                            keyword_weight=KEYWORD_WEIGHT if weight is None else weight,
                            sentence_weight=SENTENCE_WEIGHT if sentence is None else sentence,
                        )
                        out.append([SearchRow.from_hit(h, WORLD) for h in hits])
                return out

            vector_rows = ranked("vector", DEPTH)
            results["vector (HNSW)"] = evaluate(queries, [r[:10] for r in vector_rows])
            hybrid_rows = ranked("hybrid")
            results["hybrid (ours, default)"] = evaluate(queries, hybrid_rows)
            results["hybrid without its sentence stage"] = evaluate(queries, ranked("hybrid", sentence=0.0))
            results["BM25 (ours, in PostgreSQL)"] = evaluate(queries, ranked("keyword"))
            for w in weights:
                results[f"hybrid, keyword weight {w:g}"] = evaluate(queries, ranked("hybrid", weight=w))
            for w in sentence_weights:
                results[f"hybrid, sentence weight {w:g}"] = evaluate(queries, ranked("hybrid", sentence=w))
        if rerank_weights:
            texts = sorted({r.text for rows_ in hybrid_rows for r in rows_})
            pieces = {t: [p for p in _SENTENCE_BREAK.split(t) if p.strip()] or [t] for t in texts}
            flat = [p for t in texts for p in pieces[t]]
            by_text = dict(zip(flat, cache.embed_texts(embedder, flat), strict=True))
            for w in rerank_weights:
                reranked = _sentence_rerank(
                    hybrid_rows, query_vectors, lambda t: [by_text[p] for p in pieces[t]], w
                )
                results[f"hybrid + sentence max-sim second stage, weight {w:g}"] = evaluate(queries, reranked)
        exact = np.argsort(-(query_vectors @ matrix.T), axis=1, kind="stable")[:, :10]
        results["exact cosine (numpy)"] = evaluate(queries, [[passages[i] for i in row] for row in exact])
        # rank_bm25 indexes what is stored and embedded: heading path and chunk text.
        bm25 = BM25Okapi([_tokens(f"{r[4]} {r[1]}") for r in rows])
        bm25_lists = [
            list(np.argsort(-bm25.get_scores(_tokens(q.q)), kind="stable")[:DEPTH]) for q in queries
        ]
        results["BM25 (rank_bm25)"] = evaluate(queries, [[passages[i] for i in b[:10]] for b in bm25_lists])
        fused = []
        for vrow, b in zip(vector_rows, bm25_lists, strict=True):
            v_ids = [by_position[(r.document, r.start, r.end, r.text)] for r in vrow]
            fused.append([passages[i] for i in _rrf(v_ids, [int(i) for i in b])[:10]])
        results["RRF (vector + rank_bm25)"] = evaluate(queries, fused)
        spans = sum(1 for p in passages if re.search(r"\n[^\S\n]*\n", p.text))
    finally:
        database.close()
    return {
        "metrics": {name: m.to_json() for name, m in results.items()},
        "chunks": len(passages),
        "chunks_spanning_paragraphs": spans,
    }


def _client(args: tuple[str, list[str], list[list[float]], float, str]) -> int:
    conninfo, texts, vectors, seconds, mode = args
    from knowledge.adapters.postgres import search
    from knowledge.adapters.postgres.search import search_by_vector

    hybrid = mode.startswith("hybrid")
    # "_statement": the plain statement over the partitioned table, planned on every call, as before
    # migration 0014 (pool processes serve every mode, so each sets the path it measures).
    if not hasattr(search, "_bench_world_alone"):
        search._bench_world_alone = search._world_alone  # type: ignore[attr-defined]
    original = search._bench_world_alone  # type: ignore[attr-defined]
    search._world_alone = (lambda *_: ([], False)) if mode.endswith("_statement") else original

    database = Database(lambda: conninfo)
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:  # the API's path: the read pool, one statement per search
        i = done % len(texts)

        def one(conn: Any, i: int = i) -> Any:
            keywords = texts[i] if hybrid else None
            return search_by_vector(conn, vectors[i], world_id=WORLD, k=10, keywords=keywords)

        database.read(one)
        done += 1
    database.close()
    return done


def _qps(
    pg: Any, queries: list[EvalQuery], vectors: np.ndarray[Any, Any], clients: int, seconds: float
) -> dict[str, Any]:
    """Queries/s of hybrid and of vector-only search, through their paths and as the plain statement,
    with the world in the shared partition and then promoted to its own, alternated three times
    (medians): the same load."""
    import os

    conninfo = pg.conninfo(DATABASE)
    texts = [q.q for q in queries]
    samples: dict[str, list[float]] = {
        "hybrid": [],
        "hybrid_statement": [],
        "vector": [],
        "vector_statement": [],
    }
    promoted: dict[str, list[float]] = {
        "hybrid_own_partition": [],
        "hybrid_own_partition_statement": [],
        "vector_own_partition": [],
        "vector_own_partition_statement": [],
    }
    with psycopg.connect(conninfo, autocommit=True) as owner:
        owner.execute("VACUUM ANALYZE")  # as autovacuum soon would after the set was stored
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        for modes in (samples, promoted):
            if modes is promoted:
                # As deployed, a world of this size (over 0010's threshold) gets its own partition and graph.
                with psycopg.connect(conninfo, autocommit=True) as owner:
                    owner.execute("SELECT promote_world_chunks(%s)", (WORLD,))
                    owner.execute("VACUUM ANALYZE")
            for _ in range(3):
                for mode in modes:
                    work = [(conninfo, texts, vectors.tolist(), seconds, mode)] * clients
                    modes[mode].append(sum(pool.map(_client, work)) / seconds)
    samples |= promoted
    return {
        "clients": clients,
        "seconds": seconds,
        "load_average": os.getloadavg()[0],
        **{f"{mode}_qps": statistics.median(v) for mode, v in samples.items()},
        "samples": samples,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from local_runtime.paths import kb_home

    queries = [parse_eval_line(line, n) for n, line in enumerate((SET / "queries.jsonl").open(), start=1)]
    embedder = MiniLmEmbedder()
    cache = VectorCache(None if args.no_cache else CACHE / "vectors.npz")
    query_vectors = np.asarray(embedder.embed([q.q for q in queries]), dtype=np.float32)
    pg = start_embedded_postgres((args.home or kb_home()) / "pg", DATABASE)
    report: dict[str, Any] = {"queries": len(queries), "runs": args.runs, "chunkers": {}}
    chunkers = {"ours": None} | (
        {f"git {args.baseline_chunker}": args.baseline_chunker} if args.baseline_chunker else {}
    )
    for label, revision in chunkers.items():
        chunker = _load_chunker(revision)
        runs = [
            _one_run(
                pg,
                queries,
                chunker,
                cache,
                embedder,
                query_vectors,
                args.weights if revision is None else [],
                args.sentence_rerank if revision is None else [],
                args.sentence_weights if revision is None else [],
            )
            for _ in range(args.runs)
        ]
        names = list(runs[0]["metrics"])
        report["chunkers"][label] = {
            "chunks": runs[0]["chunks"],
            "chunks_spanning_paragraphs": runs[0]["chunks_spanning_paragraphs"],
            "mean": {
                n: {
                    m: round(statistics.fmean(r["metrics"][n][m] for r in runs), 4)
                    for m in ("hit@1", "hit@10", "mrr@10")
                }
                for n in names
            },
            "samples": [r["metrics"] for r in runs],
        }
    cache.save()
    if args.qps:
        # The database of the last run holds the set chunked by the current chunker only when it ran last.
        if args.baseline_chunker:
            _one_run(pg, queries, _load_chunker(None), cache, embedder, query_vectors, [])
        report["hybrid_throughput"] = _qps(pg, queries, query_vectors, args.clients, args.seconds)
    report["embedded_this_run"] = cache.embedded
    return report


def _print(report: dict[str, Any]) -> None:
    for label, r in report["chunkers"].items():
        print(
            f"\nchunker {label}: {r['chunks']} chunks, {r['chunks_spanning_paragraphs']} spanning a paragraph break;"
            f" {report['queries']} queries, mean of {report['runs']} run(s)\n"
        )
        print("| run | hit@1 | hit@10 | MRR@10 |\n|---|---:|---:|---:|")
        for name, m in r["mean"].items():
            print(f"| {name} | {m['hit@1']:.3f} | {m['hit@10']:.3f} | {m['mrr@10']:.3f} |")
    if "hybrid_throughput" in report:
        t = report["hybrid_throughput"]
        print(
            f"\nhybrid search: {t['hybrid_qps']:,.0f} queries/s (as the plain statement"
            f" {t['hybrid_statement_qps']:,.0f}), vector only {t['vector_qps']:,.0f}"
            f" (as the plain statement {t['vector_statement_qps']:,.0f}); with the world in its own partition"
            f" hybrid {t['hybrid_own_partition_qps']:,.0f} (plain {t['hybrid_own_partition_statement_qps']:,.0f}),"
            f" vector only {t['vector_own_partition_qps']:,.0f} (plain {t['vector_own_partition_statement_qps']:,.0f})"
            f" ({t['clients']} clients, {t['seconds']:g} s each, medians of 3; load {t['load_average']:.1f})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--weights", type=float, nargs="*", default=[])
    parser.add_argument(
        "--sentence-rerank",
        metavar="W",
        type=float,
        nargs="*",
        default=[],
        help="measure the sentence second stage",
    )
    parser.add_argument(
        "--sentence-weights",
        metavar="W",
        type=float,
        nargs="*",
        default=[],
        help="also measure hybrid with these weights of its sentence stage",
    )
    parser.add_argument(
        "--baseline-chunker", metavar="REV", help="also measure the chunker of git revision REV"
    )
    parser.add_argument("--no-cache", action="store_true", help="embed every chunk afresh")
    parser.add_argument("--qps", action="store_true", help="also measure hybrid queries/s on the set")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--home", type=Path, default=None, help="directory of the embedded PostgreSQL (pg/)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.runs < 1 or any(
        not 0 <= w <= 1 for w in [*args.weights, *args.sentence_rerank, *args.sentence_weights]
    ):
        parser.error("--runs must be at least 1 and every weight within 0-1")
    from local_runtime.paths import kb_home

    with embedded_postgres((args.home or kb_home()) / "pg", DATABASE):  # stopped after, if started here
        report = run(args)
    if not args.json:
        _print(report)
    print(
        json.dumps(
            report
            if args.json
            else {k: v for k, v in report.items() if k != "chunkers"}
            | {"mean": {label: r["mean"] for label, r in report["chunkers"].items()}}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
