"""Clips placed inside shots (``--clips-per-shot``): the clip plan for users who index by
shot, as Video Intelligence's ``SHOT_MODE`` labels shots; Beam-free.

Takes one stretch of sampled frames (``transforms.sampling``) and the shot boundaries as
the detector settles them in the same decode pass (``ShotDetector.settled_starts``);
gives windows (:class:`~transforms.sampling.Window`) such that:

- a shot shorter than one clip gets one clip centred on it (so it holds frames of its
  neighbours); where the stretch's start or end is nearer than half the missing
  length, the clip is shortened alike on both sides and padded as a short video is
  (``short_video``), so its middle is the shot's middle still;
- a longer shot gets windows inside it: every ``stride`` frames from its first frame,
  the last aligned to its end (the plain plan of ``clip_windows``, one shot at a time),
  at most ``clips_per_shot`` of them; where more would fit, the stride is doubled
  until at most ``2 * clips_per_shot + 2`` do, and of those (and the one aligned to
  the shot's end) the ``clips_per_shot`` nearest even spacing are taken
  (:func:`long_shot_starts`: one clip, the middle one);
- no window crosses a boundary of a shot at least one clip long.

:func:`shot_clip_windows` is the plan as a pure function of the shots' first frames;
:func:`shot_windows` streams it and agrees with it (tested).

Streaming, one pass: boundaries become known about 1.5 s after their frame (what the
detector's look-ahead leaves undecided), so frames are held back until the shot they
lie in is known: a ring of the frames since ``max_settle_s`` seconds plus two clips,
and, per open shot, at most ``2 * clips_per_shot + 2`` candidate clips (the thinning
above), never the shot itself. Where the detector stays undecided longer than
``max_settle_s`` (the middle of a long dark run, where a fade's boundary will go),
frames are placed with what is known then; a boundary found later in what was placed
is not used for placement (it is in the ``shots`` table all the same, and each clip's
``shot_index`` is the shot holding its middle).
"""

from __future__ import annotations

import math
from collections import deque
from fractions import Fraction
from typing import Callable, Iterable, Iterator, Optional, Sequence, TypeVar

from transforms.sampling import ClipSampling, Window, pad_short

__all__ = ["MAX_SETTLE_S", "Settled", "long_shot_starts", "shot_clip_windows", "shot_windows"]

G = TypeVar("G")

# Seconds a frame waits at most for its shot to be known. A cut settles about 1.5 s
# after it (flash_s + twice min_shot_s, ``ShotDetector.settled_starts``), a one-second
# dissolve about 2.5 s; in a dark run (a fade) all waits until the run ends.
MAX_SETTLE_S = 4.0

# ``settled(stretch_ended)`` -> ``(horizon_s, starts)``: the shots' start times (seconds,
# the video's start left out) found so far, in order; those before ``horizon_s`` are
# final (later ones may still change). Once the stretch's frames are all given
# (``stretch_ended``), every start there is.
Settled = Callable[[bool], tuple[float, Sequence[float]]]


def _capacity(clips_per_shot: int) -> int:
    """Candidate clips held per shot: once thinned, they are at most ``1 / (clips_per_shot
    + 1)`` of the shot apart, so the ones taken are near even spacing."""
    return 2 * clips_per_shot + 2


def long_shot_starts(
    num_frames: int, frames_per_clip: int, stride: int, clips_per_shot: int
) -> list[int]:
    """Clip starts (frame offsets in the shot) for a shot of ``num_frames >=
    frames_per_clip`` sampled frames: the candidates are every ``stride`` frames (the
    step doubled while more than ``2 * clips_per_shot + 2`` fit) and one aligned to the
    shot's end; all of them when at most ``clips_per_shot``, else the one nearest each
    of ``clips_per_shot`` evenly spaced starts (first and last included; one clip: the
    middle), an earlier one on a tie."""
    last = num_frames - frames_per_clip
    step = stride
    while last // step + 1 > _capacity(clips_per_shot):
        step *= 2
    starts = list(range(0, last + 1, step))
    if starts[-1] != last:
        starts.append(last)
    if len(starts) <= clips_per_shot:
        return starts
    if clips_per_shot == 1:
        return [min(starts, key=lambda s: abs(2 * s - last))]
    span = clips_per_shot - 1
    # Candidates are no further apart than the targets (`step <= last / span`), so no
    # two targets take the same one.
    return [min(starts, key=lambda s: abs(s * span - i * last)) for i in range(clips_per_shot)]


