"""Shot boundaries from small frames decode already makes; Beam-free.

Takes every decoded frame of a video, shrunk to ``DETECT_WIDTH`` pixels wide
(``uint8 [H, W, 3]`` BGR, as OpenCV and PySceneDetect take them), with its time, and
gives the video's shots: where one camera take ends and the next begins.

- Hard cuts: PySceneDetect's ``AdaptiveDetector`` (its content score against the
  rolling average of its neighbours, so fast camera motion does not cut), fed through
  its ``process_frame`` API. A cut is kept only if the picture does not come back
  within ``flash_s`` (a flash, a shaking camera: PySceneDetect issues #35, #217, #153).
- Fades through black: PySceneDetect's ``ThresholdDetector`` (the cut at the middle of
  the dark run). A fade-in at the very start of a video is no boundary: nothing but
  dark came before it.
- Cross-dissolves: our own, since PySceneDetect has no detector for them (its issues
  #100, #143). During a dissolve of A into B the frame in the middle is the mean of
  the frames ``half_s`` either side; in camera motion it is not (it is a shifted
  picture, not a double exposure). A dissolve is where the two ends differ
  (``dissolve_min_change``) and the middle is that mean within ``dissolve_max_residual``
  of their difference; it is placed where the residual is smallest.

Each shot gets a thumbnail of its middle frame: a few thumbnail-size pictures of the
piece since the last boundary found are kept (every ``step``-th frame, ``step``
doubling when ``_SLOTS`` are held), and the one nearest the piece's middle is encoded
when the next boundary is found.

Memory: the frames of ``2 * half_s + flash_s`` seconds (tens of small frames),
``_SLOTS`` thumbnail pictures, one float per frame (its time) and one JPEG per shot:
flat in practice however long the video.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import deque
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, Sequence

import cv2
import numpy as np
from scenedetect import AdaptiveDetector, FrameTimecode, ThresholdDetector

from transforms.records import Cue, Shot
from transforms.thumbnails import encode_thumbnail

__all__ = [
    "BOUNDARY_KINDS",
    "CUE_KINDS",
    "DETECT_WIDTH",
    "ShotBoundary",
    "ShotDetector",
    "ShotSettings",
    "detect_size",
    "thumbnail_size",
    "shots_from_boundaries",
]

BOUNDARY_KINDS = ("start", "cut", "fade", "dissolve")
CUE_KINDS = ("black", "bars", "still")
DETECT_WIDTH = 64  # pixels; see docs/shots.md for what was measured
_SLOTS = 16  # thumbnail pictures held for the current piece


class ShotBoundary(NamedTuple):
    """A shot's start: ``t`` seconds is its first frame (a cut, the video's start) or
    the middle of the transition into it (a fade, a dissolve); ``confidence`` in [0, 1]."""

    t: float
    kind: str
    confidence: float


@dataclass(frozen=True)
class ShotSettings:
    """Detection thresholds (units in each comment); defaults measured in docs/shots.md."""

    adaptive_threshold: float = 3.0  # PySceneDetect AdaptiveDetector: score / its neighbours
    min_content_val: float = 15.0  # PySceneDetect content score (HSV mean change, 0-255)
    min_shot_s: float = 0.5  # seconds between two cuts at least
    flash_s: float = 0.5  # a picture that comes back within this is the same shot
    flash_return: float = 0.5  # "comes back": distance to the frame before, times the jump
    motion_residual: float = 0.72  # a jump that aligning the frames shrinks under this is motion
    black_level: float = 12.0  # mean 8-bit intensity under which a frame is dark
    half_s: float = 0.5  # a dissolve is judged between frames this far either side
    dissolve_min_change: float = 30.0  # mean |A - B|, 8-bit, between its ends at least
    dissolve_max_residual: float = 0.25  # |middle - mean of ends| / |A - B| at most
    # Technical cues: the shortest run of frames (seconds) that makes one.
    black_min_s: float = 0.5  # frames darker than black_level
    bars_min_s: float = 1.0  # colour bars: column-constant, saturated stripes
    still_min_s: float = 2.0  # a frozen picture: frame to frame change under still_change
    still_change: float = 0.5  # mean |difference|, 8-bit


def detect_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) a frame is shrunk to for detection: ``DETECT_WIDTH`` wide, the
    aspect ratio kept (at least 2 pixels high, an even number)."""
    scaled = max(2, round(height * DETECT_WIDTH / max(1, width) / 2) * 2)
    return DETECT_WIDTH, scaled


