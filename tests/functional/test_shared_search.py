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
    assert search._not_shared == set()  # a filtered search says nothing of where a world's rows are


def _statement_counts(conn: Any) -> dict[str, tuple[int, int]]:
    rows = conn.execute(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
        " WHERE statement LIKE '%chunks_canon_%'"
    ).fetchall()
    return {statement: (generic, custom) for statement, generic, custom in rows}


def test_a_world_with_its_own_partition_is_searched_there_with_a_generic_plan(database: Any) -> None:
    query = EMBEDDER.embed(["lantern of Vexmoor"])[0]
    with database.transaction() as conn:
        _store(conn, "canon", [f"{TEXTS[i % len(TEXTS)]} Entry {i}." for i in range(500)])

    def searches(conn: Any) -> list[Any]:
        return [
            search_by_vector(conn, query, world_id="canon", keywords=keywords, k=k)
            for keywords in (None, "lantern Vexmoor")
            for k in (3, 10)
        ]

    shared = database.read(searches)
    with database.schema_connection() as owner:
        assert promote_large_worlds(owner) == ["canon"]
        (part,) = owner.execute("SELECT document_chunks_partition_name('canon')").fetchone()
    assert search.own_partition_name("canon") == part
    # The shared functions find none of its rows; the world's partition, named, has them all.
    assert [[h.chunk_id for h in hits] for hits in database.read(searches)] == [
        [h.chunk_id for h in hits] for hits in shared
    ]
    assert search._not_shared == {"canon"}

    def planned(conn: Any) -> dict[str, tuple[int, int]]:
        for _ in range(3):
            searches(conn)
        return _statement_counts(conn)

    # Hybrid's statement: a generic plan; vector search's plans cheaply and runs as the plain statement.
    counts = database.read(planned)
    assert len(counts) == 1 and all(custom == 0 and generic > 0 for generic, custom in counts.values())
    # The setting lasted for those statements only.
    assert database.read(lambda c: c.execute("SHOW plan_cache_mode").fetchone()) == ("auto",)
    # Inside a caller's transaction the same statement runs with the usual plans, and the same answers.
    with database.transaction() as conn:
        assert searches(conn) == database.read(searches)
        assert conn.execute("SHOW plan_cache_mode").fetchone() == ("auto",)


def test_partition_names_are_the_databases_for_any_world_id(database: Any) -> None:
    worlds = ["emberfall", "a-b-c", "x" * 40 + "-tail", "welt-\u00e4\u00f6\u00fc-" + "\u00df" * 30, "World_9"]
    with database.transaction() as conn:
        for world in worlds:
            (name,) = conn.execute("SELECT document_chunks_partition_name(%s)", (world,)).fetchone()
            assert search.own_partition_name(world) == name


def test_a_world_wrongly_remembered_as_partitioned_is_still_found(database: Any) -> None:
    with database.transaction() as conn:
        _store(conn, "emberfall", TEXTS)
    query = EMBEDDER.embed(["lantern of Vexmoor"])[0]
    expected = database.read(lambda c: search_by_vector(c, query, world_id="emberfall", keywords="lantern"))
    search._not_shared.add("emberfall")  # say, a world deleted and created again
    again = database.read(lambda c: search_by_vector(c, query, world_id="emberfall", keywords="lantern"))
    assert again == expected and search._not_shared == set()