def _short_shot_window(
    first: int, end: int, frames_per_clip: int, num_frames: float
) -> tuple[int, int]:
    """The clip centred on a shot ``[first, end)`` shorter than a clip: a clip's length
    (the extra frame after it where the split is odd) or, where the stretch's start or
    end (``num_frames``, ``inf`` while unknown) is nearer, as much as fits on both
    sides alike (padded later, as a short video is)."""
    before = (frames_per_clip - (end - first) + 1) // 2
    after = frames_per_clip - (end - first) - before
    if first >= before and num_frames - end >= after:
        return first - before, end + after
    margin = int(min(first, num_frames - end, before))
    return first - margin, end + margin


def _frames_to_decide(first: int, end: int, frames_per_clip: int) -> int:
    """Frames a short shot's clip needs seen (or the stretch ended) to be decided."""
    before = (frames_per_clip - (end - first) + 1) // 2
    after = frames_per_clip - (end - first) - before
    return end + (after if first >= before else first)


def shot_clip_windows(
    shot_firsts: Sequence[int],
    num_frames: int,
    frames_per_clip: int,
    stride: int,
    clips_per_shot: int,
) -> list[tuple[int, int]]:
    """The clip plan for ``num_frames`` sampled frames whose shots start at the frames
    ``shot_firsts`` (increasing, the first shot's 0 left out): ``[(start, end), ...]``,
    ``end`` exclusive, in order, no window twice; a window shorter than a clip is
    padded later (a short shot at the stretch's start or end). No frames, none."""
    if frames_per_clip < 1 or stride < 1 or clips_per_shot < 1:
        raise ValueError("frames_per_clip, stride and clips_per_shot must be >= 1")
    if num_frames <= 0:
        return []
    bounds = [0] + [f for f in shot_firsts if 0 < f < num_frames] + [num_frames]
    plan: list[tuple[int, int]] = []
    for first, end in zip(bounds, bounds[1:]):
        if end - first >= frames_per_clip:
            windows = [
                (first + s, first + s + frames_per_clip)
                for s in long_shot_starts(end - first, frames_per_clip, stride, clips_per_shot)
            ]
        else:
            windows = [_short_shot_window(first, end, frames_per_clip, num_frames)]
        for window in windows:
            if not plan or plan[-1] != window:
                plan.append(window)
    return plan


class _OpenShot:
    """The candidate clips of the shot being read: every ``step`` frames from its first,
    the step doubled when more than ``_capacity`` are held."""

    def __init__(self, first: int, stride: int, clips_per_shot: int):
        self.first, self.step, self.capacity = first, stride, _capacity(clips_per_shot)
        self.held: list[tuple[int, tuple]] = []  # (start, frames)

    def offer(self, start: int, frames: Callable[[], tuple]) -> None:
        if (start - self.first) % self.step:
            return
        self.held.append((start, frames()))
        if len(self.held) > self.capacity:
            self.step *= 2
            self.held = [h for h in self.held if (h[0] - self.first) % self.step == 0]


