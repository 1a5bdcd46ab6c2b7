"""Calls from several documents share the local model's forward passes, and store the same vectors."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from knowledge.embedding import minilm
from knowledge.embedding.minilm import MiniLmEmbedder
from knowledge.ingestion.steps import embedding_text
from tests.functional.conftest import SAMPLES, Workflow

pytestmark = pytest.mark.slow

# Six "documents" of different sizes and lengths: chunks of 10 to 150 words, and short concept lines.
DOCUMENTS = [
    [
        f"Document {d}, part {i}: " + "the tide keeps the drowned city's secrets " * (1 + (i * 7 + d) % 20)
        for i in range(3 + d)
    ]
    for d in range(5)
] + [[f"Concept {i} (person): a keeper of lamp number {i}." for i in range(12)]]


@pytest.fixture(scope="module")
def embedder() -> MiniLmEmbedder:
    model = MiniLmEmbedder()
    model.warm_up()
    return model


@pytest.fixture
def model(embedder: MiniLmEmbedder) -> Iterator[minilm._MiniLmModel]:
    shared = embedder._model()
    yield shared
    shared.across_calls = True


def _alone(model: minilm._MiniLmModel, embedder: MiniLmEmbedder, texts: list[str]) -> np.ndarray:
    """Each text in a pass of its own: what no batching can influence."""
    model.across_calls = False
    try:
        return np.vstack([np.asarray(embedder.embed([t])) for t in texts])
    finally:
        model.across_calls = True


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_concurrent_calls_share_full_passes_and_keep_their_vectors(
    embedder: MiniLmEmbedder, model: minilm._MiniLmModel
) -> None:
    expected = [_alone(model, embedder, texts) for texts in DOCUMENTS]
    before = model.forward_passes
    # Hold the model busy, as a running pass does, until every call is queued behind it.
    with ThreadPoolExecutor(len(DOCUMENTS)) as pool:
        with minilm._FORWARD_LOCK:
            futures = [pool.submit(embedder.embed, texts) for texts in DOCUMENTS]
            _wait_for(lambda: model.pending_calls() == len(DOCUMENTS), "the calls to queue")
            assert not any(f.done() for f in futures)
        results = [np.asarray(f.result()) for f in futures]

    # The 37 texts of six calls in the length buckets' full passes, not a small pass (or two) per call.
    assert model.forward_passes - before < len(DOCUMENTS)
    for got, want in zip(results, expected, strict=True):
        assert got.shape == want.shape
        assert np.allclose(got, want, atol=1e-5)
    assert model.pending_calls() == 0


def test_a_call_alone_is_not_delayed_by_the_queue(
    embedder: MiniLmEmbedder, model: minilm._MiniLmModel
) -> None:
    before = model.forward_passes
    vectors = np.asarray(embedder.embed(DOCUMENTS[0]))
    assert model.forward_passes - before == 1
    assert np.allclose(vectors, _alone(model, embedder, DOCUMENTS[0]), atol=1e-5)


def test_a_failed_pass_fails_every_call_it_carried(
    embedder: MiniLmEmbedder, model: minilm._MiniLmModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def out_of_memory(token_ids: Any, mask: Any) -> Any:
        raise MemoryError("no room for the attention scores")

    monkeypatch.setattr(model, "_forward", out_of_memory)
    futures: list[Future[list[list[float]]]] = []
    with ThreadPoolExecutor(3) as pool, minilm._FORWARD_LOCK:
        futures = [pool.submit(embedder.embed, texts) for texts in DOCUMENTS[:3]]
        _wait_for(lambda: model.pending_calls() == 3, "the calls to queue")
    for future in futures:
        with pytest.raises(MemoryError, match="attention"):
            future.result()
    assert model.pending_calls() == 0
    monkeypatch.undo()
    assert len(embedder.embed(["the model works again"])) == 1


def test_documents_ingested_together_store_the_vectors_each_chunk_gets_alone(
    make_cloud: Any, embedder: MiniLmEmbedder, model: minilm._MiniLmModel
) -> None:
    workflow: Workflow = make_cloud()
    cloud = workflow.cloud
    files = [("tidewatch", p) for p in sorted((SAMPLES / "tidewatch").iterdir())[:4]]
    arns: list[str] = []
    # Uploaded while the model is busy: the documents' EmbedBatch calls queue up and share passes.
    with minilm._FORWARD_LOCK:
        for world, path in files:
            with cloud.capture_executions() as started:
                cloud.s3.put_object(
                    Bucket=cloud.bucket, Key=f"incoming/{world}/{path.name}", Body=path.read_bytes()
                )
            arns.extend(started)
        _wait_for(lambda: model.pending_calls() >= 2, "EmbedBatch calls of two documents")
    outputs = [json.loads(cloud.wait(arn, timeout_s=300)["output"]) for arn in arns]
    assert [o["status"] for o in outputs] == ["ingested"] * len(files)

    rows = workflow.rows(
        "SELECT c.heading, c.content, c.embedding::text FROM document_chunks c ORDER BY c.chunk_id"
    )
    stored = np.asarray([json.loads(r[2]) for r in rows])
    alone = _alone(model, embedder, [embedding_text({"heading": r[0], "text": r[1]}) for r in rows])
    assert stored.shape == (len(rows), 384)
    assert np.allclose(stored, alone, atol=1e-5)
