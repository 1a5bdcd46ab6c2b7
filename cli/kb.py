"""`kb`: ingest, search, delete and inspect the knowledge base on the local runtime.

Uploads go through the deployed wiring (S3 event → EventBridge rule → state machine → handlers), exactly
as in AWS; search and status read the embedded PostgreSQL directly (or a running `kb serve`: cli.kb_warm).
Every command with an AWS meaning takes `--target aws --stack-name NAME`: the read commands ask a deployed
stack's knowledge API (SigV4-signed), ingest, delete and status use its documents bucket (cli.kb_aws).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli import kb_aws_ingest, kb_eval, kb_explore, kb_explorer_publish, kb_warm, kb_worlds
from cli import kb_validation as valid
from local_runtime.paths import kb_home

_EPILOG = """\
State lives under $KB_HOME (default: .local/ in the repository): the embedded PostgreSQL, the object
store and the logs. The embedded PostgreSQL keeps running after a command, one per $KB_HOME; `kb stop`
stops it. While `kb serve` runs for a $KB_HOME, the read commands (search, context, history,
relationships, events, worlds) ask it over HTTP instead of starting PostgreSQL and loading the model
(KB_NO_SERVER=1: never). Exit status: 0 done, 1 the operation failed, 2 bad usage.
"""

_WAVE = 4  # executions in flight at once: 2 cores, and the embedder is CPU-bound
stdout = Console()
stderr = Console(stderr=True, soft_wrap=True)  # an error is one line, whatever the terminal width


def _expand(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.name != "README.md"))
        elif path.is_file():
            files.append(path)
        else:
            stderr.print(f"kb ingest: no such file or directory: {raw}", markup=False)
            raise SystemExit(2)
    if not files:
        stderr.print(f"kb ingest: no files to ingest in {', '.join(paths)}", markup=False)
        raise SystemExit(2)
    return files


def _outcome(path: Path, key: str, description: dict[str, Any]) -> dict[str, Any]:
    if description["status"] != "SUCCEEDED":
        reason = f"{description.get('error', 'execution failed')}: {description.get('cause', '')}".strip(": ")
        return {"path": str(path), "key": key, "status": "failed", "chunks": 0, "reason": reason}
    output = json.loads(description.get("output") or "{}")
    return {
        "path": str(path),
        "key": key,
        "status": output.get("status", "unknown"),
        "chunks": int(output.get("chunks") or 0),
        "reason": output.get("reason"),
    }


def cmd_ingest(args: argparse.Namespace) -> int:
    from local_runtime.cloud import LocalCloud

    files = _expand(args.paths)
    results: list[dict[str, Any]] = []
    if args.target == "aws":
        from cli.kb_aws import upload
        from cli.kb_aws_ingest import ingest_and_wait

        return _print_ingest(args, ingest_and_wait(args, files) if args.wait else upload(args, files))
    with (
        LocalCloud() as cloud,
        Progress(
            TextColumn("[bold]ingesting"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=stderr,
            disable=args.json or not stderr.is_terminal,
        ) as progress,
    ):
        task = progress.add_task("", total=len(files))
        for start in range(0, len(files), _WAVE):
            wave = []
            for path in files[start : start + _WAVE]:
                key = f"incoming/{args.world}/{path.name}"
                with cloud.capture_executions() as started:
                    cloud.s3.put_object(Bucket=cloud.bucket, Key=key, Body=path.read_bytes())
                wave.append((path, key, started))
            for path, key, started in wave:
                if not started:
                    results.append(
                        {
                            "path": str(path),
                            "key": key,
                            "status": "failed",
                            "chunks": 0,
                            "reason": "no workflow was started for the upload",
                        }
                    )
                else:
                    results.append(_outcome(path, key, cloud.wait(started[-1])))
                progress.update(task, advance=1, description=path.name)
    return _print_ingest(args, results)


def _print_ingest(args: argparse.Namespace, results: list[dict[str, Any]]) -> int:
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        table = Table("file", "status", "chunks", "reason")
        colours = {
            "ingested": "green",
            "unchanged": "cyan",
            "quarantined": "yellow",
            "uploaded": "green",
            "failed": "red",
            "timeout": "red",
        }
        for r in results:
            colour = colours.get(r["status"], "white")
            table.add_row(
                escape(Path(r["path"]).name),
                f"[{colour}]{r['status']}[/]",
                str(r["chunks"]),
                escape(r["reason"] or ""),
            )
        stdout.print(table)
    return 1 if any(r["status"] in ("failed", "timeout") for r in results) else 0


def _open_database() -> Any:
    from knowledge.adapters.postgres.database import Database
    from local_runtime.postgres import DATABASE, start_embedded_postgres

    pg = start_embedded_postgres(kb_home() / "pg")
    return Database(lambda: pg.conninfo(DATABASE))


def _api_client(args: argparse.Namespace) -> Any:
    """The storyteller client of a deployed stack (URL from its KnowledgeApiUrl output), or exit 2."""
    from knowledge_client import KnowledgeApiError, KnowledgeClient

    if not args.stack_name:
        raise SystemExit(f"kb {args.command}: --target aws needs --stack-name")
    try:
        return KnowledgeClient.from_stack(args.stack_name, region=args.region)
    except KnowledgeApiError as exc:
        raise SystemExit(f"kb {args.command}: {exc}") from None


def _search_aws(args: argparse.Namespace) -> list[Any]:
    from knowledge.queries.search import SearchRow
    from knowledge_client import NotFoundError, ValidationError

    client = kb_explore.remote_client(args)  # the stack's (--target aws) or the running `kb serve`'s
    try:
        response = client.search(
            args.query, args.world, k=args.k, hybrid=args.mode != "vector", rerank=args.rerank
        )
    except NotFoundError as exc:
        if exc.code != "unknown_world":
            raise
        raise kb_explore.OperationFailedError(_no_world(args.world)) from None
    except ValidationError as exc:
        raise SystemExit(f"kb search: {exc}") from None
    return [SearchRow.from_hit(h, args.world) for h in response.hits]


def _search_local(args: argparse.Namespace) -> list[Any]:
    from knowledge.adapters.postgres.worlds import world_exists
    from knowledge.embedding.minilm import MiniLmEmbedder
    from knowledge.queries.search import search_chunks
    from knowledge.reranking import SentenceReranker

    database = _open_database()
    embedder = MiniLmEmbedder()
    vector = embedder.embed([args.query])[0]
    reranker = SentenceReranker(embedder) if args.rerank else None
    try:
        with database.transaction() as conn:
            if not world_exists(conn, args.world):
                raise kb_explore.OperationFailedError(_no_world(args.world))
            return list(
                search_chunks(
                    conn,
                    vector,
                    world_id=args.world,
                    k=args.k,
                    query=args.query,
                    mode=args.mode,
                    reranker=reranker,
                )
            )
    except kb_explore.OperationFailedError:
        raise
    except Exception as exc:  # an empty or never-migrated database holds no worlds
        if "does not exist" in str(exc):
            raise kb_explore.OperationFailedError(_no_world(args.world)) from None
        raise
    finally:
        database.close()


def _no_world(world: str) -> str:
    return f"no world {world!r} (ingest documents into it first; `kb worlds` lists them)"


def _remote(args: argparse.Namespace) -> bool:
    """Ask an API rather than the database: --target aws, or a `kb serve` running for this $KB_HOME."""
    return args.target == "aws" or kb_warm.local_client() is not None


def cmd_search(args: argparse.Namespace) -> int:
    if args.batch:
        if args.query is not None:
            raise SystemExit("kb search: give a query or --batch FILE, not both")
        return kb_eval.cmd_search_batch(args)
    if args.query is None or args.world is None:
        raise SystemExit("kb search: a query and --world are required (or --batch FILE)")
    hits = _search_aws(args) if _remote(args) else _search_local(args)
    if args.json:
        print(json.dumps([h.to_json() for h in hits], indent=2))
        return 0
    if not hits:
        stdout.print(f"no results in world {args.world!r}")
    for hit in hits:
        # Markdown heading paths usually start with the document's own title: show it once.
        where = (
            hit.heading if hit.heading.startswith(hit.title) else f"{hit.title} › {hit.heading or '(top)'}"
        )
        stdout.print(
            f"[bold]{hit.rank}.[/] {hit.score:.3f}  [cyan]{escape(where)}[/]"
            f"  [dim]{escape(f'{hit.document} [{hit.start}:{hit.end}]')}[/]"
        )
        excerpt = " ".join(hit.text.split())
        stdout.print(f"   {escape(excerpt[:280])}{'…' if len(excerpt) > 280 else ''}")
    return 0


def cmd_context(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from knowledge.embedding.minilm import MiniLmEmbedder
    from knowledge.errors import UnknownWorldError
    from knowledge.queries.context_pack import build_context_pack
    from knowledge.queries.models import ContextRequest

    try:
        request = ContextRequest(world_id=args.world, situation=args.situation, token_budget=args.budget)
    except ValidationError as exc:
        stderr.print(f"kb context: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", markup=False)
        return 2
    if _remote(args):
        from knowledge_client import NotFoundError

        try:
            client = kb_explore.remote_client(args)
            pack = client.context(args.world, args.situation, token_budget=args.budget)
        except NotFoundError:
            stderr.print(f"kb context: no world {args.world!r} (ingest documents into it first)")
            return 1
        return _print_pack(args, pack)
    database = _open_database()
    try:
        with database.transaction() as conn:
            pack = build_context_pack(conn, MiniLmEmbedder(), request)
    except UnknownWorldError:
        stderr.print(f"kb context: no world {args.world!r} (ingest documents into it first)")
        return 1
    except Exception as exc:  # an empty or never-migrated database holds no worlds either
        if "does not exist" not in str(exc):
            raise
        stderr.print(f"kb context: no world {args.world!r} (ingest documents into it first)")
        return 1
    finally:
        database.close()
    return _print_pack(args, pack)


def _print_pack(args: argparse.Namespace, pack: Any) -> int:
    if args.json:
        print(pack.model_dump_json(indent=2))
        return 0
    stdout.print(f"[bold]context for {args.world}[/]: {pack.tokens_used}/{pack.token_budget} tokens")
    for concept in pack.concepts:
        stdout.print(
            f"[cyan]{escape(concept.name)}[/] [dim]({escape(concept.kind)}, v{concept.version})[/]:"
            f" {escape(concept.description)}"
        )
    for event in pack.events:
        stdout.print(
            f"[magenta]{event.occurred_at:%Y-%m-%d %H:%M}[/] {escape(event.kind)}: {escape(event.summary)}"
        )
    for chunk in pack.chunks:
        c = chunk.citation
        stdout.print(
            f"[bold]{chunk.similarity:.3f}[/] [dim]{escape(f'{c.document_key} [{c.start}:{c.end}]')}[/]"
            f" {escape(c.heading)}"
        )
        excerpt = " ".join(chunk.text.split())
        stdout.print(f"   {escape(excerpt[:280])}{'…' if len(excerpt) > 280 else ''}")
    return 0


def cmd_bench_search(args: argparse.Namespace) -> int:
    import importlib.util

    from local_runtime.paths import REPO_ROOT

    # The benchmark lives with the others under bench/, outside the installed packages.
    spec = importlib.util.spec_from_file_location("bench_search", REPO_ROOT / "bench" / "bench_search.py")
    if spec is None or spec.loader is None:
        raise SystemExit("kb: bench/bench_search.py not found")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_search"] = module  # client processes pickle its functions by module name
    spec.loader.exec_module(module)
    argv = ["--chunks", str(args.chunks), "--clients", str(args.clients), "--seconds", str(args.seconds)]
    if args.worlds is not None:
        argv += ["--layouts", "--worlds", str(args.worlds)]
    return int(module.main([*argv, "--json"] if args.json else argv))


def cmd_delete(args: argparse.Namespace) -> int:
    from local_runtime.cloud import LocalCloud

    key = f"incoming/{args.world}/{args.name}"
    if args.target == "aws":
        from cli.kb_aws import delete_document

        stdout.print(f"{escape(key)}: {delete_document(args)}")
        return 0
    if not (kb_home() / "s3" / key).is_file():
        # The object store persists under $KB_HOME/s3: an object not there is absent, no stack to start.
        stdout.print(f"{escape(key)}: absent")
        return 0
    with LocalCloud() as cloud:
        with cloud.capture_executions() as started:
            cloud.s3.delete_object(Bucket=cloud.bucket, Key=key)
        result = json.loads(cloud.wait(started[-1]).get("output") or "{}") if started else {}
    status = result.get("status", "absent")
    stdout.print(
        f"{escape(key)}: {status}" + (f" ({result['chunks']} chunks removed)" if result.get("chunks") else "")
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from knowledge.adapters.postgres.documents import world_status

    if args.target == "aws":
        from cli.kb_aws import status

        return _print_status(args, status(args))
    database = _open_database()
    try:
        with database.transaction() as conn:
            rows = world_status(conn)
    except Exception as exc:
        if "does not exist" not in str(exc):
            raise
        rows = []
    finally:
        database.close()
    return _print_status(
        args,
        [
            {"world": r.world_id, "documents": r.documents, "chunks": r.chunks, "quarantined": r.quarantined}
            for r in rows
        ],
    )


def _print_status(args: argparse.Namespace, rows: list[dict[str, Any]]) -> int:
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table("world", "documents", "chunks", "quarantined")
    for r in rows:
        chunks = "-" if r["chunks"] is None else str(r["chunks"])
        table.add_row(escape(r["world"]), str(r["documents"]), chunks, str(r["quarantined"]))
    stdout.print(table)
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    from local_runtime.postgres import drop_database, start_embedded_postgres

    home = kb_home()
    drop_database(start_embedded_postgres(home / "pg"))
    for folder in ("s3", "logs"):
        shutil.rmtree(home / folder, ignore_errors=True)
    stdout.print(f"reset the local knowledge base under {home}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from local_runtime.postgres import LocalBackupError, dump_database, start_embedded_postgres

    target = Path(args.file)
    if target.exists() and not args.force:
        stderr.print(f"kb backup: {target} exists; pass --force to overwrite it")
        return 2
    if not target.parent.is_dir():
        stderr.print(f"kb backup: no such directory: {target.parent}")
        return 2
    try:
        dump_database(start_embedded_postgres(kb_home() / "pg"), target)
    except LocalBackupError as exc:
        stderr.print(f"kb backup: {exc}")
        return 1
    stdout.print(f"backed up the local knowledge base to {target} ({target.stat().st_size:,} bytes)")
    return 0


def _holds_worlds(pg: Any) -> bool:
    import psycopg

    from local_runtime.postgres import DATABASE

    with psycopg.connect(pg.conninfo(DATABASE)) as conn:
        if conn.execute("SELECT to_regclass('worlds')").fetchone() == (None,):
            return False
        return conn.execute("SELECT EXISTS (SELECT 1 FROM worlds)").fetchone() == (True,)


def cmd_restore(args: argparse.Namespace) -> int:
    from local_runtime.postgres import LocalBackupError, restore_database, start_embedded_postgres

    source = Path(args.file)
    if not source.is_file():
        stderr.print(f"kb restore: no such file: {source}")
        return 2
    pg = start_embedded_postgres(kb_home() / "pg")
    if _holds_worlds(pg) and not args.replace:
        stderr.print(f"kb restore: {kb_home()} already holds worlds; pass --replace to replace them")
        return 2
    try:
        restore_database(pg, source)
    except LocalBackupError as exc:
        stderr.print(f"kb restore: {exc}")
        return 1
    stdout.print(f"restored {source} into the local knowledge base under {kb_home()}")
    return 0


def cmd_erase_player(args: argparse.Namespace) -> int:
    import getpass

    from pydantic import ValidationError

    from knowledge.errors import UnknownWorldError
    from knowledge.story_events.erasure import erase_player
    from knowledge.story_events.erasure_model import PlayerErasureRequest

    try:
        request = PlayerErasureRequest(world_id=args.world, player_id=args.player)
    except ValidationError as exc:
        stderr.print(f"kb erase-player: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}")
        return 2
    if args.target == "aws":
        from knowledge_client import NotFoundError

        try:
            result = _api_client(args).erase_player(args.world, args.player)
        except NotFoundError:
            stderr.print(f"kb erase-player: no world {args.world!r}")
            return 1
    else:
        audit_log = kb_home() / "audit.log"

        def audit(message: str, record: dict[str, Any]) -> None:
            with audit_log.open("a", encoding="utf-8") as log:
                log.write(json.dumps({"message": message, **record}) + "\n")

        database = _open_database()
        try:
            result = erase_player(
                database.transaction, request, requested_by=f"local:{getpass.getuser()}", audit=audit
            )
        except UnknownWorldError:
            stderr.print(f"kb erase-player: no world {args.world!r}")
            return 1
        except Exception as exc:  # a never-migrated database holds no worlds either
            if "does not exist" not in str(exc):
                raise
            stderr.print(f"kb erase-player: no world {args.world!r}")
            return 1
        finally:
            database.close()
    if args.json:
        print(result.model_dump_json(indent=2))
        return 0
    stdout.print(
        f"erased from {result.world_id}: {result.events_erased} events,"
        f" {result.concept_versions_erased} concept versions; {result.concepts_reverted} concepts reverted,"
        f" {result.concepts_removed} removed (audit record {result.player_ref})"
    )
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops `kb serve` the way Ctrl-C does: through every `with` exit


def cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import time

    import boto3

    from cli.kb_site import StaticSite
    from local_runtime.api_gateway import LoopbackApi, RouteTable, lambda_proxy
    from local_runtime.cloud import REGION, LocalCloud
    from local_runtime.postgres import stop_started_servers

    def not_up(event: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("the local stack is not up")  # never served: the server starts after the stack

    try:  # listen first, so a taken port fails at once rather than after the stack's start
        api = LoopbackApi(not_up, host=args.host, port=args.port)
        api.static = StaticSite()  # the lore explorer at / (cli/explorer/)
    except OSError as exc:
        stderr.print(f"kb serve: cannot listen on {args.host}:{args.port}: {exc.strerror}")
        return 1
    # Stop what this command starts: the embedded PostgreSQL only if it was not already running.
    postgres_was_running = (kb_home() / "pg" / "postmaster.pid").exists()
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with LocalCloud() as cloud:
            apigateway = boto3.client("apigateway", region_name=REGION)
            api.routes = RouteTable.from_rest_api(apigateway, cloud.physical_ids["KnowledgeApi"])
            # Each route invokes the function the template integrates it with, as API Gateway does.
            api.invoke = lambda_proxy(
                api.routes,
                cloud.functions["KnowledgeApiFunction"],
                boto3.client("lambda", region_name=REGION),
            )
            with api:
                # One line on stdout, flushed: a script (or a test) reads the URL from it.
                kb_warm.record_server(api.url)  # the warm path of the other commands (cli.kb_warm)
                print(f"kb serve: {api.url} (Ctrl-C to stop)", flush=True)
                stderr.print(f"lore explorer: {api.url.removesuffix('/v1')}/", markup=False)
                try:
                    while True:
                        # Short sleeps: a signal the kernel hands to another thread only trips Python's
                        # flag, which the main thread acts on when it next wakes.
                        time.sleep(0.5)
                except KeyboardInterrupt:
                    for s in previous:  # a second Ctrl-C must not cut the cleanup short
                        signal.signal(s, signal.SIG_IGN)
    except KeyboardInterrupt:
        return 130  # interrupted while starting; LocalCloud closed what it had started
    finally:
        kb_warm.clear_server()
        api.close()
        if not postgres_was_running:
            stop_started_servers()
        for s, handler in previous.items():
            signal.signal(s, handler)
    stderr.print("kb serve: stopped")
    return 0


_WORLD_HELP = "the world's id: lowercase letters, digits and '-', at most 63 characters (e.g. emberfall)"


def _add_target_arguments(
    parser: argparse.ArgumentParser,
    aws: str = "aws: a deployed stack's knowledge API (SigV4, your AWS credentials)",
) -> None:
    parser.add_argument(
        "--target",
        choices=("local", "aws"),
        default="local",
        help=f"local: this $KB_HOME (through a running `kb serve` when there is one); {aws}",
    )
    parser.add_argument("--stack-name", help="the deployed stack (--target aws); its KnowledgeApiUrl output")
    parser.add_argument("--region", help="the stack's region (--target aws; default: your AWS configuration)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kb",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    ingest = sub.add_parser(
        "ingest", help="upload files as incoming/<world>/<name> and wait for the workflow"
    )
    ingest.add_argument("paths", nargs="+", help="files or folders (a folder's README.md is skipped)")
    ingest.add_argument("--world", required=True, type=valid.world_id, help=_WORLD_HELP)
    ingest.add_argument("--json", action="store_true", help="print [{path, key, status, chunks, reason}]")
    _add_target_arguments(ingest, "aws: upload to the stack's documents bucket (its workflow runs there)")
    kb_aws_ingest.add_arguments(ingest)
    ingest.set_defaults(func=cmd_ingest)

    search = sub.add_parser("search", help="semantic search within one world")
    search.add_argument(
        "query", nargs="?", type=valid.query_text, help="what to look for (1-2000 characters)"
    )
    search.add_argument("--world", type=valid.world_id, help=_WORLD_HELP + " (required without --batch)")
    search.add_argument(
        "--batch",
        metavar="FILE",
        help='JSON lines of {"q", "world", "k"} (- for stdin): one JSON result a line',
    )
    search.add_argument(
        "--mode",
        choices=("hybrid", "vector", "keyword"),
        default="hybrid",
        help="hybrid (default): BM25 + vector",
    )
    search.add_argument(
        "--rerank",
        action="store_true",
        help="reorder the top K by a second stage (each chunk's best sentence)",
    )
    search.add_argument(
        "--k", type=valid.k, default=5, metavar="K", help=f"how many passages (1-{valid.MAX_K}, as the API)"
    )
    search.add_argument("--json", action="store_true", help="print the hits as JSON")
    _add_target_arguments(search)
    search.set_defaults(func=cmd_search)

    context = sub.add_parser("context", help="a context pack for a situation within a token budget")
    context.add_argument("situation", type=valid.situation_text, help="the scene (1-4000 characters)")
    context.add_argument("--world", required=True, type=valid.world_id, help=_WORLD_HELP)
    context.add_argument("--budget", type=valid.budget, default=1500, help="token budget (64-16000)")
    context.add_argument("--json", action="store_true", help="print the pack as the API's JSON")
    _add_target_arguments(context)
    context.set_defaults(func=cmd_context)

    kb_eval.add_eval_parser(sub)

    bench = sub.add_parser("bench", help="benchmarks on the local runtime")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    bench_search = bench_sub.add_parser(
        "search", help="search queries/s and recall@10 against langchain-postgres (builds a cached corpus)"
    )
    bench_search.add_argument("--chunks", type=int, default=100_000, help="corpus size in chunks")
    bench_search.add_argument("--clients", type=int, default=4, help="concurrent client processes")
    bench_search.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    bench_search.add_argument("--json", action="store_true", help="print the results as JSON")
    bench_search.add_argument(
        "--worlds",
        type=int,
        default=None,
        help="compare chunk-table layouts across N worlds of Zipf-like sizes",
    )
    bench_search.set_defaults(func=cmd_bench_search)

    delete = sub.add_parser("delete", help="delete incoming/<world>/<name> and its chunks")
    delete.add_argument("name", type=valid.document_name, help="the document's file name, as ingested")
    delete.add_argument("--world", required=True, type=valid.world_id, help=_WORLD_HELP)
    _add_target_arguments(delete, "aws: delete it from the stack's documents bucket")
    delete.set_defaults(func=cmd_delete)

    status = sub.add_parser("status", help="documents, chunks and quarantined uploads per world")
    status.add_argument("--json", action="store_true", help="print [{world, documents, chunks, quarantined}]")
    _add_target_arguments(status, "aws: count the stack's documents bucket (no chunk counts there)")
    status.set_defaults(func=cmd_status)

    backup = sub.add_parser("backup", help="pg_dump the local database to FILE (docs/dr.md)")
    backup.add_argument("file", help="where to write the dump")
    backup.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    backup.set_defaults(func=cmd_backup)

    restore = sub.add_parser("restore", help="restore a `kb backup` FILE into the local database")
    restore.add_argument("file", help="a dump written by `kb backup`")
    restore.add_argument("--replace", action="store_true", help="replace a local database that holds worlds")
    restore.set_defaults(func=cmd_restore)

    erase = sub.add_parser(
        "erase-player", help="erase one player's story events and what they wrote (audited; docs/privacy.md)"
    )
    erase.add_argument("--world", required=True, type=valid.world_id, help=_WORLD_HELP)
    erase.add_argument("--player", required=True, help="the player_id attribute of the player's events")
    erase.add_argument("--json", action="store_true", help="print the erasure record as JSON")
    _add_target_arguments(erase)
    erase.set_defaults(func=cmd_erase_player)

    serve = sub.add_parser(
        "serve",
        help="serve the knowledge API over HTTP (the deployed handler on the local runtime) at /v1/..."
        " and the lore explorer at /",
    )
    serve.add_argument("--port", type=int, default=3000, help="port to listen on (0: any free port)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.set_defaults(func=cmd_serve)

    reset = sub.add_parser("reset", help="empty the local database and object store")
    reset.set_defaults(func=cmd_reset)

    kb_explore.add_parsers(sub, _add_target_arguments)
    kb_explorer_publish.add_parser(sub)
    kb_worlds.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # platformdirs (via the embedded PostgreSQL package) warns when XDG_RUNTIME_DIR is unset; it falls back fine.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except kb_explore.OperationFailedError as exc:
        return kb_explore.failed(args.command, exc)


if __name__ == "__main__":
    sys.exit(main())