def shot_windows(
    frames: Iterable[tuple[Fraction, G, Fraction]],
    sampling: ClipSampling,
    settled: Settled,
    max_settle_s: float = MAX_SETTLE_S,
) -> Iterator[Window]:
    """Stream :func:`shot_clip_windows` over one stretch of sampled frames.

    ``frames``: ``(t, frame, source_t)`` per sampled frame in order (``source_t``, the
    source frame's time in seconds, decides which shot it is in: the last start at or
    before it). ``settled`` is asked after every frame (see :data:`Settled`). Yields the
    windows of ``shot_clip_windows(firsts, n, frames_per_clip, stride_frames,
    clips_per_shot)`` for ``n`` frames, ``firsts`` the frames where the starts fall,
    whenever each start settles within ``max_settle_s`` of the newest frame. Holds at most
    the frames of ``max_settle_s`` seconds, two clips and ``2 * clips_per_shot + 2``
    candidate clips.
    """
    if sampling.clips_per_shot is None:
        raise ValueError("shot_windows needs sampling.clips_per_shot")
    per_clip, stride = sampling.frames_per_clip, sampling.stride_frames
    per_shot = sampling.clips_per_shot
    ring: deque = deque()  # frames from index `ring_first` on
    ring_first = count = 0
    frontier = 0  # frames before it are placed in a shot
    last_placed_t = -math.inf  # source time of the last placed frame
    shot = _OpenShot(0, stride, per_shot)
    queue: deque[list] = deque()  # [start, end, frames or None], in order
    used = 0  # starts consumed (placed, or passed as late)
    emitted = 0
    last_window: Optional[tuple[int, int]] = None

    def window_frames(start: int, end: int) -> tuple:
        return tuple(ring[i - ring_first] for i in range(start, end))

    def close_shot(end: int) -> None:
        nonlocal shot
        length = end - shot.first
        if length >= per_clip:
            held = dict(shot.held)  # start -> frames: every planned start but the last
            last = end - per_clip
            held.setdefault(last, window_frames(last, end))
            for offset in long_shot_starts(length, per_clip, stride, per_shot):
                start = shot.first + offset
                queue.append([start, start + per_clip, held[start]])
        elif length > 0:  # decided once its frames are seen (ready)
            queue.append([shot.first, end, None])
        shot = _OpenShot(end, stride, per_shot)

    def place(horizon: float, starts: Sequence[float], final: bool) -> None:
        nonlocal frontier, used, last_placed_t
        while frontier < count:
            source_t = float(ring[frontier - ring_first][2])  # as the detector's times
            if not final and source_t >= horizon:
                return
            boundary = False
            while used < len(starts) and starts[used] <= source_t:
                boundary = boundary or starts[used] > last_placed_t  # else late: not used
                used += 1
            if boundary and frontier > shot.first:
                close_shot(frontier)
            frontier += 1
            last_placed_t = source_t
            start = frontier - per_clip
            if start >= shot.first:
                shot.offer(start, lambda: window_frames(start, frontier))

    def ready(ended: bool = False) -> Iterator[Window]:
        nonlocal emitted, last_window
        while queue:
            start, end, held = queue[0]
            if held is None:  # a short shot [start, end)
                if not ended and count < _frames_to_decide(start, end, per_clip):
                    return
                start, end = _short_shot_window(start, end, per_clip, count if ended else math.inf)
            queue.popleft()
            if (start, end) == last_window:
                continue
            frames_ = held if held is not None else window_frames(start, end)
            if end - start < per_clip:
                frames_ = pad_short(frames_, per_clip, sampling.short_video)
            yield Window(emitted, start, end, frames_)
            emitted += 1
            last_window = (start, end)

    for item in frames:
        ring.append(item)
        count += 1
        horizon, starts = settled(False)
        place(max(horizon, float(item[2]) - max_settle_s), starts, final=False)
        yield from ready()
        # Keep what a window may still need: the last clip before the frontier, a clip
        # before a shot that may yet be short, the frames of queued windows.
        keep = frontier - per_clip
        if frontier - shot.first < per_clip:
            keep = min(keep, shot.first - per_clip)
        if queue and queue[0][2] is None:
            keep = min(keep, queue[0][0] - per_clip)
        while ring_first < keep and ring:
            ring.popleft()
            ring_first += 1
    if count == 0:
        return
    _, starts = settled(True)
    place(math.inf, starts, final=True)
    if count > shot.first:
        close_shot(count)
    yield from ready(ended=True)
