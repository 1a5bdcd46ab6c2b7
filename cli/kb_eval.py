"""`kb search --batch FILE.jsonl` and `kb eval FILE`: many searches at once, and retrieval quality.

`--batch` reads one {"q", "world", "k"} a line ("world" defaults to --world, "k" to 10) and writes one
JSON result a line, in order: {"q", "world", "k", "hits": [...]} with the hits as `kb search --json`
has them. `kb eval` reads queries with their expected passages (knowledge.evaluation: "q", "world",
"document", "start", "end", "answers"), runs them as `kb search` would (hybrid unless --mode says
otherwise) and prints hit@1, hit@10 and MRR@10. A file with a bad line is refused before any search,
naming the line (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from knowledge.errors import InvalidQueryFileError
from knowledge.evaluation import BatchQuery, EvalQuery, evaluate, first_hit, parse_batch_line, parse_eval_line

_SEARCH_BATCH = 64  # queries embedded at once


def _lines(path: str) -> Iterator[tuple[int, str]]:
    try:
        handle: TextIO = sys.stdin if path == "-" else Path(path).open(encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise SystemExit(f"kb: cannot read {path}: {exc.strerror}") from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
        except UnicodeDecodeError as exc:
            raise SystemExit(f"kb: {path} is not UTF-8 text ({exc.reason})") from None


def _search(queries: list[tuple[str, str, int]], mode: str, *, rerank: bool = False) -> list[list[Any]]:
    from knowledge.adapters.postgres.database import Database
    from knowledge.embedding.minilm import MiniLmEmbedder
    from knowledge.queries.search import search_many
    from knowledge.reranking import SentenceReranker
    from local_runtime.paths import kb_home
    from local_runtime.postgres import DATABASE, start_embedded_postgres

    pg = start_embedded_postgres(kb_home() / "pg")
    database = Database(lambda: pg.conninfo(DATABASE))
    embedder = MiniLmEmbedder()
    reranker = SentenceReranker(embedder) if rerank else None
    results: list[list[Any]] = []
    try:
        with database.transaction() as conn:
            row = conn.execute("SELECT to_regclass('document_chunks')").fetchone()
        if row is None or row[0] is None:  # never migrated: nothing was ingested here
            return [[] for _ in queries]
        for start in range(0, len(queries), _SEARCH_BATCH):
            with database.transaction() as conn:
                results.extend(
                    search_many(
                        conn,
                        embedder,
                        queries[start : start + _SEARCH_BATCH],
                        mode=mode,  # type: ignore[arg-type]
                        reranker=reranker,
                    )
                )
    except Exception as exc:  # an empty or never-migrated database finds nothing
        if "does not exist" not in str(exc):
            raise
        return [[] for _ in queries]
    finally:
        database.close()
    return results


def cmd_search_batch(args: argparse.Namespace) -> int:
    if getattr(args, "target", "local") != "local":
        print("kb search --batch: runs on the local runtime only (not with --target aws)", file=sys.stderr)
        return 2
    try:
        batch: list[BatchQuery] = [
            parse_batch_line(line, number, default_world=args.world) for number, line in _lines(args.batch)
        ]
    except InvalidQueryFileError as exc:
        print(f"kb search --batch: {args.batch}: {exc}", file=sys.stderr)
        return 2
    results = _search([(q.q, q.world, q.k) for q in batch], args.mode, rerank=args.rerank)
    out = sys.stdout
    for query, rows in zip(batch, results, strict=True):
        record = {"q": query.q, "world": query.world, "k": query.k, "hits": [r.to_json() for r in rows]}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    try:
        queries: list[EvalQuery] = [parse_eval_line(line, number) for number, line in _lines(args.file)]
    except InvalidQueryFileError as exc:
        print(f"kb eval: {args.file}: {exc}", file=sys.stderr)
        return 2
    rankings = _search([(q.q, q.world, args.k) for q in queries], args.mode, rerank=args.rerank)
    metrics = evaluate(queries, rankings)
    if args.details:
        with Path(args.details).open("w", encoding="utf-8") as f:
            for query, rows in zip(queries, rankings, strict=True):
                rank = first_hit(query, rows)
                f.write(
                    json.dumps({"id": query.id, "q": query.q, "first_hit": rank}, ensure_ascii=False) + "\n"
                )
    result = {"file": args.file, "mode": args.mode, "rerank": args.rerank, "k": args.k, **metrics.to_json()}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{metrics.queries} queries, {args.mode} search{' reranked' if args.rerank else ''}, k={args.k}")
    print("| hit@1 | hit@10 | MRR@10 |\n|---:|---:|---:|")
    print(f"| {metrics.hit_at_1:.3f} | {metrics.hit_at_10:.3f} | {metrics.mrr_at_10:.3f} |")
    return 0


def add_eval_parser(sub: Any) -> None:
    """Register `kb eval` on the `kb` subparsers."""
    from knowledge.queries.search import SEARCH_MODES

    parser = sub.add_parser("eval", help="hit@1, hit@10 and MRR@10 of search on a file of queries")
    parser.add_argument("file", help='JSON lines: {"q", "world", "document", "start", "end", "answers"}')
    parser.add_argument("--mode", choices=SEARCH_MODES, default="hybrid", help="the ranking to evaluate")
    parser.add_argument(
        "--rerank", action="store_true", help="with the second stage (each chunk's best sentence)"
    )
    parser.add_argument(
        "--k", type=int, default=10, choices=range(10, 51), metavar="K", help="hits per query (10-50)"
    )
    parser.add_argument("--details", help="write each query's first hit rank to this JSON-lines file")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.set_defaults(func=cmd_eval)
