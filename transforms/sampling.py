"""Clip sampling: resample decoded frames to a fixed rate and cut them into clips.

Takes frames in decode order as ``(t, frame)`` pairs, ``t`` the frame's presentation
time as ``fractions.Fraction`` seconds (non-decreasing), ``frame`` anything (a lazily
converted decoder frame, an int in tests). Gives:

- :func:`resample`: one :class:`SampledFrame` per target time ``t0 + k / fps``
  (``t0`` the first frame's time), holding the source frame nearest to the target.
  Works for variable frame rate; upsampling
  repeats a source frame, downsampling skips source frames.
- :func:`sliding_windows`: windows of ``frames_per_clip`` consecutive sampled frames,
  ``stride`` frames apart, streaming through a ring buffer of at most
  ``frames_per_clip`` items. :func:`clip_windows` is the same plan as a pure function
  of the frame count; the two agree (tested).
- :func:`sample_clips`: both of the above for a :class:`ClipSampling`, with a
  ``prepare`` hook (e.g. "convert to RGB and crop") that is called once per distinct
  source frame that survives resampling, never for skipped ones. A pause in the
  timestamps (:func:`split_at_gaps`: a recorder paused, motion-triggered CCTV) is a
  gap: each stretch of picture is sampled on its own, no clip spans or fills a pause,
  and clip numbers leave the pause's slots empty, so nothing merges events across it.

Everything here is a pure function or generator of its arguments: no hidden state,
no decoder, no numpy. Clip times are the sampled frames' target times, not the source
frames' times, so a clip's ``end_s - start_s`` is exactly ``frames / fps``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
from collections import deque
from fractions import Fraction
from typing import Callable, Generic, Iterable, Iterator, NamedTuple, Sequence, TypeVar

F = TypeVar("F")
G = TypeVar("G")

SHORT_VIDEO_POLICIES = ("loop", "repeat_last")

# A pause: no frame for longer than both GAP_MIN_S and GAP_FACTOR times the median of
# the last GAP_HISTORY intervals between frames. Relative, so a slideshow whose
# frames each last seconds (a GIF) has no pauses; absolute, so a stutter or a
# dropped frame is not one. A still screen that a VFR screen recorder does not
# re-send for this long is taken as a pause too: its timestamps are the same.
GAP_MIN_S = Fraction(1)
GAP_FACTOR = 10
GAP_HISTORY = 15


def rate_fraction(fps: float | Fraction) -> Fraction:
    """``fps`` as an exact rational, so target times never drift.

    Floats such as 29.97 or 30000/1001 are mapped to the nearest rational with a
    denominator of at most 1e6, which recovers the rates video actually uses.
    """
    rate = Fraction(fps).limit_denominator(1_000_000)
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    return rate


@dataclasses.dataclass(frozen=True)
class ClipSampling:
    """How to cut a video into model clips.

    - ``frames_per_clip``: frames in one clip (e.g. 64 for I3D).
    - ``fps``: the rate frames are resampled to before windowing.
    - ``stride_s``: seconds between clip starts; ``None`` means one clip length
      (non-overlapping clips). Rounded to whole sampled frames, at least one.
    - ``max_clips``: at most this many clips per video; ``None`` for no cap. When the
      cap bites, clips are spread evenly from the start to the end of the video if its
      length is known up front (``expected_duration_s``, from the container); when it
      is not, the first ``max_clips`` clips are kept and decoding stops there.
    - ``short_video``: what fills a clip when the whole video is shorter than one clip
      (it then yields exactly one clip). ``"loop"`` plays the video again from its
      first frame until the clip is full (0 1 2 0 1 2 0 1), which keeps motion in the
      clip; ``"repeat_last"`` holds the last frame (0 1 2 2 2 2 2 2), which is what a
      frozen end of video looks like.
    - ``clips_per_shot``: place clips inside shots instead of over the whole video (at
      most this many per shot; ``transforms.shot_sampling``); ``None``: the plain plan.
      Not with ``max_clips``.
    """

    frames_per_clip: int
    fps: float
    stride_s: float | None = None
    max_clips: int | None = None
    short_video: str = "loop"
    clips_per_shot: int | None = None

    def __post_init__(self) -> None:
        if self.frames_per_clip < 1:
            raise ValueError(f"frames_per_clip must be >= 1, got {self.frames_per_clip}")
        rate_fraction(self.fps)
        if self.stride_s is not None and not self.stride_s > 0:
            raise ValueError(f"stride_s must be positive, got {self.stride_s}")
        if self.max_clips is not None and self.max_clips < 1:
            raise ValueError(f"max_clips must be >= 1, got {self.max_clips}")
        if self.short_video not in SHORT_VIDEO_POLICIES:
            raise ValueError(
                f"short_video must be one of {SHORT_VIDEO_POLICIES}, " f"got {self.short_video!r}"
            )
        if self.clips_per_shot is not None:
            if self.clips_per_shot < 1:
                raise ValueError(f"clips_per_shot must be >= 1, got {self.clips_per_shot}")
            if self.max_clips is not None:
                raise ValueError("clips_per_shot cannot be combined with max_clips")

    @property
    def rate(self) -> Fraction:
        """``fps`` as an exact rational."""
        return rate_fraction(self.fps)

    @property
    def stride_frames(self) -> int:
        """Sampled frames between clip starts (at least one)."""
        if self.stride_s is None:
            return self.frames_per_clip
        return max(1, round(self.stride_s * self.fps))


class SampledFrame(NamedTuple, Generic[F]):
    """One output of :func:`resample`.

    ``index`` counts sampled frames from 0; ``t`` is the target time
    ``t0 + index / fps``; ``source_index`` is the position of ``frame`` in the input
    (equal ``source_index`` means the very same source frame, repeated).
    """

    index: int
    t: Fraction
    source_index: int
    source_t: Fraction
    frame: F


def resample(
    frames: Iterable[tuple[Fraction, F]], fps: float | Fraction
) -> Iterator[SampledFrame[F]]:
    """Resample ``(t, frame)`` pairs to a constant ``fps``: the nearest frame per target.

    Target times are ``t0 + k / fps`` from the first frame's time ``t0``. Each target
    gets the source frame nearest to it in time (a tie goes to the earlier frame), as
    ffmpeg's ``fps`` filter does; the I3D reference outputs were made that way. Of
    frames with equal times the later one wins. The last frame is held for as long
    as the gap before it (a lone frame gives exactly one sample), since its true
    duration is not in the stream of times.

    Lazy: a target is yielded once a later source time shows the held frame is the
    nearest (targets up to the midpoint between the held frame and the next time), so
    at most one source frame is held. Raises ValueError if times go backwards.
    """
    period = 1 / rate_fraction(fps)
    source = iter(frames)
    first = next(source, None)
    if first is None:
        return
    t0, held = first
    held_t, held_index = t0, 0
    last_gap = Fraction(0)
    k = 0
    for source_index, (t, frame) in enumerate(source, start=1):
        if t < held_t:
            raise ValueError(f"frame times go backwards: {t} after {held_t}")
        if t > held_t:
            # Targets up to the midpoint are nearest the held frame (a tie goes to
            # it, the earlier); later ones wait, as a frame with time ``t`` may follow
            # this one and would win them.
            midpoint = (held_t + t) / 2
            while (target := t0 + k * period) <= midpoint:
                yield SampledFrame(k, target, held_index, held_t, held)
                k += 1
            last_gap = t - held_t
        held, held_t, held_index = frame, t, source_index
    end = held_t + last_gap
    while (target := t0 + k * period) < end or target <= held_t:
        yield SampledFrame(k, target, held_index, held_t, held)
        k += 1


def split_at_gaps(
    frames: Iterable[tuple[Fraction, F]],
) -> Iterator[tuple[int, Fraction, F]]:
    """``(stretch, t, frame)`` per input pair: ``stretch`` counts the pauses before it.

    A pause is an interval between frame times over ``max(GAP_MIN_S, GAP_FACTOR x the
    median of the last GAP_HISTORY intervals)``; the first interval is never one (there
    is nothing to compare it with). Streams: holds GAP_HISTORY intervals.
    """
    recent: deque[Fraction] = deque(maxlen=GAP_HISTORY)
    stretch = 0
    previous: Fraction | None = None
    for t, frame in frames:
        if previous is not None and t > previous:
            interval = t - previous
            if recent and interval > max(GAP_MIN_S, GAP_FACTOR * statistics.median(recent)):
                stretch += 1
            else:
                recent.append(interval)
        previous = t
        yield stretch, t, frame


def _regular_starts(num_frames: int, frames_per_clip: int, stride: int) -> list[int]:
    """Window starts every ``stride`` frames, plus one aligned to the end if needed."""
    starts = list(range(0, num_frames - frames_per_clip + 1, stride))
    if starts[-1] + frames_per_clip < num_frames:
        starts.append(num_frames - frames_per_clip)
    return starts


def _spread_starts(last_start: int, max_clips: int) -> list[int]:
    """``max_clips`` starts spread evenly over ``[0, last_start]``, both ends included.

    A single clip goes to the middle of the video, the usual single-clip choice.
    """
    if max_clips == 1:
        return [last_start // 2]
    return [i * last_start // (max_clips - 1) for i in range(max_clips)]


def clip_windows(
    num_frames: int, frames_per_clip: int, stride: int, max_clips: int | None = None
) -> list[tuple[int, int]]:
    """The clip plan for ``num_frames`` sampled frames: ``[(start, end), ...]``.

    ``end`` is exclusive. Windows start every ``stride`` frames; when the last one
    stops short of the end, one more window aligned to the end is added, so with
    ``stride <= frames_per_clip`` every frame lies in some clip. A video shorter than
    one clip gives the single window ``(0, num_frames)`` (padded later by the
    short-video policy); no frames give no windows. With ``max_clips`` and more
    windows than that, ``max_clips`` windows are spread evenly from the first frame to
    the last instead.
    """
    if frames_per_clip < 1 or stride < 1:
        raise ValueError("frames_per_clip and stride must be >= 1")
    if num_frames <= 0:
        return []
    if num_frames < frames_per_clip:
        return [(0, num_frames)]
    starts = _regular_starts(num_frames, frames_per_clip, stride)
    if max_clips is not None and len(starts) > max_clips:
        starts = _spread_starts(num_frames - frames_per_clip, max_clips)
    return [(start, start + frames_per_clip) for start in starts]


def pad_short(frames: Sequence[F], frames_per_clip: int, policy: str) -> tuple[F, ...]:
    """Fill a too-short clip to ``frames_per_clip`` items (see ClipSampling)."""
    if not frames:
        raise ValueError("cannot pad an empty clip")
    if policy == "loop":
        return tuple(frames[i % len(frames)] for i in range(frames_per_clip))
    if policy == "repeat_last":
        return tuple(frames) + (frames[-1],) * (frames_per_clip - len(frames))
    raise ValueError(f"unknown short_video policy {policy!r}")


class Window(NamedTuple, Generic[F]):
    """One clip's worth of items from :func:`sliding_windows`.

    ``start``/``end`` index the input items (``end`` exclusive; ``end - start`` is
    less than ``frames_per_clip`` only for a padded short video); ``frames`` always
    has exactly ``frames_per_clip`` items.
    """

    index: int
    start: int
    end: int
    frames: tuple[F, ...]


def sliding_windows(
    frames: Iterable[F],
    frames_per_clip: int,
    stride: int,
    *,
    max_clips: int | None = None,
    short_video: str = "loop",
    expected_frames: int | None = None,
) -> Iterator[Window[F]]:
    """Stream :func:`clip_windows` over ``frames`` with a bounded ring buffer.

    Holds at most ``frames_per_clip`` items. Yields the same windows as
    ``clip_windows(n, frames_per_clip, stride, max_clips)`` for ``n`` input items when
    no cap applies, or when ``expected_frames == n``. The cap needs the length up
    front to spread clips evenly, so it plans with ``expected_frames``:

    - ``expected_frames`` unknown: the first ``max_clips`` windows, then it stops
      pulling input (the decoder stops too).
    - input shorter than expected: the planned windows it reaches, plus one window
      aligned to the real end (never more than ``max_clips`` in all).
    - input longer than expected: the planned windows, then it stops, so the tail
      past the planned end is not covered.
    """
    if frames_per_clip < 1 or stride < 1:
        raise ValueError("frames_per_clip and stride must be >= 1")
    planned: list[int] | None = None
    if max_clips is not None and expected_frames is not None:
        if len(clip_windows(expected_frames, frames_per_clip, stride)) > max_clips:
            planned = _spread_starts(expected_frames - frames_per_clip, max_clips)
    planned_set = set(planned or ())

    ring: deque[F] = deque(maxlen=frames_per_clip)
    emitted = 0
    last_end = 0
    count = 0
    for item in frames:
        ring.append(item)
        count += 1
        start = count - frames_per_clip
        if start < 0:
            continue
        due = start % stride == 0 if planned is None else start in planned_set
        if not due:
            continue
        yield Window(emitted, start, count, tuple(ring))
        emitted += 1
        last_end = count
        if max_clips is not None and emitted >= max_clips:
            return
    if count == 0:
        return
    if count < frames_per_clip:
        yield Window(0, 0, count, pad_short(tuple(ring), frames_per_clip, short_video))
    elif last_end < count:
        yield Window(emitted, count - frames_per_clip, count, tuple(ring))


def expected_frame_count(duration_s: float | None, fps: float | Fraction) -> int | None:
    """How many frames resampling a ``duration_s`` video to ``fps`` should give."""
    if duration_s is None or not duration_s > 0 or not math.isfinite(duration_s):
        return None
    return math.ceil(Fraction(duration_s) * rate_fraction(fps))


class ClipFrames(NamedTuple, Generic[G]):
    """One clip from :func:`sample_clips`.

    ``frames``: exactly ``frames_per_clip`` prepared frames (the same object where a
    source frame repeats). ``start_s`` is the first frame's target time; ``end_s`` the
    last real (not padding) frame's target time plus ``1 / fps``. ``start_index`` /
    ``end_index`` are sampled-frame indices (``end_index`` exclusive).
    """

    index: int
    start_s: Fraction
    end_s: Fraction
    start_index: int
    end_index: int
    frames: tuple[G, ...]


# Cuts one stretch's sampled ``(t, prepared frame, source_t)`` triples into windows.
WindowPlan = Callable[[Iterator[tuple[Fraction, G, Fraction]]], Iterator[Window]]


def sample_clips(
    frames: Iterable[tuple[Fraction, F]],
    sampling: ClipSampling,
    *,
    expected_duration_s: float | None = None,
    prepare: Callable[[F], G] | None = None,
    windows: WindowPlan | None = None,
) -> Iterator[ClipFrames[G]]:
    """Resample ``frames`` to ``sampling.fps`` and cut them into clips.

    ``prepare`` maps a source frame to what the clip holds; it is called once per
    source frame that resampling keeps (repeats reuse the result) and never for frames
    resampling drops, so an expensive conversion only runs where it is needed.
    ``expected_duration_s`` (usually the container's duration) lets ``max_clips`` spread
    clips over the whole video; see :func:`sliding_windows`. ``windows`` replaces the
    plain plan (:func:`sliding_windows` with the sampling's settings): it cuts one
    stretch's sampled frames, ``(t, prepared, source_t)`` triples (``t`` the target
    time, ``source_t`` the source frame's), into windows of them (:class:`Window`)
    (``transforms.shot_sampling.shot_windows`` places them inside shots).
    """
    period = 1 / sampling.rate
    stride = sampling.stride_frames
    t0: Fraction | None = None
    next_index = 0  # the next clip number
    for stretch, pairs in itertools.groupby(split_at_gaps(frames), key=lambda item: item[0]):
        remaining = None if sampling.max_clips is None else sampling.max_clips - next_index
        if remaining is not None and remaining <= 0:
            return
        stretch_frames = ((t, frame) for _, t, frame in pairs)
        first = {}  # the stretch's first sampled time, once known
        clips = _sample_stretch(
            stretch_frames,
            sampling,
            remaining,
            # Spreading capped clips over the container's length holds without pauses.
            expected_duration_s if stretch == 0 else None,
            prepare,
            first,
            windows,
        )
        base = next_index
        for clip in clips:
            if t0 is None:
                t0 = first["t"]
            # Sampled frames from the video's first one, pauses counted as if sampled.
            offset = round((first["t"] - t0) / period)
            if stretch > 0 and clip.index == 0:
                base = max(next_index, offset // stride)  # the pause's clip slots stay empty
            next_index = base + clip.index + 1
            yield clip._replace(
                index=base + clip.index,
                start_index=clip.start_index + offset,
                end_index=clip.end_index + offset,
            )


def _sample_stretch(
    frames: Iterable[tuple[Fraction, F]],
    sampling: ClipSampling,
    max_clips: int | None,
    expected_duration_s: float | None,
    prepare: Callable[[F], G] | None,
    first: dict,
    windows: WindowPlan | None = None,
) -> Iterator[ClipFrames[G]]:
    """``sample_clips`` of one stretch without pauses; clip and frame numbers from 0.
    Puts the stretch's first sampled time in ``first["t"]``."""
    period = 1 / sampling.rate

    def prepared() -> Iterator[tuple[Fraction, G, Fraction]]:
        last_source = -1
        value: G
        for sampled in resample(frames, sampling.rate):
            first.setdefault("t", sampled.t)
            if sampled.source_index != last_source:
                raw = sampled.frame
                value = prepare(raw) if prepare is not None else raw  # type: ignore
                last_source = sampled.source_index
            yield sampled.t, value, sampled.source_t

    if windows is None:
        planned = sliding_windows(
            prepared(),
            sampling.frames_per_clip,
            sampling.stride_frames,
            max_clips=max_clips,
            short_video=sampling.short_video,
            expected_frames=expected_frame_count(expected_duration_s, sampling.rate),
        )
    else:
        planned = windows(prepared())
    for window in planned:
        real = window.end - window.start
        yield ClipFrames(
            index=window.index,
            start_s=window.frames[0][0],
            end_s=window.frames[real - 1][0] + period,
            start_index=window.start,
            end_index=window.end,
            frames=tuple(value for _, value, _ in window.frames),
        )