def thumbnail_size(width: int, height: int, max_side: int = 160) -> tuple[int, int]:
    """(width, height) of a shot's thumbnail picture: the longer side ``max_side``
    pixels at most, the aspect ratio kept."""
    scale = min(1.0, max_side / max(1, width, height))
    return max(2, round(width * scale)), max(2, round(height * scale))


class ShotDetector:
    """``push(t, frame, picture)`` every decoded frame in order, then ``shots(end_s)``
    (or ``boundaries()``).

    ``frame``: ``uint8 [H, W, 3]`` BGR, every frame the same size (``detect_size``);
    ``t``: its presentation time in seconds, never decreasing; ``picture``: called
    (rarely) for the frame as the thumbnail shows it, ``uint8 [h, w, 3]`` RGB, or
    None for no thumbnails. ``fps`` is the stream's nominal rate, used to turn seconds
    into frame counts.
    """

    def __init__(self, fps: float, settings: ShotSettings = ShotSettings()):
        self._settings = settings
        self._fps = float(fps) if fps and fps > 0 else 25.0
        min_frames = max(1, round(settings.min_shot_s * self._fps))
        self._cuts = AdaptiveDetector(
            adaptive_threshold=settings.adaptive_threshold,
            min_scene_len=min_frames,
            min_content_val=settings.min_content_val,
        )
        self._fades = ThresholdDetector(
            threshold=settings.black_level, min_scene_len=min_frames, fade_bias=0.0
        )
        self._flash_frames = max(1, round(settings.flash_s * self._fps))
        self._half = max(2, round(settings.half_s * self._fps))
        keep = 2 * self._half + self._flash_frames + 2
        # (index, float gray, its mean): the last `keep` frames, indices contiguous
        self._recent: deque[tuple[int, np.ndarray, float]] = deque(maxlen=keep)
        self._times = array("d")  # seconds of frame i
        self._first_content: Optional[int] = None  # the first frame that is not dark
        self._pending_cuts: list[int] = []
        self._found: list[ShotBoundary] = []
        self._dissolve: Optional[tuple[float, int, float]] = None  # (residual, centre, change)
        self._pictures = _Pictures()
        self._cue_run: Optional[tuple[str, float]] = None  # (kind, start_s) of this run
        self._cues: list[Cue] = []
        self._merge_cache: tuple[tuple, tuple] = ((), ([], []))

    def push(
        self, t: float, frame: np.ndarray, picture: Optional[Callable[[], np.ndarray]] = None
    ) -> None:
        index = len(self._times)
        self._times.append(float(t))
        if picture is not None:
            self._pictures.offer(index, float(t), picture)
        timecode = FrameTimecode(index, fps=self._fps)
        gray = cv2.GaussianBlur(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (3, 3), 0)
        gray = gray.astype(np.float32)
        brightness = float(gray.mean())
        if self._first_content is None and brightness >= self._settings.black_level:
            self._first_content = index
        previous = self._recent[-1][1] if self._recent else None
        self._recent.append((index, gray, brightness))
        self._follow_cue(float(t), self._cue_kind(frame, gray, brightness, previous))
        for cut in self._cuts.process_frame(timecode, frame):
            self._pending_cuts.append(cut.frame_num)
        for fade in self._fades.process_frame(timecode, frame):
            self._add_fade(fade.frame_num)
        self._check_cuts(index)
        self._check_dissolve(index)

    def boundaries(self) -> list[ShotBoundary]:
        """The video's boundaries after the last frame, in time order, ``start`` first
        (at the first frame's time; 0.0 for a video without frames)."""
        end = len(self._times)
        self._check_cuts(end + self._flash_frames)
        self._end_dissolve()
        return list(self._merged()[0])

    def settled_starts(self) -> tuple[float, list[float]]:
        """``(horizon_s, starts)`` while frames are still being pushed: ``starts`` are
        the times (seconds, in order) of the boundaries found so far after the video's
        start; later frames add or remove none before ``horizon_s`` (those at or past
        it may still change). Do not modify the list.

        The horizon trails the newest frame by what is still undecided: a cut waiting
        out ``flash_s``, PySceneDetect's window, a dissolve still running, a dark run
        (its fade boundary goes to its middle), less twice ``min_shot_s``, since a
        boundary found later can drop one that close before it and so bring back
        another. About 1.5 s after a cut; as long as half a dark run in one."""
        count = len(self._times)
        if count == 0:
            return -math.inf, []
        undecided = [count - self._cuts.window_width, *self._pending_cuts]
        undecided.append(self._dissolve[1] if self._dissolve else count - self._half)
        if self._fades.last_fade["type"] == "out" and self._fades.last_fade["frame"] is not None:
            undecided.append(self._fades.last_fade["frame"].frame_num)
        earliest = min(max(0, min(undecided)), count - 1)
        horizon = self._times[earliest] - 2 * self._settings.min_shot_s
        return horizon, self._merged()[1]

    def _merged(self) -> tuple[list[ShotBoundary], list[float]]:
        """The boundaries found so far, ``start`` first, close ones merged; and the
        times of those after ``start``. Rebuilt only when a boundary was found."""
        key = (len(self._found), len(self._times) > 0)  # _found only grows
        if self._merge_cache[0] == key:
            return self._merge_cache[1]
        start = ShotBoundary(self._times[0] if self._times else 0.0, "start", 1.0)
        merged: list[ShotBoundary] = []
        kept: list[float] = []  # the times of `merged`, sorted
        # A gradual transition and a cut found within it are one boundary: the
        # transition. Otherwise keep the earlier of two closer than min_shot_s.
        priority = {"fade": 0, "dissolve": 1, "cut": 2}
        ranked = sorted(self._found, key=lambda b: (priority[b.kind], b.t))
        for boundary in ranked:
            at = bisect.bisect_left(kept, boundary.t)
            near = kept[max(0, at - 1) : at + 1]
            if all(abs(boundary.t - t) >= self._settings.min_shot_s for t in near):
                merged.append(boundary)
                kept.insert(at, boundary.t)
        after = sorted(b for b in merged if b.t > start.t)
        result = ([start] + after, [b.t for b in after])
        self._merge_cache = (key, result)
        return result

    def shots(self, end_s: float) -> list[Shot]:
        """The video's shots after its last frame, covering ``[first frame, end_s)``
        without gaps (``shots_from_boundaries``), each with its thumbnail where
        pictures were given."""
        shots = shots_from_boundaries(self.boundaries(), end_s)
        self._pictures.split(len(self._times), end_s)
        return [
            shot._replace(thumbnail=self._pictures.thumbnail((shot.start_s + shot.end_s) / 2))
            for shot in shots
        ]

    def cues(self, end_s: float) -> list[Cue]:
        """The video's technical cues after its last frame, in time order."""
        self._follow_cue(end_s, None)
        return list(self._cues)

    def _cue_kind(
        self, frame: np.ndarray, gray: np.ndarray, brightness: float, previous
    ) -> Optional[str]:
        settings = self._settings
        if brightness < settings.black_level:
            return "black"
        if _is_colour_bars(frame):
            return "bars"
        if previous is not None and _distance(gray, previous) < settings.still_change:
            return "still"
        return None

    def _follow_cue(self, t: float, kind: Optional[str]) -> None:
        """Runs of one cue kind; a run long enough for its kind becomes a ``Cue``."""
        run = self._cue_run
        if run is not None and run[0] == kind:
            return
        if run is not None:
            shortest = {
                "black": self._settings.black_min_s,
                "bars": self._settings.bars_min_s,
                "still": self._settings.still_min_s,
            }[run[0]]
            if t - run[1] >= shortest:
                self._cues.append(Cue(run[0], run[1], t))
        # A still run starts at the frame that is first repeated, one frame back.
        start = t
        if kind == "still" and len(self._times) >= 2:
            start = self._times[-2]
        self._cue_run = (kind, start) if kind is not None else None

    def _add(self, boundary: ShotBoundary, index: int) -> None:
        self._found.append(boundary)
        self._pictures.split(index, boundary.t)

    # --- cuts -------------------------------------------------------------------------

    def _frame(self, index: int) -> Optional[np.ndarray]:
        position = index - self._recent[0][0] if self._recent else -1
        if 0 <= position < len(self._recent):
            return self._recent[position][1]
        return None

    def _check_cuts(self, newest: int) -> None:
        """Decide the cuts whose ``flash_s`` after them has been seen."""
        waiting = []
        for cut in self._pending_cuts:
            if newest - cut < self._flash_frames and newest < len(self._times):
                waiting.append(cut)
                continue
            self._decide_cut(cut)
        self._pending_cuts = waiting

    def _decide_cut(self, cut: int) -> None:
        before, at = self._frame(cut - 1), self._frame(cut)
        if before is None or at is None or not self._after_content(cut):
            return
        jump = _distance(before, at)
        for index in range(cut + 1, min(cut + self._flash_frames, len(self._times))):
            later = self._frame(index)
            if later is not None and _distance(before, later) < self._settings.flash_return * jump:
                return  # the picture came back: a flash or a shake, not a new shot
        if _aligned_distance(before, at) < self._settings.motion_residual * jump:
            return  # the same picture moved: camera motion, not a new shot
        confidence = min(1.0, jump / (2 * self._settings.dissolve_min_change))
        self._add(ShotBoundary(self._times[cut], "cut", round(confidence, 3)), cut)

    # --- fades ------------------------------------------------------------------------

    def _after_content(self, index: int) -> bool:
        return self._first_content is not None and self._first_content < index

    def _add_fade(self, middle: int) -> None:
        if not self._after_content(middle):
            return  # a fade-in at the start: only dark came before
        middle = min(middle, len(self._times) - 1)
        self._add(ShotBoundary(self._times[middle], "fade", 1.0), middle)

    # --- dissolves --------------------------------------------------------------------

    def _check_dissolve(self, newest: int) -> None:
        settings = self._settings
        centre = newest - self._half
        first = self._frame(centre - self._half)
        middle = self._frame(centre)
        last = self._frame(newest)
        if first is None or middle is None:
            return
        change = _distance(first, last)
        first_held = self._recent[0][0]
        window = range(centre - self._half - first_held, len(self._recent))
        dark = min(self._recent[i][2] for i in window) < settings.black_level
        residual = _distance(middle, (first + last) / 2) / max(change, 1e-6)
        if (
            dark
            or change < settings.dissolve_min_change
            or residual > settings.dissolve_max_residual
        ):
            self._end_dissolve()
            return
        if self._dissolve is None or residual < self._dissolve[0]:
            self._dissolve = (residual, centre, change)

    def _end_dissolve(self) -> None:
        if self._dissolve is None:
            return
        residual, centre, _change = self._dissolve
        self._dissolve = None
        if self._after_content(centre - self._half):
            confidence = 1.0 - residual / self._settings.dissolve_max_residual / 2
            boundary = ShotBoundary(self._times[centre], "dissolve", round(confidence, 3))
            self._add(boundary, centre)


