"""A video URI → what a model reads of it: clips, or a frame stream; Beam-free.

One wrapper over ``VideoReader`` opens the video and keeps its facts; two ways to read:

- :class:`read_clips`: ``SampledClip(index, start_s, end_s, frames)`` with ``frames``
  uint8 ``[frames_per_clip, size, size, 3]`` RGB, each a fresh contiguous array, for
  clip models (DecodeClips);
- :class:`read_frames`: ``(t, uint8 [size, size, 3] RGB)`` resampled to the model's
  fps, ``t`` the frame's time (``Fraction`` seconds) on the video's timeline, for
  models that take a whole video (stream and frame-sequence handlers).

Both stream: only the frames of one window (or one frame) are held. Only frames that
resampling keeps are converted to RGB, resized in the same swscale pass, then centre
cropped. Opening raises a ``VideoDecodeError`` (or the storage's error); iterating
raises one when decoding fails, e.g. past ``limits.max_duration_s``.

:func:`video_info` makes a ``videos/`` row's facts from an opened video, with the one
duration rule: what was decoded is the truth, not the container.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import Any, Iterator, NamedTuple, Optional, Union

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from transforms.preprocess import FrameSpec, centre_crop, resize_dims
from transforms.records import VideoInfo, VideoRef
from transforms.sampling import ClipSampling, resample, sample_clips
from transforms.shot_sampling import shot_windows
from transforms.shots import ShotDetector, detect_size, thumbnail_size
from transforms.video_io import (
    DecodeLimits,
    StreamLength,
    VideoReader,
    measure_length,
    stream_facts,
)

__all__ = ["NoFrames", "SampledClip", "prepare_frame", "read_clips", "read_frames", "video_info"]


class NoFrames(Exception):
    """A video whose container opened but gave no decodable frame to the model."""


class SampledClip(NamedTuple):
    index: int
    start_s: Fraction
    end_s: Fraction
    frames: np.ndarray  # uint8 [T, size, size, 3] RGB


class _OpenVideo:
    """``with`` it: ``info`` (the container's ``SourceInfo``) is there before reading;
    after it, ``decode_errors``, ``discontinuities`` and the stream's ``num_frames`` and
    ``duration_s`` (as far as it was decoded; ``read_clips`` also counts packets where
    decoding stopped early).

    ``sampling``: how the video is read, a ``ClipSampling`` (``read_clips``) or frames
    per second (``read_frames``).
    """

    # What shot detection found (``read_clips(..., shots=True)`` overrides these);
    # whole-video models read no shots.
    shots: tuple = ()
    cues: tuple = ()

    def __init__(
        self,
        uri: str,
        sampling: Union[ClipSampling, float],
        frame_spec: FrameSpec,
        limits: DecodeLimits = DecodeLimits(),
    ):
        self._reader = VideoReader(uri, limits)
        self._sampling = sampling
        self._frame_spec = frame_spec
        self._limits = limits

    def __enter__(self):
        self._reader.__enter__()
        self.info = self._reader.info
        return self

    def __exit__(self, *exc) -> None:
        self._reader.close()

    def _prepare(self, frame: av.VideoFrame) -> np.ndarray:
        return prepare_frame(self._reader, frame, self._frame_spec)

    @property
    def shots(self) -> tuple:
        """The video's ``Shot`` records, once read to its end; () when not detected."""
        return ()

    @property
    def cues(self) -> tuple:
        """The video's ``Cue`` records, once read to its end; () when not detected."""
        return ()

    @property
    def decode_errors(self) -> int:
        return self._reader.decode_errors

    @property
    def discontinuities(self) -> int:
        return self._reader.discontinuities

    @property
    def num_frames(self) -> int:
        """Frames in the stream, as far as it was decoded."""
        return self._reader.frames_decoded

    @property
    def duration_s(self) -> Optional[Fraction]:
        """The stream's length, as far as it was decoded."""
        return self._reader.duration_s


class read_clips(_OpenVideo):  # noqa: N801 - used like a function: `with read_clips(...) as r`
    """``with read_clips(uri, sampling, frame_spec, limits) as reader: for clip in reader``.

    Besides the facts of every open video, ``num_frames_sampled``: frames resampling
    gave, up to the last clip's end, repeats counted; with ``shots=True``, ``shots``
    (``transforms.shots``: every decoded frame, shrunk to a 64 px wide BGR copy by a
    scaler of its own, goes through the shot detector; no second decode). With
    ``sampling.clips_per_shot`` (which needs ``shots=True``) the clips are placed
    inside the shots as the detector settles them (``transforms.shot_sampling``).

    With a clip cap (``sampling.max_clips``) decoding stops after the last clip kept,
    so the stream's length is first read from its packet timestamps
    (``measure_length``: demuxed, not decoded); the kept clips are spread over that
    length, and it is the stream's truth where decoding stopped early (``num_frames``,
    ``duration_s``). Container headers are not trusted for it: they can be short, long
    or missing.
    """

    def __init__(
        self,
        uri: str,
        sampling: ClipSampling,
        frame_spec: FrameSpec,
        limits: DecodeLimits = DecodeLimits(),
        shots: bool = False,
    ):
        super().__init__(uri, sampling, frame_spec, limits)
        if sampling.clips_per_shot is not None and not shots:
            raise ValueError("clips_per_shot places clips in shots: it needs shots=True")
        self._detect_shots = shots
        self._frames_ended = False
        self._detector: Optional[ShotDetector] = None
        self.num_frames_sampled = 0
        self.length: Optional[StreamLength] = None

    def __enter__(self) -> "read_clips":
        super().__enter__()
        if self._sampling.max_clips is not None:
            try:
                self.length = measure_length(self._reader.uri, self._limits)
            except BaseException:
                self._reader.close()
                raise
        return self

    def __iter__(self) -> Iterator[SampledClip]:
        frames = self._reader.frames()
        if self._detect_shots:
            self._detector = ShotDetector(float(self.info.fps or 0))
            frames = self._through_detector(frames)
        windows = None
        if self._sampling.clips_per_shot is not None:
            windows = functools.partial(
                shot_windows, sampling=self._sampling, settled=self._settled_starts
            )
        clips = sample_clips(
            frames,
            self._sampling,
            expected_duration_s=(
                float(self.length.duration_s) if self.length else self.info.duration_s
            ),
            prepare=self._prepare,
            windows=windows,
        )
        for clip in clips:
            self.num_frames_sampled = clip.end_index
            yield SampledClip(clip.index, clip.start_s, clip.end_s, np.stack(clip.frames))

    def _through_detector(self, frames: Iterator) -> Iterator:
        """``frames`` unchanged, each also shown, shrunk, to the shot detector."""
        scaler, reader = VideoReformatter(), self._reader
        size = None  # the first frame's: every detection frame has one size
        for decoded in frames:
            frame = decoded.frame
            width, height = size = size or detect_size(frame.width, frame.height)
            small = scaler.reformat(frame, width, height, "bgr24", interpolation="FAST_BILINEAR")

            def picture(frame=frame):
                return reader.to_rgb(frame, *thumbnail_size(*reader.display_size_of(frame)))

            self._detector.push(float(decoded.t), small.to_ndarray(), picture)
            yield decoded
        self._frames_ended = True

    def _settled_starts(self, stretch_ended: bool) -> tuple[float, list[float]]:
        """``transforms.shot_sampling.Settled`` from the detector: after the video's
        last frame, every boundary; at a pause's start, those found so far."""
        if stretch_ended and self._frames_ended:
            return math.inf, [b.t for b in self._detector.boundaries()[1:]]
        return self._detector.settled_starts()

    @property
    def shots(self) -> tuple:
        """The video's shots (``transforms.records.Shot``) from its first frame to
        ``duration_s``, once read; where decoding stopped early (a clip cap) the last
        shot runs to the end. () without ``shots=True``."""
        if self._detector is None:
            return ()
        return tuple(self._detector.shots(float(self.duration_s or 0)))

    @property
    def cues(self) -> tuple:
        """The video's technical cues (``transforms.records.Cue``), found with its
        shots; () without ``shots=True``."""
        if self._detector is None:
            return ()
        return tuple(self._detector.cues(float(self.duration_s or 0)))

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


class read_frames(_OpenVideo):  # noqa: N801 - used like a function: `with read_frames(...) as v`
    """``with read_frames(uri, fps, frame_spec, limits) as video: for t, frame in video``.

    Frames ``1 / fps`` apart (``sampling``: the fps); a source frame that resampling
    repeats is converted once.
    """

    _sampling: float

    def __iter__(self) -> Iterator[tuple[Fraction, np.ndarray]]:
        last_source, value = -1, None
        for sampled in resample(self._reader.frames(), self._sampling):
            if sampled.source_index != last_source:
                value = self._prepare(sampled.frame)
                last_source = sampled.source_index
            yield sampled.t, value


def prepare_frame(reader: VideoReader, frame: av.VideoFrame, frame_spec: FrameSpec) -> np.ndarray:
    """A decoded frame → uint8 ``[size, size, 3]`` RGB in display orientation: the shorter
    side resized to ``frame_spec.shorter`` by ``reader``'s swscale (bilinear), in the
    same pass as the conversion to RGB, then centre cropped to ``frame_spec.size``."""
    width, height = reader.display_size_of(frame)
    new_w, new_h = resize_dims(width, height, frame_spec)
    return centre_crop(reader.to_rgb(frame, new_w, new_h), frame_spec.size)


def video_info(ref: VideoRef, video: Any, num_clips: int, decoded_to_end: bool = True) -> VideoInfo:
    """The ``videos/`` row's facts of an opened video (``read_clips``/``read_frames``).

    ``duration_s`` is the stream's length as reading found it (decoded, or measured from
    packets by ``read_clips``), since container metadata of a truncated file lies; the
    container's when a reader stopped early without measuring
    (``decoded_to_end=False``) or found nothing; 0.0 when neither is known.
    """
    source = video.info
    decoded = video.duration_s if decoded_to_end else None
    return VideoInfo(
        video_id=ref.video_id,
        uri=ref.uri,
        duration_s=float(decoded or source.duration_s or 0.0),
        fps=float(source.fps) if source.fps else 0.0,
        width=int(source.width),
        height=int(source.height),
        num_clips=num_clips,
        num_frames=int(video.num_frames),
        decode_errors=int(video.decode_errors),
        discontinuities=int(video.discontinuities),
        shots=tuple(video.shots),
        cues=tuple(video.cues),
        **stream_facts(source),
    )
