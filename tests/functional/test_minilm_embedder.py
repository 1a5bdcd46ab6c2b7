"""The numpy all-MiniLM-L6-v2 embedder against the real weights."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from knowledge.embedding import minilm
from knowledge.embedding.minilm import MiniLmEmbedder

pytestmark = pytest.mark.slow

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A man is riding a horse.",
    "The new movie is awesome.",
    "The new movie is so great.",
    "The cat sits outside.",
    "",
    "Ünïcödé naïve café, 東京 and an emoji 😀",
]


@pytest.fixture(scope="module")
def embedder() -> MiniLmEmbedder:
    model = MiniLmEmbedder()
    model.warm_up()
    return model


def _vectors(embedder: MiniLmEmbedder, texts: Sequence[str]) -> np.ndarray:
    return np.asarray(embedder.embed(texts), dtype=np.float64)


def _cos(embedder: MiniLmEmbedder, a: str, b: str) -> float:
    va, vb = _vectors(embedder, [a, b])
    return float(va @ vb)


def test_shape_and_unit_norm(embedder: MiniLmEmbedder) -> None:
    vectors = _vectors(embedder, SENTENCES)
    assert vectors.shape == (len(SENTENCES), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.dimension == 384
    assert embedder.embed([]) == []


def test_batch_equals_one_at_a_time(embedder: MiniLmEmbedder) -> None:
    batch = _vectors(embedder, SENTENCES)
    single = np.vstack([_vectors(embedder, [s]) for s in SENTENCES])
    assert np.allclose(batch, single, atol=1e-5)


def test_padding_does_not_change_an_embedding(embedder: MiniLmEmbedder) -> None:
    short = "Dragons hoard gold."
    alone = _vectors(embedder, [short])[0]
    # In one batch with a much longer text, the short one is padded to its length.
    padded = _vectors(embedder, [short, "The long road winds through hills and valleys. " * 12])[0]
    assert np.allclose(alone, padded, atol=1e-5)


def test_more_inputs_than_one_batch_keep_their_order(embedder: MiniLmEmbedder) -> None:
    texts = [f"Room number {i} of the castle has {'many ' * (i % 7)}doors." for i in range(70)]
    batch = _vectors(embedder, texts)
    for i in (0, 31, 32, 33, 69):
        assert np.allclose(batch[i], _vectors(embedder, [texts[i]])[0], atol=1e-5)


def test_semantic_similarity(embedder: MiniLmEmbedder) -> None:
    eating = _cos(embedder, "A man is eating food.", "A man is eating a piece of bread.")
    riding = _cos(embedder, "A man is eating food.", "A man is riding a horse.")
    assert eating > riding + 0.3

    assert _cos(embedder, "The new movie is awesome.", "The new movie is so great.") > 0.7
    assert _cos(embedder, "The new movie is awesome.", "The cat sits outside.") < 0.3
    assert _cos(embedder, "How do I bake bread?", "Quarterly tax filing deadlines") < 0.3


def test_concurrent_use_from_threads_is_consistent(embedder: MiniLmEmbedder) -> None:
    expected = _vectors(embedder, SENTENCES)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: _vectors(MiniLmEmbedder(), SENTENCES), range(8)))
    for result in results:
        assert np.allclose(result, expected, atol=1e-6)


def test_first_load_happens_once_under_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = []
    real_model = minilm._MiniLmModel

    def counting_model(path: Path) -> minilm._MiniLmModel:
        loads.append(path)
        return real_model(path)

    monkeypatch.setattr(minilm, "_MODELS", {})
    monkeypatch.setattr(minilm, "_MiniLmModel", counting_model)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: MiniLmEmbedder().embed(["shared model"]), range(4)))

    assert len(loads) == 1
    assert all(result == results[0] for result in results)


def test_long_text_is_truncated_to_the_model_window(embedder: MiniLmEmbedder) -> None:
    long_text = " ".join(f"word{i % 50} of the saga" for i in range(500))  # 2,000 words
    assert embedder.count_tokens(long_text) > 256

    vector, extended = _vectors(embedder, [long_text, long_text + " and an epilogue nobody reads"])
    assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-5)
    # Everything past the first 256 wordpieces is ignored, so the tail cannot move the embedding.
    assert np.allclose(vector, extended, atol=1e-5)


def test_count_tokens_uses_wordpieces_without_special_tokens(embedder: MiniLmEmbedder) -> None:
    assert embedder.count_tokens("") == 0
    assert embedder.count_tokens("hello world") == 2
    assert embedder.count_tokens("unbelievably") > 1


def test_matches_the_sentence_transformers_reference(
    embedder: MiniLmEmbedder, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Same weights through the upstream torch pipeline, where that happens to be installed."""
    pytest.importorskip("torch")
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model_dir = tmp_path_factory.mktemp("all-MiniLM-L6-v2")
    with zipfile.ZipFile(minilm._default_model_zip()) as archive:
        archive.extractall(model_dir)
    reference_model = sentence_transformers.SentenceTransformer(str(model_dir), device="cpu")
    texts = [*SENTENCES, "word " * 400]

    reference = reference_model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)

    assert np.allclose(_vectors(embedder, texts), reference, atol=1e-5)