class _Pictures:
    """Thumbnail pictures of the piece of video since the last boundary found, and
    one JPEG per piece closed: ``(start_s, end_s, jpeg)``."""

    def __init__(self) -> None:
        self._held: list[tuple[int, float, np.ndarray]] = []  # (index, t, RGB)
        self._step = 1
        self._start_index, self._start_s = 0, None
        self.pieces: list[tuple[float, float, bytes]] = []

    def offer(self, index: int, t: float, picture: Callable[[], np.ndarray]) -> None:
        if self._start_s is None:
            self._start_s = t
        if (index - self._start_index) % self._step:
            return
        self._held.append((index, t, picture()))
        if len(self._held) > _SLOTS:
            self._step *= 2
            self._held = [h for h in self._held if (h[0] - self._start_index) % self._step == 0]

    def split(self, index: int, t: float) -> None:
        """A boundary at frame ``index`` (``t`` seconds): close the piece before it. A
        boundary found late, before the current piece's start, changes nothing."""
        if self._start_s is None or index <= self._start_index:
            return
        before = [h for h in self._held if h[0] < index]
        if before:
            middle = (self._start_s + t) / 2
            _, _, picture = min(before, key=lambda h: abs(h[1] - middle))
            self.pieces.append((self._start_s, t, encode_thumbnail(picture[None])))
        self._held = [h for h in self._held if h[0] >= index]
        self._start_index, self._start_s, self._step = index, t, 1

    def thumbnail(self, t: float) -> Optional[bytes]:
        """The JPEG of the piece that holds ``t`` (the nearest piece), or None."""
        if not self.pieces:
            return None
        holding = [p for p in self.pieces if p[0] <= t < p[1]]
        piece = holding[0] if holding else min(self.pieces, key=lambda p: abs(p[0] - t))
        return piece[2]


