"""Query domain on the embedded PostgreSQL (never mocked): search, context packs, concepts, timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from psycopg.types.json import Jsonb

from knowledge.adapters.postgres import documents
from knowledge.adapters.postgres.concepts import concept_graph, concept_history
from knowledge.adapters.postgres.timeline import events_timeline
from knowledge.embedding.hashing import HashEmbedder
from knowledge.errors import ConceptNotFoundError, UnknownWorldError
from knowledge.model import Chunk, ConceptSpec, RelationshipSpec
from knowledge.queries.context_pack import build_context_pack
from knowledge.queries.models import (
    ConceptHistoryRequest,
    ContextRequest,
    RelationshipsRequest,
    SearchFilters,
    SearchRequest,
    TimelineRequest,
)
from knowledge.queries.search import search, search_by_vector, search_chunks

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDER = HashEmbedder(384)


def _store(
    conn: Any,
    world: str,
    key: str,
    texts: list[str],
    *,
    vectors: Any = None,
    sha: str | None = None,
    media_type: str = "text/markdown",
    metadata: dict[str, Any] | None = None,
    concepts: list[ConceptSpec] | None = None,
    relationships: list[RelationshipSpec] | None = None,
    spans: list[tuple[int, int]] | None = None,
) -> documents.StoreOutcome:
    spans = spans or [(i * 100, i * 100 + len(t)) for i, t in enumerate(texts)]
    chunks = [
        Chunk(i, f"Part {i}", t, s, e, len(t.split()))
        for i, (t, (s, e)) in enumerate(zip(texts, spans, strict=True))
    ]
    return documents.store_document(
        conn,
        documents.DocumentToStore(
            world_id=world,
            s3_key=key,
            title=key.rsplit("/", 1)[-1],
            media_type=media_type,
            content_sha256=sha or f"{abs(hash((key, tuple(texts)))):064x}"[-64:],
            size_bytes=100,
            embedding_model=MODEL,
            chunks=chunks,
            chunk_vectors=vectors if vectors is not None else EMBEDDER.embed(texts),
            concepts=concepts or [],
            concept_vectors=EMBEDDER.embed([c.description for c in concepts or []]),
            relationships=relationships or [],
            metadata=metadata or {},
        ),
    )


def _query(world: str, text: str, **kw: Any) -> SearchRequest:
    return SearchRequest(query=text, world_id=world, **kw)


# --- search ---------------------------------------------------------------------------------------------


@pytest.fixture
def lore(database: Any) -> Any:
    with database.transaction() as conn:
        _store(
            conn,
            "emberfall",
            "incoming/emberfall/court.md",
            [
                "Queen Ysolde rules the Ember Court from Kharos Keep",
                "The Hearth-Lords tithe fire each winter",
            ],
            metadata={"tags": ["politics", "court"], "era": "kindled"},
            concepts=[ConceptSpec("Ysolde", "character", "Queen of Emberfall")],
        )
        _store(
            conn,
            "emberfall",
            "incoming/emberfall/guilds/kilns.md",
            ["The kiln guilds keep the fires of the isles burning", "Smugglers trade salt for ash glass"],
            media_type="text/html",
            metadata={"tags": "guilds"},
        )
        _store(
            conn,
            "tidewatch",
            "incoming/tidewatch/city.md",
            ["Queen Ysolde rules the Ember Court from Kharos Keep", "The drowned city lies under the tide"],
        )
    return database


def test_search_is_world_scoped_ranked_and_cited(lore: Any) -> None:
    with lore.transaction() as conn:
        result = search(
            conn, EMBEDDER, _query("emberfall", "Queen Ysolde rules the Ember Court from Kharos Keep", k=3)
        )
    hits = result.hits
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].text.startswith("Queen Ysolde") and hits[0].similarity == pytest.approx(1.0, abs=1e-3)
    assert hits[0].citation.document_key == "incoming/emberfall/court.md"
    assert (hits[0].citation.start, hits[0].citation.end, hits[0].citation.heading) == (0, 51, "Part 0")
    assert all(h.citation.document_key.startswith("incoming/emberfall/") for h in hits)
    assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)
    assert result.model_dump(mode="json")["hits"][0]["citation"]["title"] == "court.md"


def test_unknown_world_is_a_domain_error_and_an_empty_world_finds_nothing(lore: Any) -> None:
    with lore.transaction() as conn, pytest.raises(UnknownWorldError, match="nowhere"):
        search(conn, EMBEDDER, _query("nowhere", "anything"))
    with lore.transaction() as conn:
        conn.execute("INSERT INTO worlds (world_id, name) VALUES ('empty', 'Empty')")
        assert search(conn, EMBEDDER, _query("empty", "anything")).hits == []
        assert search_chunks(conn, EMBEDDER.embed(["x"])[0], world_id="nowhere") == []


@pytest.mark.parametrize(
    ("filters", "expected_keys"),
    [
        ({"document_keys": ["incoming/emberfall/court.md"]}, {"incoming/emberfall/court.md"}),
        ({"key_prefix": "incoming/emberfall/guilds/"}, {"incoming/emberfall/guilds/kilns.md"}),
        ({"media_types": ["text/html"]}, {"incoming/emberfall/guilds/kilns.md"}),
        ({"tags": ["guilds", "nothing"]}, {"incoming/emberfall/guilds/kilns.md"}),
        ({"tags": ["court"]}, {"incoming/emberfall/court.md"}),
        ({"metadata": {"era": "kindled"}}, {"incoming/emberfall/court.md"}),
        ({"metadata": {"era": "other"}}, set()),
        (
            {"concepts": ["hearth lord", "kiln guild"]},
            {"incoming/emberfall/court.md", "incoming/emberfall/guilds/kilns.md"},
        ),
        ({"concepts": ["smuggler"], "media_types": ["text/html"]}, {"incoming/emberfall/guilds/kilns.md"}),
    ],
)
def test_filters_narrow_within_the_world(lore: Any, filters: dict[str, Any], expected_keys: set[str]) -> None:
    with lore.transaction() as conn:
        hits = search(conn, EMBEDDER, _query("emberfall", "queen court fire", k=10, filters=filters)).hits
    assert {h.citation.document_key for h in hits} == expected_keys
    if filters.get("concepts") == ["hearth lord", "kiln guild"]:
        assert len(hits) == 2  # one matching chunk per document


def test_a_narrow_filter_still_finds_its_k_nearest_among_many_chunks(database: Any) -> None:
    # 1,500 chunks of one document crowd the index; the filtered document's 12 must all be found, in order.
    rng = np.random.default_rng(3)
    big = rng.standard_normal((1500, 384)).astype(np.float32)
    big /= np.linalg.norm(big, axis=1, keepdims=True)
    small = rng.standard_normal((12, 384)).astype(np.float32)
    small /= np.linalg.norm(small, axis=1, keepdims=True)
    query = small[0] + 0.01 * rng.standard_normal(384).astype(np.float32)
    with database.transaction() as conn:
        _store(conn, "w", "incoming/w/big.md", [f"b{i}" for i in range(1500)], vectors=big.tolist())
        _store(conn, "w", "incoming/w/small.md", [f"s{i}" for i in range(12)], vectors=small.tolist())
        filters = SearchFilters(document_keys=["incoming/w/small.md"])
        hits = search_by_vector(conn, query, world_id="w", k=10, filters=filters, ef_search=10)
        unfiltered = search_by_vector(conn, big[7], world_id="w", k=10)
    expected = [f"s{i}" for i in np.argsort(-(small @ query))[:10]]
    assert [h.text for h in hits] == expected
    assert unfiltered[0].text == "b7"


def test_world_filtered_recall_matches_exact_search(database: Any) -> None:
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((8, 384)).astype(np.float32)
    labels = rng.integers(0, 8, 3000)
    vectors = centres[labels] + 0.6 * rng.standard_normal((3000, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    worlds = np.where(np.arange(3000) % 5 == 0, "rare", "common")  # "rare" holds a fifth of the chunks
    with database.transaction() as conn:
        for world in ("rare", "common"):
            rows = np.flatnonzero(worlds == world)
            _store(
                conn, world, f"incoming/{world}/d.md", [str(i) for i in rows], vectors=vectors[rows].tolist()
            )
        found = 0
        for q in vectors[rng.choice(3000, 20, replace=False)] + 0.05:
            rows = np.flatnonzero(worlds == "rare")
            truth = {str(i) for i in rows[np.argsort(-(vectors[rows] @ q))[:10]]}
            found += len(truth & {h.text for h in search_by_vector(conn, q, world_id="rare", k=10)})
    assert found / 200 >= 0.95


def test_hybrid_search_fuses_keyword_matches(lore: Any) -> None:
    with lore.transaction() as conn:
        vector_only = search(conn, EMBEDDER, _query("emberfall", "smugglers", k=4))
        hybrid = search(conn, EMBEDDER, _query("emberfall", "smugglers", k=4, hybrid=True))
    assert hybrid.hybrid and hybrid.hits[0].text == "Smugglers trade salt for ash glass"
    assert hybrid.hits[0].score > hybrid.hits[-1].score
    assert {h.chunk_id for h in hybrid.hits} == {h.chunk_id for h in vector_only.hits}


@pytest.mark.parametrize(
    "hostile",
    [
        "'; DROP TABLE worlds; --",
        "%(world)s %s {} \\ $1",
        "Robert') OR 1=1 --",
        "ünïcødé ✨ \u202e 'quoted' \"double\"",
        "a" * 2000,
    ],
)
def test_hostile_strings_are_only_data(lore: Any, hostile: str) -> None:
    request = SearchRequest(
        query=hostile,
        world_id="emberfall",
        hybrid=True,
        filters=SearchFilters(
            document_keys=[hostile[:1024]],
            key_prefix=hostile[:1024],
            tags=[hostile[:64]],
            metadata={hostile[:64]: hostile[:256]},
            concepts=[hostile[:200]],
        ),
    )
    with lore.transaction() as conn:
        assert search(conn, EMBEDDER, request).hits == []
        assert search(conn, EMBEDDER, request.model_copy(update={"filters": None})).world_id == "emberfall"
        with pytest.raises(ConceptNotFoundError):
            concept_history(conn, ConceptHistoryRequest(world_id="emberfall", name=hostile[:200]))
        assert conn.execute("SELECT count(*) FROM worlds").fetchone() == (2,)


# --- concepts -------------------------------------------------------------------------------------------


def test_concept_history_lists_versions_with_their_sources(database: Any) -> None:
    with database.transaction() as conn:
        _store(conn, "w", "incoming/w/a.md", ["one"], concepts=[ConceptSpec("Ysolde", "character", "Queen")])
        _store(conn, "w", "incoming/w/b.md", ["two"], concepts=[ConceptSpec("ysolde", "character", "Exiled")])
        history = concept_history(conn, ConceptHistoryRequest(world_id="w", name="YSOLDE"))
        with pytest.raises(ConceptNotFoundError):
            concept_history(conn, ConceptHistoryRequest(world_id="w", name="Nobody"))
        with pytest.raises(UnknownWorldError):
            concept_history(conn, ConceptHistoryRequest(world_id="nowhere", name="Ysolde"))
        documents.delete_document(conn, "w", "incoming/w/a.md")
        after_delete = concept_history(conn, ConceptHistoryRequest(world_id="w", name="Ysolde"))
    assert (history.name, history.current_version) == ("Ysolde", 2)
    assert [
        (v.version, v.description, v.source_document_key, v.source_document_title) for v in history.versions
    ] == [
        (1, "Queen", "incoming/w/a.md", "a.md"),
        (2, "Exiled", "incoming/w/b.md", "b.md"),
    ]
    assert history.versions[0].created_at <= history.versions[1].created_at
    # Deleting a document removes the version only it contributed; the other document's stays current.
    assert [(v.description, v.source_document_key) for v in after_delete.versions] == [
        ("Exiled", "incoming/w/b.md")
    ]
    assert after_delete.current_version == after_delete.versions[-1].version


@pytest.fixture
def graph(database: Any) -> tuple[Any, dict[str, int]]:
    names = ["A", "B", "C", "D", "E"]
    edges = [
        RelationshipSpec("A", "B", "ally_of"),
        RelationshipSpec("B", "C", "ally_of"),
        RelationshipSpec("C", "A", "rival_of"),  # a cycle
        RelationshipSpec("C", "D", "ally_of"),
        RelationshipSpec("E", "A", "serves"),
        RelationshipSpec("A", "A", "doubts"),  # a self-loop
    ]
    with database.transaction() as conn:
        _store(
            conn,
            "w",
            "incoming/w/g.md",
            ["graph"],
            concepts=[ConceptSpec(n, "character", f"{n} desc") for n in names],
            relationships=edges,
        )
        _store(conn, "x", "incoming/x/g.md", ["other"], concepts=[ConceptSpec("Z", "character", "z")])
        ids = dict(conn.execute("SELECT name, concept_id FROM narrative_concepts").fetchall())
    return database, ids


def _walk(db: Any, ids: dict[str, int], **kw: Any) -> Any:
    with db.transaction() as conn:
        return concept_graph(conn, RelationshipsRequest(world_id="w", concept_id=ids["A"], **kw))


def test_relationships_walk_bounded_depth_in_both_directions(graph: tuple[Any, dict[str, int]]) -> None:
    db, ids = graph
    names = {v: k for k, v in ids.items()}
    one = _walk(db, ids)
    assert one.root.name == "A"
    assert {names[n.concept_id]: n.depth for n in one.nodes} == {"A": 0, "B": 1, "C": 1, "E": 1}
    assert {e.type for e in one.edges} == {"ally_of", "rival_of", "serves", "doubts"}
    two = _walk(db, ids, depth=2)
    assert {names[n.concept_id]: n.depth for n in two.nodes} == {"A": 0, "B": 1, "C": 1, "E": 1, "D": 2}
    assert len(two.edges) == 6 and not two.truncated  # each edge once, cycle and self-loop included


def test_relationships_follow_type_and_direction(graph: tuple[Any, dict[str, int]]) -> None:
    db, ids = graph
    names = {v: k for k, v in ids.items()}
    allies = _walk(db, ids, depth=3, type="ally_of", direction="out")
    assert [names[n.concept_id] for n in allies.nodes] == ["A", "B", "C", "D"]
    assert [n.depth for n in allies.nodes] == [0, 1, 2, 3]
    incoming = _walk(db, ids, direction="in")
    assert {names[n.concept_id] for n in incoming.nodes} == {"A", "C", "E"}


def test_relationships_fan_out_and_edge_caps_report_truncation(graph: tuple[Any, dict[str, int]]) -> None:
    db, ids = graph
    narrow = _walk(db, ids, fan_out=1)
    assert len(narrow.edges) == 1 and narrow.truncated
    capped = _walk(db, ids, depth=3, max_edges=2)
    assert len(capped.edges) == 2 and capped.truncated
    ends = (
        {capped.root.concept_id}
        | {e.source_concept_id for e in capped.edges}
        | {e.target_concept_id for e in capped.edges}
    )
    assert {n.concept_id for n in capped.nodes} == ends


def test_relationships_of_another_worlds_concept_are_not_found(graph: tuple[Any, dict[str, int]]) -> None:
    db, ids = graph
    with db.transaction() as conn, pytest.raises(ConceptNotFoundError):
        concept_graph(conn, RelationshipsRequest(world_id="w", concept_id=ids["Z"]))
    with db.transaction() as conn, pytest.raises(UnknownWorldError):
        concept_graph(conn, RelationshipsRequest(world_id="nowhere", concept_id=ids["A"]))


# --- timeline -------------------------------------------------------------------------------------------

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _events(conn: Any, world: str, specs: list[tuple[str, int, list[int]]]) -> None:
    conn.execute("INSERT INTO worlds (world_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (world, world))
    for event_id, minutes, concept_ids in specs:
        conn.execute(
            "INSERT INTO story_events (event_id, world_id, occurred_at, kind, summary, payload, concept_ids)"
            " VALUES (%s, %s, %s, 'scene', %s, %s, %s)",
            (
                event_id,
                world,
                T0 + timedelta(minutes=minutes),
                f"summary of {event_id}",
                Jsonb({"n": 1}),
                concept_ids,
            ),
        )


def test_timeline_is_chronological_and_pages_through_ties(database: Any) -> None:
    with database.transaction() as conn:
        _events(conn, "w", [("e3", 2, []), ("e1", 0, []), ("e2a", 1, []), ("e2b", 1, []), ("e4", 3, [])])
        _events(conn, "other", [("o1", 1, [])])
        pages, cursor = [], None
        while True:
            page = events_timeline(conn, TimelineRequest(world_id="w", limit=2, cursor=cursor))
            pages.append([e.event_id for e in page.events])
            if (cursor := page.next_cursor) is None:
                break
        since = events_timeline(conn, TimelineRequest(world_id="w", since=T0 + timedelta(minutes=1)))
        with pytest.raises(UnknownWorldError):
            events_timeline(conn, TimelineRequest(world_id="nowhere"))
    assert pages == [["e1", "e2a"], ["e2b", "e3"], ["e4"]]
    assert [e.event_id for e in since.events] == ["e2a", "e2b", "e3", "e4"] and since.next_cursor is None
    assert since.events[0].payload == {"n": 1}


# --- context pack ---------------------------------------------------------------------------------------


def test_context_pack_fits_the_budget_dedupes_and_brings_concepts_and_events(database: Any) -> None:
    court = "Queen Ysolde rules the Ember Court from Kharos Keep with the Hearth-Lords at her side"
    with database.transaction() as conn:
        _store(
            conn,
            "w",
            "incoming/w/court.md",
            [court, court.upper(), "Queen Ysolde rules the Ember Court, the Hearth-Lords", "Salt and ash"],
            spans=[(0, 90), (200, 290), (10, 60), (300, 320)],
            concepts=[
                ConceptSpec("Ysolde", "character", "Queen"),
                ConceptSpec("Merek", "character", "Chancellor"),
            ],
        )
        _store(
            conn,
            "w",
            "incoming/w/later.md",
            ["x"],
            concepts=[ConceptSpec("Ysolde", "character", "Exiled queen")],
        )
        ysolde = conn.execute("SELECT concept_id FROM narrative_concepts WHERE name = 'Ysolde'").fetchone()[0]
        _events(conn, "w", [("old", 0, [ysolde]), ("new", 5, []), ("newer", 6, [])])
        pack = build_context_pack(
            conn,
            EMBEDDER,
            ContextRequest(world_id="w", situation="Ysolde holds court", token_budget=64, max_events=2),
        )
        roomy = build_context_pack(
            conn, EMBEDDER, ContextRequest(world_id="w", situation="Ysolde holds court", token_budget=4000)
        )
        with pytest.raises(UnknownWorldError):
            build_context_pack(conn, EMBEDDER, ContextRequest(world_id="nowhere", situation="x"))
    assert pack.tokens_used <= 64 and pack.tokenizer == EMBEDDER.model_id
    items = [*pack.chunks, *pack.concepts, *pack.events]
    assert pack.tokens_used == sum(i.tokens for i in items)  # type: ignore[attr-defined]
    texts = [c.text for c in roomy.chunks]
    # The upper-cased copy repeats the text, the third chunk lies mostly inside the first: both dropped.
    assert roomy.dropped_duplicates == 2 and len(texts) == 3
    ysolde_state = next(c for c in roomy.concepts if c.name == "Ysolde")
    assert (ysolde_state.description, ysolde_state.version, ysolde_state.source_document_key) == (
        "Exiled queen",
        2,
        "incoming/w/later.md",
    )
    assert roomy.concepts[0].name == "Ysolde"  # named in the situation: first
    # Events involving the situation's concepts come first; the pack lists them oldest first.
    assert [e.event_id for e in pack.events] in (["old", "newer"], ["old"], [])
    assert [e.event_id for e in roomy.events] == ["old", "new", "newer"]
