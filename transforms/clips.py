"""A video URI → its model clips (or its resampled frames); Beam-free.

Takes a URI, a ``ClipSampling``, a ``FrameSpec`` and ``DecodeLimits``; gives
``SampledClip(index, start_s, end_s, frames)`` with ``frames`` uint8
``[frames_per_clip, size, size, 3]`` RGB, each a fresh contiguous array, streamed:
only the frames of one window are held. Only frames that resampling keeps are
converted to RGB, resized in the same swscale pass, then centre cropped.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Iterator, NamedTuple, Optional

import numpy as np

from transforms.preprocess import FrameSpec, centre_crop, resize_dims
from transforms.sampling import ClipSampling, resample, sample_clips
from transforms.video_io import DecodeLimits, VideoReader, display_size


class SampledClip(NamedTuple):
    index: int
    start_s: Fraction
    end_s: Fraction
    frames: np.ndarray  # uint8 [T, size, size, 3] RGB


def _preparer(reader: VideoReader, frame_spec: FrameSpec):
    def prepare(frame) -> np.ndarray:
        width, height = display_size(frame)
        new_w, new_h = resize_dims(width, height, frame_spec)
        rgb = reader.to_rgb(frame, new_w, new_h)
        return centre_crop(rgb, frame_spec.size)

    return prepare


class read_clips:  # noqa: N801 - used like a function: `with read_clips(...) as reader`
    """``with read_clips(uri, sampling, frame_spec, limits) as reader: for clip in reader``.

    ``reader.info`` (container facts) is there before iterating; after it,
    ``num_frames_decoded``, ``num_frames_sampled`` (frames resampling gave, up to the
    last clip's end, repeats counted), ``decode_errors``, ``duration_s`` (decoded) and
    ``display_size``.
    """

    def __init__(
        self,
        uri: str,
        sampling: ClipSampling,
        frame_spec: FrameSpec,
        limits: DecodeLimits = DecodeLimits(),
    ):
        self._reader = VideoReader(uri, limits)
        self._sampling = sampling
        self._frame_spec = frame_spec
        self.num_frames_sampled = 0

    def __enter__(self) -> "read_clips":
        self._reader.__enter__()
        self.info = self._reader.info
        return self

    def __exit__(self, *exc) -> None:
        self._reader.close()

    def __iter__(self) -> Iterator[SampledClip]:
        reader = self._reader
        clips = sample_clips(
            reader.frames(),
            self._sampling,
            expected_duration_s=self.info.duration_s,
            prepare=_preparer(reader, self._frame_spec),
        )
        for clip in clips:
            self.num_frames_sampled = clip.end_index
            yield SampledClip(clip.index, clip.start_s, clip.end_s, np.stack(clip.frames))

    @property
    def num_frames_decoded(self) -> int:
        return self._reader.frames_decoded

    @property
    def decode_errors(self) -> int:
        return self._reader.decode_errors

    @property
    def duration_s(self) -> Optional[Fraction]:
        return self._reader.duration_s

    @property
    def display_size(self) -> tuple[int, int]:
        return self._reader.display_size or (self.info.width, self.info.height)


def read_frames(
    reader: VideoReader, fps: float, frame_spec: FrameSpec
) -> Iterator[tuple[Fraction, np.ndarray]]:
    """An open reader's frames resampled to ``fps``: ``(t, uint8 [size, size, 3] RGB)``.

    For stream models, which take frames one at a time; a repeated source frame is
    converted once.
    """
    prepare = _preparer(reader, frame_spec)
    last_source, value = -1, None
    for sampled in resample(reader.frames(), fps):
        if sampled.source_index != last_source:
            value = prepare(sampled.frame)
            last_source = sampled.source_index
        yield sampled.t, value