def _is_colour_bars(frame: np.ndarray) -> bool:
    """Colour bars (SMPTE, EBU): the top half of the picture is vertical stripes (each
    column nearly one colour), most of them saturated, with at least five colour steps
    across. ``frame``: ``uint8 [H, W, 3]`` BGR."""
    top = frame[: max(1, frame.shape[0] // 2)].astype(np.float32)
    if float(top.std(axis=0).mean()) > 20.0:  # 8-bit; 12.8 on a 1080p SMPTE clip at 64 px
        return False
    row = top.mean(axis=0)  # [W, 3]: the stripes' colours
    hsv = cv2.cvtColor(row[None].astype(np.uint8), cv2.COLOR_BGR2HSV)[0]
    if float(np.mean(hsv[:, 1] > 100)) < 0.5:
        return False
    steps = np.abs(np.diff(row, axis=0)).sum(axis=1) > 60
    return int(steps.sum()) >= 5


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two float gray pictures, 8-bit units."""
    return float(np.abs(a - b).mean())


def _aligned_distance(before: np.ndarray, after: np.ndarray) -> float:
    """``_distance`` after shifting ``before`` by the global translation phase
    correlation finds (at most a quarter of the picture), on the overlap."""
    height, width = before.shape
    (dx, dy), _response = cv2.phaseCorrelate(before, after)
    if not (abs(dx) <= width / 4 and abs(dy) <= height / 4):
        return _distance(before, after)
    shifted = cv2.warpAffine(before, np.float32([[1, 0, dx], [0, 1, dy]]), (width, height))
    x, y = int(np.ceil(abs(dx))), int(np.ceil(abs(dy)))
    overlap = (slice(y, height - y), slice(x, width - x))
    return _distance(shifted[overlap], after[overlap])


def shots_from_boundaries(boundaries: Sequence[ShotBoundary], end_s: float) -> list[Shot]:
    """Shots that cover ``[boundaries[0].t, end_s)`` in order without gaps: each runs
    from its boundary to the next (the last to ``end_s``). Boundaries at or past
    ``end_s`` are dropped; the first is the ``start``."""
    kept = [b for i, b in enumerate(boundaries) if i == 0 or b.t < end_s]
    shots = []
    for index, boundary in enumerate(kept):
        end = kept[index + 1].t if index + 1 < len(kept) else max(end_s, boundary.t)
        shots.append(Shot(index, boundary.t, end, boundary.kind, boundary.confidence))
    return shots
