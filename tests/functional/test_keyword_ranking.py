"""BM25 statistics kept by the database, hybrid search as the default, and chunk vectors kept across
re-uploads: on the embedded PostgreSQL and the local runtime (never mocked)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from knowledge.adapters.postgres import documents
from knowledge.adapters.postgres.migrations import apply_migrations, available_migrations
from knowledge.adapters.postgres.search import search_by_keywords
from knowledge.embedding.hashing import HashEmbedder
from knowledge.errors import ChunkVectorsGoneError, UnknownWorldError
from knowledge.model import Chunk
from knowledge.queries.models import SearchRequest
from knowledge.queries.search import search, search_chunks
from knowledge.reranking import split_sentences
from local_runtime.postgres import start_embedded_postgres
from tests.functional.conftest import Workflow

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDER = HashEmbedder(384)


def _store_chunks(
    conn: Any, world: str, key: str, chunks: list[Chunk], vectors: Any, *, version: int = 1
) -> documents.StoreOutcome:
    return documents.store_document(
        conn,
        documents.DocumentToStore(
            world_id=world,
            s3_key=key,
            title=key,
            media_type="text/markdown",
            content_sha256=f"{version:064x}",
            size_bytes=100,
            embedding_model=MODEL,
            chunks=chunks,
            chunk_vectors=list(vectors),
        ),
    )


def _store(conn: Any, world: str, key: str, texts: list[str], *, version: int = 1) -> documents.StoreOutcome:
    chunks = [Chunk(i, "", t, i * 100, i * 100 + len(t), len(t.split())) for i, t in enumerate(texts)]
    return _store_chunks(conn, world, key, chunks, EMBEDDER.embed(texts), version=version)


def _expected_statistics(conn: Any) -> tuple[dict[str, tuple[int, int]], set[tuple[str, str, int, int, int]]]:
    """N and total length per world, and every posting, recomputed from the chunks themselves."""
    rows = conn.execute(
        "SELECT c.world_id, c.chunk_id, u.lexeme, cardinality(u.positions)"
        " FROM document_chunks c, unnest(c.search_tsv) u"
    ).fetchall()
    lengths: Counter[tuple[str, int]] = Counter()
    for world, chunk_id, _, tf in rows:
        lengths[(world, chunk_id)] += tf
    stats: dict[str, tuple[int, int]] = {}
    for (world, _), length in lengths.items():
        n, total = stats.get(world, (0, 0))
        stats[world] = (n + 1, total + length)
    postings = {(w, term, c, tf, lengths[(w, c)]) for w, c, term, tf in rows}
    return stats, postings


def _assert_statistics_current(conn: Any) -> None:
    stats, postings = _expected_statistics(conn)
    kept = {
        w: (n, t)
        for w, n, t in conn.execute("SELECT world_id, chunk_count, term_total FROM keyword_stats").fetchall()
        if n or t
    }
    assert kept == stats
    assert set(conn.execute("SELECT world_id, term, chunk_id, tf, chunk_length FROM chunk_terms")) == postings


LORE = [
    "The Lantern Guild smuggles salt through the flooded district every night.",
    "Queen Ysolde collects the fire tithe from every kiln in Emberfall.",
    "Ash glass is traded for salt at the harbour court; salt salt salt.",
]


def test_bm25_statistics_stay_current_through_ingest_reingest_and_delete(database: Any) -> None:
    with database.transaction() as conn:
        _store(conn, "emberfall", "incoming/emberfall/a.md", LORE)
        _store(conn, "emberfall", "incoming/emberfall/b.md", ["The tithe of embers is due at the solstice."])
        _store(conn, "tidewatch", "incoming/tidewatch/a.md", ["Salt wardens keep the tide gates."])
        _assert_statistics_current(conn)
        assert conn.execute(
            "SELECT chunk_count FROM keyword_stats WHERE world_id = 'emberfall'"
        ).fetchone() == (4,)
        # A changed version replaces its chunks: the old postings go, the new ones come.
        _store(conn, "emberfall", "incoming/emberfall/a.md", ["Only the lantern guild remains."], version=2)
        _assert_statistics_current(conn)
        assert not conn.execute(
            "SELECT 1 FROM chunk_terms WHERE world_id = 'emberfall' AND term = 'salt'"
        ).fetchall()
        documents.delete_document(conn, "emberfall", "incoming/emberfall/b.md")
        _assert_statistics_current(conn)
        assert conn.execute(
            "SELECT chunk_count FROM keyword_stats WHERE world_id = 'emberfall'"
        ).fetchone() == (1,)
        # Worlds never mix: tidewatch's df of 'salt' is its own.
        assert conn.execute(
            "SELECT count(*) FROM chunk_terms WHERE world_id = 'tidewatch' AND term = 'salt'"
        ).fetchone() == (1,)


def test_keyword_scores_are_okapi_bm25_of_the_world(database: Any) -> None:
    with database.transaction() as conn:
        _store(conn, "emberfall", "incoming/emberfall/a.md", LORE)
        _store(conn, "tidewatch", "incoming/tidewatch/a.md", ["salt"] * 5)  # another world's df never counts
        hits = search_by_keywords(conn, "salt smugglers", world_id="emberfall", k=10)
        _, postings = _expected_statistics(conn)
        (terms,) = conn.execute(
            "SELECT tsvector_to_array(to_tsvector('english', 'salt smugglers'))"
        ).fetchone()
    # Recomputed here from the postings of the world: N = 3 chunks, idf = ln(1 + (N - df + 0.5) / (df + 0.5)).
    mine = [(term, c, tf, length) for w, term, c, tf, length in postings if w == "emberfall"]
    n = len({c for _, c, _, _ in mine})
    avgdl = sum({c: length for _, c, _, length in mine}.values()) / n
    df = Counter(term for term, _, _, _ in mine)
    expected: dict[int, float] = {}
    for term, chunk_id, tf, length in mine:
        if term in terms:
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            expected[chunk_id] = expected.get(chunk_id, 0.0) + idf * tf * 2.2 / (
                tf + 1.2 * (0.25 + 0.75 * length / avgdl)
            )
    assert [h.chunk_id for h in hits] == sorted(expected, key=lambda c: (-expected[c], c))
    assert [h.score for h in hits] == pytest.approx([expected[h.chunk_id] for h in hits], rel=1e-5)
    assert "salt salt salt" in hits[0].text  # the term repeated, in a chunk of about average length


def test_hybrid_is_the_default_and_finds_exact_terms_the_vectors_miss(database: Any) -> None:
    with database.transaction() as conn:
        # Vectors that know nothing: every chunk equally near the query, so only the keyword arm ranks.
        texts = [f"Filler passage number {i} about the weather and the tides." for i in range(30)]
        texts[17] = "The password of the Vexmoor gate is quillfeather."
        chunks = [Chunk(i, "", t, i * 100, i * 100 + len(t), 9) for i, t in enumerate(texts)]
        same = np.ones((len(texts), 384), dtype=np.float32) / math.sqrt(384)
        _store_chunks(conn, "emberfall", "incoming/emberfall/a.md", chunks, same)
        request = SearchRequest(query="what opens the Vexmoor gate", world_id="emberfall", k=5)
        assert request.hybrid is True
        response = search(conn, EMBEDDER, request)
        assert response.hybrid and response.hits[0].text == texts[17]
        assert 0 < response.hits[-1].score <= response.hits[0].score <= 1
        rows = search_chunks(conn, same[0], world_id="emberfall", k=3, query="Vexmoor quillfeather")
        assert rows[0].text == texts[17]
        vector_only = search_chunks(conn, same[0], world_id="emberfall", k=3, query="Vexmoor", mode="vector")
        assert [r.score for r in vector_only] == pytest.approx([1.0, 1.0, 1.0], abs=1e-3)
        # Only stop words: no keyword arm to speak of, the vector ranking stands.
        assert len(search_chunks(conn, same[0], world_id="emberfall", k=3, query="the of and")) == 3
        assert search_chunks(conn, None, world_id="emberfall", k=3, query="the of", mode="keyword") == []
        with pytest.raises(UnknownWorldError):
            search_by_keywords(conn, "gate", world_id="nowhere")


def _expected_sentences(conn: Any) -> dict[tuple[str, int, str], list[int]]:
    """Per (world, chunk, term): the sentences holding the term, by split_sentences and to_tsvector."""
    expected: dict[tuple[str, int, str], list[int]] = {}
    for world, chunk_id, content in conn.execute("SELECT world_id, chunk_id, content FROM document_chunks"):
        for n, sentence in enumerate(split_sentences(content), start=1):
            (terms,) = conn.execute(
                "SELECT tsvector_to_array(to_tsvector('english', %s))", (sentence,)
            ).fetchone()
            for term in terms:
                expected.setdefault((world, chunk_id, term), []).append(n)
    return expected


def _stored_sentences(conn: Any) -> dict[tuple[str, int, str], list[int]]:
    rows = conn.execute(
        "SELECT world_id, chunk_id, term, sentences FROM chunk_terms WHERE sentences IS NOT NULL"
    ).fetchall()
    return {(w, c, t): list(s) for w, c, t, s in rows}


SENTENCES = [
    "Gates creak at dusk. The tide rises over the wall! Tidewatch sleeps. Someone guards them.",
    "Salt is cheap this year. The salt wardens guard the tide gates of \u201cTidewatch.\u201d Nobody pays them.",
]


def test_each_posting_lists_the_sentences_that_hold_its_term(database: Any) -> None:
    with database.transaction() as conn:
        _store(conn, "tidewatch", "incoming/tidewatch/a.md", SENTENCES)
        stored = _stored_sentences(conn)
        assert stored == _expected_sentences(conn)
        (first,) = conn.execute("SELECT min(chunk_id) FROM document_chunks").fetchone()
        assert stored[("tidewatch", first, "tide")] == [2]
        assert stored[("tidewatch", first + 1, "salt")] == [1, 2]
        # A term of the heading alone is in no sentence.
        heading = [Chunk(0, "Harbour", "The gates hold.", 0, 15, 3)]
        _store_chunks(
            conn, "tidewatch", "incoming/tidewatch/b.md", heading, EMBEDDER.embed(["Harbour The gates hold."])
        )
        row = conn.execute("SELECT sentences FROM chunk_terms WHERE term = 'harbour'").fetchone()
        assert row == (None,)
        _assert_statistics_current(conn)


def _filled(conn: Any, world: str) -> int:
    row = conn.execute("SELECT fill_sentence_postings(%s)", (world,)).fetchone()
    assert row is not None
    return int(row[0])


def test_the_migration_lists_the_sentences_of_postings_already_stored(
    postgres: Any, database_name: str
) -> None:
    start_embedded_postgres(postgres.data_dir, database_name)
    before = [m for m in available_migrations() if m.version < 13]
    with psycopg.connect(postgres.conninfo(database_name)) as conn:
        apply_migrations(conn, embedding_model=MODEL, embedding_dimension=384, migrations=before)
        register_vector(conn)
        conn.autocommit = False
        _store(conn, "tidewatch", "incoming/tidewatch/a.md", SENTENCES)
        conn.commit()
        apply_migrations(conn, embedding_model=MODEL, embedding_dimension=384)
        expected = _expected_sentences(conn)
        assert _stored_sentences(conn) == expected != {}
        # A base too large for the migration is filled world by world (the runbook), the same way.
        conn.autocommit = False
        _store(conn, "emberfall", "incoming/emberfall/a.md", LORE)
        conn.execute("UPDATE chunk_terms SET sentences = NULL")
        assert _filled(conn, "tidewatch") > 0
        assert {key for key in _stored_sentences(conn) if key[0] == "emberfall"} == set()
        assert _filled(conn, "emberfall") > 0
        assert _filled(conn, "emberfall") == 0  # nothing left to fill
        assert _stored_sentences(conn) == _expected_sentences(conn)
        conn.rollback()


def test_a_fact_stated_in_one_sentence_outranks_the_same_words_scattered(database: Any) -> None:
    with database.transaction() as conn:
        # Equal vectors and nearly equal BM25: the first chunk scatters the query's words over four
        # sentences, the second states them in one.
        chunks = [Chunk(i, "", t, i * 100, i * 100 + len(t), 12) for i, t in enumerate(SENTENCES)]
        same = np.ones((2, 384), dtype=np.float32) / math.sqrt(384)
        _store_chunks(conn, "tidewatch", "incoming/tidewatch/a.md", chunks, same)
        query = "who guards the tide gates of Tidewatch"
        keyword = search_chunks(conn, same[0], world_id="tidewatch", k=2, query=query, mode="keyword")
        assert [r.text for r in keyword] == SENTENCES  # BM25 alone ranks the scattered chunk first
        for k in (1, 2):
            hybrid = search_chunks(conn, same[0], world_id="tidewatch", k=k, query=query)
            assert hybrid[0].text == SENTENCES[1]
            assert all(0 <= r.score <= 1 for r in hybrid)
        both = search_chunks(conn, same[0], world_id="tidewatch", k=2, query=query)
        assert both[0].score > both[1].score


def test_stored_vectors_are_kept_only_while_their_chunks_are(database: Any) -> None:
    with database.transaction() as conn:
        _store(conn, "emberfall", "incoming/emberfall/a.md", LORE)
        chunks = [Chunk(i, "", t, i * 100, i * 100 + len(t), 9) for i, t in enumerate(LORE)]
        doc = documents.DocumentToStore(
            world_id="emberfall",
            s3_key="incoming/emberfall/a.md",
            title="a",
            media_type="text/markdown",
            content_sha256="2" * 64,
            size_bytes=1,
            embedding_model=MODEL,
            chunks=[*chunks, Chunk(3, "", "A new paragraph.", 300, 316, 3)],
            chunk_vectors=[None, None, None, EMBEDDER.embed(["A new paragraph."])[0]],
        )
        documents.store_document(conn, doc)
        stored = conn.execute(
            "SELECT content, embedding FROM document_chunks WHERE world_id = 'emberfall' ORDER BY ordinal"
        ).fetchall()
        assert [r[0] for r in stored] == [*LORE, "A new paragraph."]
        for (_, vector), expected in zip(stored, EMBEDDER.embed(LORE), strict=False):
            assert np.allclose(vector.to_numpy(), expected, atol=1e-6)
        # A vector to keep that is no longer there (another version came first) fails the store.
        gone = dataclasses.replace(
            doc, content_sha256="3" * 64, chunks=[Chunk(0, "", "never stored", 0, 5, 2)], chunk_vectors=[None]
        )
        with pytest.raises(ChunkVectorsGoneError, match="no longer stored"):
            documents.store_document(conn, gone)


def _embedded_per_run(workflow: Workflow) -> dict[str, int]:
    """Vectors computed by each run (non-null entries of its vectors artifacts), by run id."""
    counts: dict[str, int] = {}
    for key in workflow.keys("artifacts/emberfall/"):
        match = re.search(r"/([0-9a-f]{12})/vectors-chunks-\d+\.json$", key)
        if match:
            body = workflow.cloud.s3.get_object(Bucket=workflow.cloud.bucket, Key=key)["Body"].read()
            vectors = json.loads(body)["vectors"]
            counts[match[1]] = counts.get(match[1], 0) + sum(v is not None for v in vectors)
    return counts


def test_a_re_upload_embeds_only_the_chunks_that_changed(make_cloud: Any) -> None:
    workflow: Workflow = make_cloud(embedding_provider="hash")
    paragraphs = [
        " ".join(
            f"Paragraph {i} tells of the {w} of Emberfall."
            for w in ("kilns", "tithes", "queens", "wardens", "embers", "lanterns", "oaths")
        )
        for i in range(6)
    ]
    key = "incoming/emberfall/chronicle.md"
    (first,) = workflow.upload(key, ("# Chronicle\n\n" + "\n\n".join(paragraphs) + "\n").encode())
    assert first["status"] == "ingested" and first["chunks"] == 6
    before = dict(workflow.rows("SELECT content_hash, embedding::text FROM document_chunks"))
    edited = [*paragraphs]
    edited[3] = " ".join(f"Paragraph 3 now tells of the smugglers and their {w}." for w in range(7))
    (second,) = workflow.upload(key, ("# Chronicle\n\n" + "\n\n".join(edited) + "\n").encode())
    assert second["status"] == "ingested" and second["chunks"] == 6
    runs = _embedded_per_run(workflow)
    assert sorted(runs.values()) == [1, 6]  # the first run embedded all six, the second only the edit
    after = workflow.rows(
        "SELECT content, content_hash, embedding::text FROM document_chunks ORDER BY ordinal"
    )
    assert [r[0] for r in after] == edited
    kept = [r for r in after if r[0] != edited[3]]
    assert all(before[h] == v for _, h, v in kept)  # the very same stored vectors
    # The keyword statistics follow the new version.
    assert workflow.rows("SELECT count(*) FROM chunk_terms WHERE term = 'smuggler'") == [(1,)]
