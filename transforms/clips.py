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
from transforms.video_io import DecodeLimits, StreamLength, VideoReader, measure_length


class SampledClip(NamedTuple):
    index: int
    start_s: Fraction
    end_s: Fraction
    frames: np.ndarray  # uint8 [T, size, size, 3] RGB


def _preparer(reader: VideoReader, frame_spec: FrameSpec):
    def prepare(frame) -> np.ndarray:
        width, height = reader.display_size_of(frame)
        new_w, new_h = resize_dims(width, height, frame_spec)
        rgb = reader.to_rgb(frame, new_w, new_h)
        return centre_crop(rgb, frame_spec.size)

    return prepare


class read_clips:  # noqa: N801 - used like a function: `with read_clips(...) as reader`
    """``with read_clips(uri, sampling, frame_spec, limits) as reader: for clip in reader``.

    ``reader.info`` (container facts) is there before iterating; after it,
    ``num_frames_decoded``, ``num_frames_sampled`` (frames resampling gave, up to the
    last clip's end, repeats counted), ``decode_errors``, ``discontinuities``,
    ``display_size``, and the stream's true ``num_frames`` and ``duration_s``.

    With a clip cap (``sampling.max_clips``) decoding stops after the last clip kept,
    so the stream's length is first read from its packet timestamps
    (``measure_length``: demuxed, not decoded); the kept clips are spread over that
    length, and it is the stream's truth where decoding stopped early. Container
    headers are not trusted for it: they can be short, long or missing.
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
        self._limits = limits
        self.num_frames_sampled = 0
        self.length: Optional[StreamLength] = None

    def __enter__(self) -> "read_clips":
        self._reader.__enter__()
        self.info = self._reader.info
        if self._sampling.max_clips is not None:
            try:
                self.length = measure_length(self._reader.uri, self._limits)
            except BaseException:
                self._reader.close()
                raise
        return self

    def __exit__(self, *exc) -> None:
        self._reader.close()

    def __iter__(self) -> Iterator[SampledClip]:
        reader = self._reader
        clips = sample_clips(
            reader.frames(),
            self._sampling,
            expected_duration_s=(
                float(self.length.duration_s) if self.length else self.info.duration_s
            ),
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
    def discontinuities(self) -> int:
        return self._reader.discontinuities

    @property
    def num_frames(self) -> int:
        """Frames in the stream: decoded, or its packets where decoding stopped early."""
        decoded = self._reader.frames_decoded
        if self._reader.ended or self.length is None:
            return decoded
        return max(decoded, self.length.num_frames)

    @property
    def duration_s(self) -> Optional[Fraction]:
        """The stream's length: decoded, or from packets where decoding stopped early."""
        decoded = self._reader.duration_s
        if self._reader.ended or self.length is None:
            return decoded
        return max(decoded or Fraction(0), self.length.duration_s)

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
