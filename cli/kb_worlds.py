"""`kb world create`: a world, optionally diverging from a parent world (docs/worlds.md).

A world with a parent reads its parent's (and their parents') documents and concepts, its own shadowing
theirs by name; what is ingested into it stays in it. The local knowledge base only: a deployed stack's
worlds are set with its API (PUT /worlds/{world_id}).

Exit statuses: 0 done, 1 the parent was refused (unknown, a cycle, a lineage too long), 2 bad usage.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.markup import escape

from cli import kb_validation as valid
from cli.kb_explore import OperationFailedError
from local_runtime.paths import kb_home

__all__ = ["add_parsers", "cmd_world_create"]

stdout = Console()


def cmd_world_create(args: argparse.Namespace) -> int:
    from knowledge.adapters.postgres.database import Database
    from knowledge.adapters.postgres.migrations import apply_migrations
    from knowledge.errors import WorldParentError
    from knowledge.queries.worlds import WorldSettings, put_world
    from local_runtime.cloud import LOCAL_EMBEDDING_ENVIRONMENT
    from local_runtime.postgres import DATABASE, start_embedded_postgres

    # Left out, the parent of an existing world stays as it is (a new world has none).
    settings = WorldSettings(**{"name": args.name} | ({} if args.parent is None else {"parent": args.parent}))
    pg = start_embedded_postgres(kb_home() / "pg")
    database = Database(lambda: pg.conninfo(DATABASE))
    try:
        # The first command of a fresh $KB_HOME may be this one: the schema is made as ingestion makes it.
        with database.schema_connection() as conn:
            apply_migrations(
                conn,
                embedding_model=LOCAL_EMBEDDING_ENVIRONMENT["EMBEDDING_MODEL_ID"],
                embedding_dimension=int(LOCAL_EMBEDDING_ENVIRONMENT["EMBEDDING_DIMENSION"]),
            )
        world, created = put_world(database.transaction, args.world, settings)
    except WorldParentError as exc:
        raise OperationFailedError(exc.message) from None
    finally:
        database.close()
    if args.json:
        print(world.model_dump_json(indent=2))
        return 0
    parent = f"parent {world.parent}, reads {' > '.join(world.lineage)}" if world.parent else "no parent"
    stdout.print(escape(f"{'created' if created else 'updated'} world {world.world_id} ({parent})"))
    return 0


def _display_name(raw: str) -> str:
    """A name as PUT /worlds/{world_id} accepts it (1-200 characters, trimmed)."""
    from pydantic import ValidationError

    from knowledge.queries.worlds import WorldSettings

    try:
        name = WorldSettings(name=raw).name
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(f"{exc.errors()[0]['msg']}: {raw!r}") from None
    assert name is not None
    return name


def add_parsers(sub: Any) -> None:
    """Add `kb world ...` to `kb`'s subparsers."""
    world = sub.add_parser("world", help="create a world, or set the world it diverges from (docs/worlds.md)")
    world_sub = world.add_subparsers(dest="world_command", required=True)
    create = world_sub.add_parser(
        "create", help="create a world (or change an existing one's name or parent)"
    )
    create.add_argument("world", type=valid.world_id, help="the world's id (lowercase letters, digits, '-')")
    create.add_argument(
        "--parent",
        type=valid.world_id,
        help="the world it diverges from: its documents and concepts are read too",
    )
    create.add_argument("--name", type=_display_name, help="display name (default: from the id)")
    create.add_argument("--json", action="store_true", help="print the world as the API's JSON")
    create.set_defaults(func=cmd_world_create)
