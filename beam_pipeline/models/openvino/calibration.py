"""Clips of a job's own input that calibrate int8 quantization.

Beam-free. The clips are sampled and preprocessed as the job samples them (the
spec's clip length and fps, one clip length apart) and decoded as the job decodes
them: in the isolated child decoder (``transforms.decode_worker.IsolatedDecoder``)
under the job's ``DecodeLimits``, so a file that crashes the decoder or never answers
(a FIFO, a stalled mount) costs at most ``max_decode_s``, is left out of calibration
and is named (``CalibrationSet.left_out``), and the launcher goes on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from beam_pipeline.models.openvino.cache import cache_root, write_json_atomically
from beam_pipeline.models.openvino.policy import BackendError
from beam_pipeline.models.spec import ModelSpec

__all__ = ["DEFAULT_CALIBRATION_CLIPS", "CalibrationSet", "calibration_set", "input_calibration"]

_LOGGER = logging.getLogger(__name__)

# Calibration: clips taken round-robin over the first videos of the input, so that
# every video lends its first clip before any lends a second. 32 clips: the int8
# gates held with 16 on ../shared/media and did not with 8 (bench/bench_backends.py).
DEFAULT_CALIBRATION_CLIPS = 32


@dataclasses.dataclass(frozen=True)
class CalibrationSet:
    """Clips that NNCF calibrates the int8 ranges on.

    ``clips``: ``uint8 [N, T, S, S, 3]`` RGB, as decode gives them to the model.
    ``sources``: per clip ``(uri, clip_index, sha256 of the clip's bytes)``; the run
    record lists them. ``sha256``: over the clip hashes in order; part of the int8 IR's
    key. ``left_out``: ``(uri, error type)`` of each video opened that failed to decode.
    """

    clips: np.ndarray
    sources: tuple[tuple[str, int, str], ...]
    left_out: tuple[tuple[str, str], ...] = ()

    @property
    def sha256(self) -> str:
        return hashlib.sha256("".join(s[2] for s in self.sources).encode()).hexdigest()

    def summary(self) -> dict:
        return {
            "clips": len(self.sources),
            "sha256": self.sha256,
            "sources": [
                {"uri": uri, "clip_index": index, "sha256": sha} for uri, index, sha in self.sources
            ],
            "left_out": [{"uri": uri, "error": error} for uri, error in self.left_out],
        }


def calibration_set(
    spec: ModelSpec,
    uris: Iterable[str],
    count: int = DEFAULT_CALIBRATION_CLIPS,
    max_videos: int = 64,
    limits: Any = None,
) -> CalibrationSet:
    """``count`` clips from the videos ``uris`` names, in order, round-robin over videos.

    Up to ``max_videos`` videos that decode are read, in the isolated decoder under
    ``limits`` (``DecodeLimits``; default: the job's defaults); a video that fails
    (its error, a decoder crash, a time-out) lends no clips and is listed in
    ``left_out``. Deterministic for the same input. Raises BackendError if no clip
    decodes.
    """
    from transforms.decode_worker import IsolatedDecoder
    from transforms.video_io import DecodeLimits

    per_video: list[tuple[str, list[np.ndarray]]] = []
    left_out: list[tuple[str, str]] = []
    sampling = spec.clip_sampling(max_clips=count)
    decoder = IsolatedDecoder()
    try:
        for uri in uris:
            if len(per_video) >= max_videos:
                break
            try:
                with decoder.read_clips(
                    uri, sampling, spec.frame_spec(), limits or DecodeLimits()
                ) as reader:
                    frames = [clip.frames for clip in reader]
            except Exception as error:  # noqa: BLE001 - a bad video just lends no clips
                _LOGGER.info("calibration: leaving out %s (%s)", uri, error)
                left_out.append((uri, type(error).__name__))
                continue
            if frames:
                per_video.append((uri, frames))
            if sum(len(f) for _, f in per_video) >= count * 4:
                break  # enough to pick from without opening every video
    finally:
        decoder.close()
    chosen: list[tuple[str, int, np.ndarray]] = []
    depth = 0
    while len(chosen) < count and any(depth < len(f) for _, f in per_video):
        for uri, frames in per_video:
            if depth < len(frames) and len(chosen) < count:
                chosen.append((uri, depth, frames[depth]))
        depth += 1
    if not chosen:
        raise BackendError("int8 calibration: no clip could be decoded from the input")
    sources = tuple(
        (uri, index, hashlib.sha256(np.ascontiguousarray(clip).tobytes()).hexdigest())
        for uri, index, clip in chosen
    )
    return CalibrationSet(np.stack([clip for _, _, clip in chosen]), sources, tuple(left_out))


def input_calibration(
    spec: ModelSpec,
    refs: Sequence[Any],
    count: int,
    limits: Any = None,
    cache_dir: Optional[Path] = None,
    refresh: bool = False,
) -> tuple[Optional[CalibrationSet], dict]:
    """The calibration set of a job's input, or only its summary when seen before.

    ``refs``: the input's VideoRefs in listing order. The summary (clip hashes) of a
    set is kept under ``<cache>/openvino/calibration/``, keyed by the model, ``count``
    and the listed videos' (uri, size, version), so a re-run over an unchanged input
    finds its int8 IR without decoding the calibration clips again (``refresh``: decode
    anyway, e.g. when that IR was deleted). Returns ``(set or None, summary)``.
    """
    listing = [(r.uri, r.size, r.version) for r in refs]
    text = json.dumps([spec.name, spec.frames_per_clip, spec.size, count, listing])
    key = hashlib.sha256(text.encode()).hexdigest()[:32]
    remembered = cache_root(cache_dir) / "calibration" / f"{key}.json"
    if not refresh:
        try:
            return None, json.loads(remembered.read_text())
        except (OSError, ValueError):
            pass
    calibration = calibration_set(spec, (uri for uri, _, _ in listing), count, limits=limits)
    summary = calibration.summary()
    write_json_atomically(remembered, summary)
    return calibration, summary
