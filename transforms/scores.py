"""Logits → probabilities → top-k: how every model kind's output becomes scores; Beam-free.

Scores are softmax probabilities, computed in float64 from float32 logits ``[C]``; a
top-k is the k most probable labels, best first, ties in label order.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import numpy as np

from transforms.records import ClipScores


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities along the last axis, computed stably in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_k(probs: np.ndarray, labels: Sequence[str], k: int) -> tuple[list[str], list[float]]:
    """The k most probable labels and their probabilities, best first."""
    k = min(k, probs.shape[-1])
    order = np.argsort(-probs, kind="stable")[:k]
    return [labels[i] for i in order], [float(probs[i]) for i in order]


def clip_scores(
    clip_index: int,
    start_s: Fraction | float,
    end_s: Fraction | float,
    probs: np.ndarray,
    labels: Sequence[str],
    k: int,
) -> ClipScores:
    """One ``clips/`` row's worth: the clip's span (seconds) and the top-k of ``probs [C]``."""
    names, values = top_k(probs, labels, k)
    return ClipScores(clip_index, float(start_s), float(end_s), tuple(names), tuple(values))
