"""A canon and the worlds that diverge from it (migration 0009, docs/worlds.md), on the embedded PostgreSQL:
what a child reads of its ancestors, what it shadows, what never leaks back, and every way to say it
(the adapter, PUT /worlds/{world_id}, `kb world create`, the front matter's `parent`)."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cli.kb import main
from knowledge.adapters.postgres import documents
from knowledge.adapters.postgres.concepts import concept_graph, concept_history
from knowledge.adapters.postgres.search import search_by_keywords, search_by_vector
from knowledge.adapters.postgres.timeline import events_timeline
from knowledge.adapters.postgres.worlds import MAX_LINEAGE, put_world, world_lineage
from knowledge.embedding.hashing import HashEmbedder
from knowledge.errors import ConceptNotFoundError, UnknownWorldError, WorldParentError
from knowledge.model import Chunk, ConceptSpec, RelationshipSpec
from knowledge.queries import api
from knowledge.queries.context_pack import build_context_pack
from knowledge.queries.models import (
    ConceptHistoryRequest,
    ContextRequest,
    RelationshipsRequest,
    TimelineRequest,
)
from knowledge.reranking import SentenceReranker
from local_runtime.api_gateway import proxy_event
from tests.functional.conftest import Workflow

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDER = HashEmbedder(384)


def _store(
    conn: Any,
    world: str,
    name: str,
    texts: list[str],
    *,
    concepts: tuple[ConceptSpec, ...] = (),
    relationships: tuple[RelationshipSpec, ...] = (),
    version: int = 1,
) -> None:
    chunks = [Chunk(i, "", t, i * 100, i * 100 + len(t), len(t.split())) for i, t in enumerate(texts)]
    documents.store_document(
        conn,
        documents.DocumentToStore(
            world_id=world,
            s3_key=f"incoming/{world}/{name}",
            title=name,
            media_type="text/markdown",
            content_sha256=f"{version:064x}",
            size_bytes=100,
            embedding_model=MODEL,
            chunks=chunks,
            chunk_vectors=EMBEDDER.embed(texts),
            concepts=concepts,
            concept_vectors=EMBEDDER.embed([c.description for c in concepts]) if concepts else (),
            relationships=relationships,
        ),
    )


CANON_A = "The Lantern Guild smuggles salt through the flooded district every night."
CANON_B = "Queen Ysolde collects the fire tithe from every kiln in Emberfall."
EXILE_A = "In exile the Lantern Guild has disbanded; its salt boats rot at the quay."
SIBLING = "The Tide Court rules the harbour and taxes every salt barge."
YSOLDE = ConceptSpec("Queen Ysolde", "person", "Ruler of the Ember Court.")
YSOLDE_EXILED = ConceptSpec("queen ysolde", "person", "Deposed, she rules a court of exiles.")
GUILD = ConceptSpec("Lantern Guild", "faction", "Smugglers of salt and light.")


def _canon_and_children(conn: Any) -> None:
    """canon with a.md and b.md; exiles (child of canon) with its own a.md; tides (another child)."""
    _store(conn, "canon", "a.md", [CANON_A], concepts=(GUILD,))
    _store(conn, "canon", "b.md", [CANON_B], concepts=(YSOLDE,))
    put_world(conn, "exiles", parent="canon")
    put_world(conn, "tides", parent="canon")
    _store(conn, "exiles", "a.md", [EXILE_A], concepts=(YSOLDE_EXILED,))
    _store(conn, "tides", "c.md", [SIBLING])


def _keys(hits: list[Any]) -> set[str]:
    return {h.citation.document_key for h in hits}


@pytest.mark.parametrize("mode", ["vector", "hybrid", "keyword"])
def test_a_child_reads_its_ancestors_and_its_documents_shadow_theirs(database: Any, mode: str) -> None:
    with database.transaction() as conn:
        _canon_and_children(conn)

        def search(world: str) -> set[str]:
            query = "salt guild tithe kiln harbour"
            if mode == "keyword":
                return _keys(search_by_keywords(conn, query, world_id=world, k=10))
            keywords = query if mode == "hybrid" else None
            vector = EMBEDDER.embed([query])[0]
            return _keys(search_by_vector(conn, vector, world_id=world, k=10, keywords=keywords))

        # The child's a.md shadows canon's a.md; canon's b.md shows through.
        assert search("exiles") == {"incoming/exiles/a.md", "incoming/canon/b.md"}
        # Nothing written to a child is seen by its parent or its siblings.
        assert search("canon") == {"incoming/canon/a.md", "incoming/canon/b.md"}
        assert search("tides") == {"incoming/tides/c.md", "incoming/canon/a.md", "incoming/canon/b.md"}


def test_a_grandchild_reads_the_whole_lineage_nearest_first(database: Any) -> None:
    with database.transaction() as conn:
        _canon_and_children(conn)
        put_world(conn, "exiles-later", parent="exiles")
        _store(conn, "exiles-later", "b.md", ["Years later the tithe is forgotten."])
        assert world_lineage(conn, "exiles-later") == ["exiles-later", "exiles", "canon"]
        vector = EMBEDDER.embed(["tithe"])[0]
        hits = search_by_vector(conn, vector, world_id="exiles-later", k=10)
        # b.md from the grandchild, a.md from the child: canon's two are both shadowed.
        assert _keys(hits) == {"incoming/exiles-later/b.md", "incoming/exiles/a.md"}


def test_a_changed_parent_is_read_by_the_next_search(database: Any) -> None:
    with database.transaction() as conn:
        _canon_and_children(conn)
        vector = EMBEDDER.embed(["salt"])[0]

        def keys() -> set[str]:
            return _keys(search_by_vector(conn, vector, world_id="tides", k=10)) | _keys(
                search_by_keywords(conn, "salt tithe", world_id="tides", k=10)
            )

        assert keys() == {"incoming/tides/c.md", "incoming/canon/a.md", "incoming/canon/b.md"}
        put_world(conn, "tides", parent=None)  # detached: it reads only itself from now on
        assert keys() == {"incoming/tides/c.md"}
        put_world(conn, "tides", parent="exiles")  # and now the exiles' lineage
        assert keys() == {"incoming/tides/c.md", "incoming/exiles/a.md", "incoming/canon/b.md"}


def test_filters_apply_to_the_whole_lineage(database: Any) -> None:
    from knowledge.queries.models import SearchFilters

    with database.transaction() as conn:
        _canon_and_children(conn)
        vector = EMBEDDER.embed(["salt"])[0]
        only_b = SearchFilters(document_keys=["incoming/canon/b.md"])
        hits = search_by_vector(conn, vector, world_id="exiles", k=10, filters=only_b)
        assert _keys(hits) == {"incoming/canon/b.md"}
        shadowed = SearchFilters(document_keys=["incoming/canon/a.md"])
        assert search_by_vector(conn, vector, world_id="exiles", k=10, filters=shadowed) == []


def test_bm25_of_a_child_sums_the_statistics_of_its_lineage(database: Any) -> None:
    with database.transaction() as conn:
        _canon_and_children(conn)
        hits = search_by_keywords(conn, "salt", world_id="exiles", k=10)
        rows = conn.execute(
            "SELECT c.world_id, c.chunk_id, d.s3_key, u.lexeme, cardinality(u.positions)"
            " FROM document_chunks c JOIN narrative_documents d USING (document_id), unnest(c.search_tsv) u"
            " WHERE c.world_id IN ('exiles', 'canon')"
        ).fetchall()
    # N, mean length and df over both worlds' chunks (the shadowed canon a.md counts in them too).
    lengths: Counter[int] = Counter()
    for _, chunk_id, _, _, tf in rows:
        lengths[chunk_id] += tf
    n, avgdl = len(lengths), sum(lengths.values()) / len(lengths)
    salt = {chunk_id: (tf, key) for _, chunk_id, key, term, tf in rows if term == "salt"}
    assert len(salt) == 2  # canon's a.md and the child's a.md both say "salt"
    idf = math.log(1 + (n - len(salt) + 0.5) / (len(salt) + 0.5))
    expected = {
        chunk_id: idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * lengths[chunk_id] / avgdl))
        for chunk_id, (tf, key) in salt.items()
        if key != "incoming/canon/a.md"  # shadowed: scored in the statistics, never returned
    }
    assert [h.chunk_id for h in hits] == list(expected)
    assert [h.score for h in hits] == pytest.approx(list(expected.values()), rel=1e-5)


def test_concept_history_and_context_packs_read_the_nearest_concept(database: Any) -> None:
    with database.transaction() as conn:
        _canon_and_children(conn)
        mine = concept_history(conn, ConceptHistoryRequest(world_id="exiles", name="Queen Ysolde"))
        assert [v.description for v in mine.versions] == [YSOLDE_EXILED.description]
        inherited = concept_history(conn, ConceptHistoryRequest(world_id="exiles", name="lantern guild"))
        assert [v.source_document_key for v in inherited.versions] == ["incoming/canon/a.md"]
        canon = concept_history(conn, ConceptHistoryRequest(world_id="canon", name="queen ysolde"))
        assert [v.description for v in canon.versions] == [YSOLDE.description]
        with pytest.raises(UnknownWorldError):
            concept_history(conn, ConceptHistoryRequest(world_id="nowhere", name="Queen Ysolde"))
        with pytest.raises(ConceptNotFoundError):
            concept_history(conn, ConceptHistoryRequest(world_id="exiles", name="Nobody"))

        situation = "Queen Ysolde meets the Lantern Guild over salt and the fire tithe"
        pack = build_context_pack(conn, EMBEDDER, ContextRequest(world_id="exiles", situation=situation))
        assert {(c.name, c.description) for c in pack.concepts} == {
            ("queen ysolde", YSOLDE_EXILED.description),
            ("Lantern Guild", GUILD.description),
        }
        assert {c.citation.document_key for c in pack.chunks} == {
            "incoming/exiles/a.md",
            "incoming/canon/b.md",
        }
        # The parent and a sibling never see the child's concept.
        for world in ("canon", "tides"):
            pack = build_context_pack(conn, EMBEDDER, ContextRequest(world_id=world, situation=situation))
            assert ("Queen Ysolde", YSOLDE.description) in {(c.name, c.description) for c in pack.concepts}
            assert all(c.description != YSOLDE_EXILED.description for c in pack.concepts)
        with pytest.raises(ConceptNotFoundError):
            concept_history(conn, ConceptHistoryRequest(world_id="tides", name="Nobody"))


def test_the_relationships_of_an_inherited_concept_are_read_through_the_child(database: Any) -> None:
    smugglers = RelationshipSpec(
        "Lantern Guild", "Salt Wardens", "rival_of", "They fight over the salt boats."
    )
    wardens = ConceptSpec("Salt Wardens", "faction", "Keepers of the salt tax.")
    with database.transaction() as conn:
        _canon_and_children(conn)
        _store(
            conn,
            "canon",
            "d.md",
            ["The wardens tax the salt."],
            concepts=(GUILD, wardens),
            relationships=(smugglers,),
        )
        guild = concept_history(conn, ConceptHistoryRequest(world_id="exiles", name="Lantern Guild"))
        for world in ("exiles", "tides", "canon"):
            graph = concept_graph(conn, RelationshipsRequest(world_id=world, concept_id=guild.concept_id))
            assert [(e.type, e.description) for e in graph.edges] == [("rival_of", smugglers.description)]
            assert {n.name for n in graph.nodes} == {"Lantern Guild", "Salt Wardens"}
        # A concept the child shadows, or one of the child, is not the child's or the parent's to read.
        canon_ysolde = concept_history(conn, ConceptHistoryRequest(world_id="canon", name="Queen Ysolde"))
        exiled = concept_history(conn, ConceptHistoryRequest(world_id="exiles", name="Queen Ysolde"))
        for world, concept in (("exiles", canon_ysolde), ("canon", exiled), ("tides", exiled)):
            with pytest.raises(ConceptNotFoundError):
                concept_graph(conn, RelationshipsRequest(world_id=world, concept_id=concept.concept_id))
        with pytest.raises(UnknownWorldError):
            concept_graph(conn, RelationshipsRequest(world_id="nowhere", concept_id=guild.concept_id))


def test_story_events_stay_in_the_world_they_happened_in(database: Any) -> None:
    with database.transaction() as conn:
        _canon_and_children(conn)
        for world, event in (("canon", "coronation"), ("exiles", "exile")):
            conn.execute(
                "INSERT INTO story_events (event_id, world_id, occurred_at, kind, summary)"
                " VALUES (%s, %s, now(), 'scene', %s)",
                (event, world, f"the {event} of Queen Ysolde"),
            )
        timeline = events_timeline(conn, TimelineRequest(world_id="exiles"))
        assert [e.event_id for e in timeline.events] == ["exile"]
        assert [e.event_id for e in events_timeline(conn, TimelineRequest(world_id="tides")).events] == []
        pack = build_context_pack(
            conn, EMBEDDER, ContextRequest(world_id="exiles", situation="Queen Ysolde remembers")
        )
        assert [e.event_id for e in pack.events] == ["exile"]
        canon = build_context_pack(conn, EMBEDDER, ContextRequest(world_id="canon", situation="Queen Ysolde"))
        assert [e.event_id for e in canon.events] == ["coronation"]


def test_a_parent_that_would_close_a_cycle_or_does_not_exist_is_refused_and_nothing_is_written(
    database: Any,
) -> None:
    with database.transaction() as conn:
        put_world(conn, "canon")
        put_world(conn, "exiles", parent="canon")
        put_world(conn, "exiles-later", parent="exiles")
        refusals = [
            ("canon", "exiles-later", "cycle"),
            ("canon", "exiles", "cycle"),
            ("canon", "canon", "cycle"),
            ("exiles", "nowhere", "unknown_parent"),
            ("new-world", "nowhere", "unknown_parent"),
        ]
        for world, parent, reason in refusals:
            with pytest.raises(WorldParentError) as refused:
                put_world(conn, world, parent=parent)
            assert refused.value.reason == reason, refused.value.message
            assert parent in refused.value.message
        # Each refusal left the transaction usable and the worlds as they were.
        assert conn.execute("SELECT world_id, parent_world_id FROM worlds ORDER BY world_id").fetchall() == [
            ("canon", None),
            ("exiles", "canon"),
            ("exiles-later", "exiles"),
        ]
        # The database refuses on its own too (a writer that skips the adapter's checks).
        with pytest.raises(Exception, match="descendants"), conn.transaction():
            conn.execute("UPDATE worlds SET parent_world_id = 'exiles-later' WHERE world_id = 'canon'")


def test_a_lineage_holds_at_most_eight_worlds(database: Any) -> None:
    with database.transaction() as conn:
        chain = [f"w{i}" for i in range(MAX_LINEAGE)]
        put_world(conn, chain[0])
        for parent, world in itertools.pairwise(chain):
            put_world(conn, world, parent=parent)
        assert world_lineage(conn, chain[-1]) == chain[::-1]
        with pytest.raises(WorldParentError) as refused:
            put_world(conn, "too-deep", parent=chain[-1])
        assert refused.value.reason == "too_deep"
        # Re-parenting a subtree counts the generations under it as well.
        put_world(conn, "root")
        with pytest.raises(WorldParentError) as refused:
            put_world(conn, chain[0], parent="root")
        assert refused.value.reason == "too_deep"
        assert world_lineage(conn, chain[0]) == ["w0"]


class _Services:
    def __init__(self, database: Any) -> None:
        self.database = database
        self.embedder = EMBEDDER
        self.reranker = SentenceReranker(EMBEDDER)


def _put(database: Any, world: str, body: Any) -> tuple[int, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    event = proxy_event("PUT", f"/worlds/{world}", body=text, headers={"Content-Type": "application/json"})
    response = api.handle(api.build_app(_Services(database)), event, None)
    return response["statusCode"], json.loads(response["body"])


def test_put_world_creates_changes_and_refuses_with_4xx(database: Any) -> None:
    assert _put(database, "canon", {}) == (
        201,
        {"world_id": "canon", "name": "Canon", "parent": None, "lineage": ["canon"]},
    )
    status, created = _put(database, "exiles", {"name": "The Exiles", "parent": "canon"})
    assert (status, created["parent"], created["lineage"]) == (201, "canon", ["exiles", "canon"])
    listed = api.handle(api.build_app(_Services(database)), proxy_event("GET", "/worlds"), None)
    parents = {w["world_id"]: w["parent"] for w in json.loads(listed["body"])["worlds"]}
    assert (parents["canon"], parents["exiles"]) == (None, "canon")
    # Left out, the parent stays; the name changes.
    assert _put(database, "exiles", {"name": "Exiles"}) == (
        200,
        {"world_id": "exiles", "name": "Exiles", "parent": "canon", "lineage": ["exiles", "canon"]},
    )

    status, refused = _put(database, "canon", {"parent": "exiles"})
    assert (status, refused["code"]) == (409, "parent_cycle")
    status, refused = _put(database, "exiles", {"parent": "nowhere"})
    assert (status, refused["code"]) == (422, "invalid_parent") and "nowhere" in refused["message"]
    status, refused = _put(database, "exiles", {"parnt": "canon"})
    assert (status, refused["code"]) == (422, "validation_error")
    status, refused = _put(database, "exiles", {"parent": "Not A Slug"})
    assert (status, refused["code"]) == (422, "validation_error")
    status, refused = _put(database, "Bad_World", {})
    assert (status, refused["code"]) == (422, "validation_error")
    assert _put(database, "exiles", "{not json")[0] == 400

    # null detaches: the world reads only itself again.
    status, detached = _put(database, "exiles", {"parent": None})
    assert (status, detached["parent"], detached["lineage"]) == (200, None, ["exiles"])


@contextmanager
def _database_of(home: Path) -> Any:
    from knowledge.adapters.postgres.database import Database
    from local_runtime.postgres import DATABASE, start_embedded_postgres

    pg = start_embedded_postgres(home / "pg")
    database = Database(lambda: pg.conninfo(DATABASE))
    try:
        yield database
    finally:
        database.close()


def test_kb_world_create_sets_the_parent_and_refuses_with_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("KB_HOME", str(home))
    assert main(["world", "create", "canon"]) == 0
    assert "created world canon (no parent)" in capsys.readouterr().out
    assert main(["world", "create", "exiles", "--parent", "canon", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lineage"] == ["exiles", "canon"]

    assert main(["world", "create", "canon", "--parent", "exiles"]) == 1
    assert "already one of its descendants" in capsys.readouterr().err
    assert main(["world", "create", "other", "--parent", "nowhere"]) == 1
    assert "no world 'nowhere'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["world", "create", "Bad_World"])
    assert usage.value.code == 2
    with _database_of(home) as database, database.transaction() as conn:
        assert conn.execute("SELECT world_id, parent_world_id FROM worlds ORDER BY 1").fetchall() == [
            ("canon", None),
            ("exiles", "canon"),
        ]


def _markdown(parent: str | None, text: str) -> bytes:
    front = f"---\nparent: {parent}\n---\n" if parent else ""
    return f"{front}# Lore\n\n{text}\n".encode()


def test_front_matter_parent_sets_a_new_worlds_parent_and_a_conflict_is_quarantined(
    make_cloud: Any,
) -> None:
    workflow: Workflow = make_cloud(embedding_provider="hash")
    assert workflow.upload("incoming/canon/a.md", _markdown(None, CANON_A))[0]["status"] == "ingested"
    first = workflow.upload("incoming/exiles/a.md", _markdown("canon", EXILE_A))[0]
    assert first["status"] == "ingested"
    assert workflow.rows("SELECT parent_world_id FROM worlds WHERE world_id = 'exiles'") == [("canon",)]
    # The same parent again is fine; none at all keeps the stored one.
    assert workflow.upload("incoming/exiles/b.md", _markdown("canon", CANON_B))[0]["status"] == "ingested"
    assert workflow.upload("incoming/exiles/c.md", _markdown(None, SIBLING))[0]["status"] == "ingested"

    # Another parent than the stored one: quarantined with why; the world keeps its parent.
    workflow.upload("incoming/tides/a.md", _markdown(None, SIBLING))
    conflict = workflow.upload("incoming/exiles/d.md", _markdown("tides", "A different history."))[0]
    assert (conflict["status"], conflict["reason_code"]) == ("quarantined", "parent_mismatch")
    assert "already has parent 'canon'" in conflict["reason"]
    # A parent the knowledge base does not hold: quarantined, and the world is not created.
    unknown = workflow.upload("incoming/lost/a.md", _markdown("nowhere", "Lost lore."))[0]
    assert (unknown["status"], unknown["reason_code"]) == ("quarantined", "unknown_parent")
    assert workflow.rows("SELECT parent_world_id FROM worlds WHERE world_id IN ('exiles', 'lost')") == [
        ("canon",)
    ]
    assert workflow.rows("SELECT count(*) FROM narrative_documents WHERE world_id = 'exiles'") == [(3,)]


def test_a_reranked_search_through_the_api_reorders_the_lineages_hits_and_shadows_alike(
    database: Any,
) -> None:
    with database.transaction() as conn:
        _canon_and_children(conn)

    def search(body: dict[str, Any]) -> tuple[int, Any]:
        event = proxy_event(
            "POST", "/search", body=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        response = api.handle(api.build_app(_Services(database)), event, None)
        return response["statusCode"], json.loads(response["body"])

    query = {
        "query": "Queen Ysolde collects the fire tithe from every kiln in Emberfall.",
        "world_id": "exiles",
    }
    status, first = search(query)
    status_reranked, reranked = search({**query, "rerank": True})
    assert (status, status_reranked) == (200, 200)
    assert (first["reranked"], reranked["reranked"]) == (False, True)
    keys = [h["citation"]["document_key"] for h in reranked["hits"]]
    # The same hits (the child's a.md still shadows canon's), best sentence first, ranks renumbered.
    assert sorted(keys) == sorted(h["citation"]["document_key"] for h in first["hits"])
    assert keys[0] == "incoming/canon/b.md" and [h["rank"] for h in reranked["hits"]] == [1, 2]
    assert all(0.0 <= h["score"] <= 1.0 for h in reranked["hits"])
