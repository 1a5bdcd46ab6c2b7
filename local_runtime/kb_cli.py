"""`kb`: ingest, search, delete and inspect the knowledge base on the local runtime.

Uploads go through the deployed wiring (S3 event → EventBridge rule → state machine → handlers), exactly
as in AWS; search and status read the embedded PostgreSQL directly.
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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from local_runtime.paths import kb_home

_WAVE = 4  # executions in flight at once: 2 cores, and the embedder is CPU-bound
stdout = Console()
stderr = Console(stderr=True)


def _expand(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.name != "README.md"))
        elif path.is_file():
            files.append(path)
        else:
            raise SystemExit(f"kb: no such file or directory: {raw}")
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
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        table = Table("file", "status", "chunks", "reason")
        colours = {"ingested": "green", "unchanged": "cyan", "quarantined": "yellow", "failed": "red"}
        for r in results:
            colour = colours.get(r["status"], "white")
            table.add_row(
                Path(r["path"]).name, f"[{colour}]{r['status']}[/]", str(r["chunks"]), r["reason"] or ""
            )
        stdout.print(table)
    return 1 if any(r["status"] == "failed" for r in results) else 0


def _open_database() -> Any:
    from knowledge.adapters.database import Database
    from local_runtime.postgres import DATABASE, start_embedded_postgres

    pg = start_embedded_postgres(kb_home() / "pg")
    return Database(lambda: pg.conninfo(DATABASE))


def cmd_search(args: argparse.Namespace) -> int:
    from knowledge.embedding import MiniLmEmbedder
    from knowledge.search import search_chunks

    database = _open_database()
    vector = MiniLmEmbedder().embed([args.query])[0]
    try:
        with database.transaction() as conn:
            hits = search_chunks(conn, vector, world_id=args.world, k=args.k)
    except Exception as exc:  # an empty or never-migrated database
        if "does not exist" in str(exc):
            hits = []
        else:
            raise
    finally:
        database.close()
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
            f"[bold]{hit.rank}.[/] {hit.score:.3f}  [cyan]{where}[/]  [dim]{hit.document} [{hit.start}:{hit.end}][/]"
        )
        excerpt = " ".join(hit.text.split())
        stdout.print(f"   {excerpt[:280]}{'…' if len(excerpt) > 280 else ''}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from local_runtime.cloud import LocalCloud

    key = f"incoming/{args.world}/{args.name}"
    with LocalCloud() as cloud:
        with cloud.capture_executions() as started:
            cloud.s3.delete_object(Bucket=cloud.bucket, Key=key)
        result = json.loads(cloud.wait(started[-1]).get("output") or "{}") if started else {}
    status = result.get("status", "absent")
    stdout.print(
        f"{key}: {status}" + (f" ({result['chunks']} chunks removed)" if result.get("chunks") else "")
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from knowledge.repository import world_status

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
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "world": r.world_id,
                        "documents": r.documents,
                        "chunks": r.chunks,
                        "quarantined": r.quarantined,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return 0
    table = Table("world", "documents", "chunks", "quarantined")
    for r in rows:
        table.add_row(r.world_id, str(r.documents), str(r.chunks), str(r.quarantined))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kb", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    ingest = sub.add_parser(
        "ingest", help="upload files as incoming/<world>/<name> and wait for the workflow"
    )
    ingest.add_argument("paths", nargs="+", help="files or folders")
    ingest.add_argument("--world", required=True)
    ingest.add_argument("--json", action="store_true")
    ingest.set_defaults(func=cmd_ingest)

    search = sub.add_parser("search", help="semantic search within one world")
    search.add_argument("query")
    search.add_argument("--world", required=True)
    search.add_argument("--k", type=int, default=5, choices=range(1, 101), metavar="K")
    search.add_argument("--json", action="store_true")
    search.set_defaults(func=cmd_search)

    delete = sub.add_parser("delete", help="delete incoming/<world>/<name> and its chunks")
    delete.add_argument("name")
    delete.add_argument("--world", required=True)
    delete.set_defaults(func=cmd_delete)

    status = sub.add_parser("status", help="documents, chunks and quarantined uploads per world")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    reset = sub.add_parser("reset", help="empty the local database and object store")
    reset.set_defaults(func=cmd_reset)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # platformdirs (via the embedded PostgreSQL package) warns when XDG_RUNTIME_DIR is unset; it falls back fine.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
