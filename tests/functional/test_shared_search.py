"""Searches of worlds in the shared chunk partition run through migration 0014's functions: the same
answers as the plain statement, on the embedded PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

import pytest

from knowledge.adapters.postgres import search
from knowledge.adapters.postgres.partitions import promote_large_worlds
from knowledge.adapters.postgres.search import SHARED_FUNCTIONS, search_by_vector, shared_partition_body
from knowledge.adapters.postgres.worlds import put_world
from knowledge.embedding.hashing import HashEmbedder
from knowledge.model import Chunk
from knowledge.queries.models import SearchFilters
from tests.functional.test_keyword_ranking import _store_chunks

EMBEDDER = HashEmbedder(384)
TEXTS = [
    f"The {w} of {place} keeps {thing}. Travellers say the {thing} glows at dusk."
    for w in ("warden", "keeper", "smith", "oracle", "captain", "scribe")
    for place in ("Vexmoor", "Tidewatch", "Emberfall", "the salt marsh")
    for thing in ("lantern", "ledger", "blade")
]
QUERIES = ["who keeps the lantern of Vexmoor", "glowing blade at dusk", "scribe", "the of and", "zzz unknown"]


@pytest.fixture(autouse=True)
def _forget_worlds(monkeypatch: pytest.MonkeyPatch) -> None:
    # Other tests' worlds of the same names live in other databases.
    monkeypatch.setattr(search, "_not_shared", set())
    monkeypatch.setattr(search, "_parented", set())


def _store(conn: Any, world: str, texts: list[str], name: str = "lore.md") -> None:
    chunks = [Chunk(i, "", t, i * 100, i * 100 + len(t), len(t.split())) for i, t in enumerate(texts)]
    _store_chunks(conn, world, f"incoming/{world}/{name}", chunks, EMBEDDER.embed(texts))


def _function_calls(conn: Any) -> dict[str, int]:
    rows = conn.execute("SELECT funcname, calls FROM pg_stat_xact_user_functions").fetchall()
    return {name: calls for name, calls in rows}


def _searches(conn: Any, world: str, **kwargs: Any) -> list[Any]:
    return [
        search_by_vector(conn, EMBEDDER.embed([q])[0], world_id=world, keywords=keywords, k=k, **kwargs)
        for q in QUERIES
        for keywords in (None, q)
        for k in (1, 3, 10, 50)
    ]


def test_the_migration_holds_the_statements_of_search_py(database: Any) -> None:
    with database.transaction() as conn:
        for kind, name in SHARED_FUNCTIONS.items():
            source, config = conn.execute(
                "SELECT prosrc, proconfig FROM pg_proc WHERE proname = %s", (name,)
            ).fetchone()
            body = re.fullmatch(r"\s*BEGIN\s+RETURN QUERY\s+(.*);\s*END\s*", source, re.DOTALL)
            assert body is not None, source
            # A change to search.py's statements needs a migration that replaces these functions.
            assert body[1].split() == shared_partition_body(kind).split(), name
            assert "plan_cache_mode=force_generic_plan" in config


def test_a_shared_world_gets_the_plain_statements_answers_through_the_functions(database: Any) -> None:
    with database.transaction() as conn:
        _store(conn, "emberfall", TEXTS)
        _store(conn, "tidewatch", TEXTS[:5])  # fewer chunks than k: all of them, exactly
        conn.execute("SET LOCAL track_functions = 'pl'")
        for world, calls in (("emberfall", 20), ("tidewatch", 40)):
            through_functions = _searches(conn, world)
            counted = {SHARED_FUNCTIONS["vector"]: calls, SHARED_FUNCTIONS["hybrid"]: calls}
            assert _function_calls(conn) == counted
            assert world not in search._not_shared
            search._not_shared.add(world)  # as for a world with a partition of its own
            assert _searches(conn, world) == through_functions
            assert _function_calls(conn) == counted
        assert [len(hits) for hits in through_functions[:8]] == [1, 3, 5, 5] * 2


def test_filtered_parented_and_promoted_worlds_take_the_plain_statement(database: Any) -> None:
    query = EMBEDDER.embed(["lantern of Vexmoor"])[0]
    with database.transaction() as conn:
        _store(conn, "canon", [f"{TEXTS[i % len(TEXTS)]} Entry {i}." for i in range(500)])
        put_world(conn, "fork", parent="canon")
        _store(conn, "fork", ["The warden of Vexmoor keeps a lantern of green glass."], "fork.md")
        conn.execute("SET LOCAL track_functions = 'pl'")
        filtered = search_by_vector(
            conn, query, world_id="canon", keywords="lantern", filters=SearchFilters(key_prefix="nowhere/")
        )
        assert filtered == [] and _function_calls(conn) == {}
        # A child: its own rows come back carrying its parent, and the search reads the lineage.
        hits = search_by_vector(conn, query, world_id="fork", keywords="lantern Vexmoor", k=50)
        assert len(hits) == 50 and any(h.text.endswith("green glass.") for h in hits)
        assert search._parented == {"fork"}
        assert search_by_vector(conn, query, world_id="fork", keywords="lantern Vexmoor", k=50) == hits
        assert sum(_function_calls(conn).values()) == 1  # the second search read the lineage first
    before = database.read(lambda c: search_by_vector(c, query, world_id="canon", keywords="lantern"))
    with database.schema_connection() as owner:
        assert promote_large_worlds(owner) == ["canon"]
    # Promoted: the functions find none of its rows, the plain statement finds them in its partition.
    after = database.read(lambda c: search_by_vector(c, query, world_id="canon", keywords="lantern"))
    assert [h.chunk_id for h in after] == [h.chunk_id for h in before]
    assert search._not_shared == {"canon"}
