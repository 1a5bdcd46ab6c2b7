"""WordLlama l2_supercat (256 dimensions) run with numpy alone: the second local embedding model.

A static-embedding model: each token has one learned 256-dimensional vector, a text's vector is the mean
of its tokens' vectors, L2-normalised. It is far weaker than MiniLM but real, and different: the local
runtime re-embeds a knowledge base from MiniLM-384 into it to exercise a change of model and dimension
(`knowledge.reembedding`). The weights and tokenizer ship inside the `wordllama` PyPI wheel; only those
files are read (the package itself is never imported), so loading needs no network.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from knowledge.errors import ConfigurationError
from knowledge.ports import reject_bare_string

WORDLLAMA_MODEL_ID = "dleemiller/word-llama-l2-supercat-256"
WORDLLAMA_DIMENSION = 256
_PACKAGE = "wordllama"
_WEIGHTS = ("weights", "l2_supercat_256.safetensors")
_TOKENIZER = ("tokenizers", "l2_supercat_tokenizer_config.json")


def _package_dir() -> Path:
    # find_spec locates the package without importing it (its __init__ imports network clients).
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError("the local WordLlama model needs the PyPI package wordllama")
    return Path(next(iter(spec.submodule_search_locations)))


class _WordLlamaModel:
    def __init__(self, folder: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        weights_path, tokenizer_path = folder.joinpath(*_WEIGHTS), folder.joinpath(*_TOKENIZER)
        if not weights_path.is_file() or not tokenizer_path.is_file():
            raise ConfigurationError(f"the WordLlama weights or tokenizer are missing under {folder}")
        table = load_file(str(weights_path))["embedding.weight"]
        if table.ndim != 2 or table.shape[1] != WORDLLAMA_DIMENSION:
            raise ConfigurationError(
                f"{weights_path} holds {table.shape}, expected (*, {WORDLLAMA_DIMENSION})"
            )
        self.table: npt.NDArray[np.float32] = np.ascontiguousarray(table, dtype=np.float32)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), WORDLLAMA_DIMENSION), dtype=np.float32)
        for row, encoding in enumerate(self.tokenizer.encode_batch(list(texts), add_special_tokens=False)):
            ids = np.clip(np.asarray(encoding.ids, dtype=np.int64), 0, self.table.shape[0] - 1)
            if ids.size == 0:
                out[row, 0] = 1.0  # a text without tokens: a fixed unit vector, never a zero one
                continue
            pooled = self.table[ids].mean(axis=0)
            norm = float(np.linalg.norm(pooled))
            if norm == 0.0:
                out[row, 0] = 1.0
            else:
                out[row] = pooled / norm
        return out

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)


_MODEL: dict[Path, _WordLlamaModel] = {}
_LOCK = threading.Lock()


class WordLlamaEmbedder:
    """WordLlama l2_supercat at 256 dimensions; loads lazily, shared by every instance in the process."""

    model_id: str = WORDLLAMA_MODEL_ID
    dimension: int = WORDLLAMA_DIMENSION

    def __init__(self, *, folder: str | Path | None = None) -> None:
        self._folder = Path(folder).resolve() if folder is not None else None

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        reject_bare_string(texts)
        if not texts:
            return []
        vectors: list[list[float]] = self._model().encode(texts).tolist()
        return vectors

    def count_tokens(self, text: str) -> int:
        return self._model().count_tokens(text)

    def _model(self) -> _WordLlamaModel:
        if self._folder is None:
            self._folder = _package_dir().resolve()
        model = _MODEL.get(self._folder)
        if model is None:
            with _LOCK:
                model = _MODEL.get(self._folder)
                if model is None:
                    model = _WordLlamaModel(self._folder)
                    _MODEL[self._folder] = model
        return model
