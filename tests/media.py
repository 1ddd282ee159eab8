"""Videos the tests write themselves, whose frames say which frame they are.

``write_test_video`` writes a lossless video (FFV1 in ``.mkv`` by default; PNG or
QuickTime RLE in ``.mov``; lossless x264 in ``.mp4``) in which frame ``i`` is one flat
colour that encodes ``i`` (base-8 digits on R, G, B, 36 grey levels apart), so
``frame_index`` reads the index back from any RGB rendering of it: resized, cropped,
converted through YUV. With ``marker=True`` a white square sits in the stored
picture's top-left corner, to tell which way up a frame came out. ``times`` gives
explicit presentation times (variable frame rate); ``rotation`` writes a display
matrix (degrees counter-clockwise, FFmpeg's sign).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import av
import numpy as np

LEVEL_STEP = 36  # 8 levels per channel: 0, 36, ..., 252
MAX_INDEX = 8**3  # distinct indices before the colours wrap around

# Lossless settings per codec: (pixel format, encoder options).
_CODECS = {
    "ffv1": ("bgr0", {}),  # exact RGB
    "png": ("rgb24", {}),
    "qtrle": ("rgb24", {}),
    "libx264": ("yuv444p", {"qp": "0", "preset": "ultrafast"}),
    "mpeg4": ("yuv420p", {"qscale": "2"}),  # lossy: only for tests that need speed
}


def index_colour(index: int) -> tuple[int, int, int]:
    """The flat RGB colour of frame ``index`` (indices wrap at ``MAX_INDEX``)."""
    index %= MAX_INDEX
    return (
        (index // 64) * LEVEL_STEP,
        (index // 8 % 8) * LEVEL_STEP,
        (index % 8) * LEVEL_STEP,
    )


def frame_index(rgb: np.ndarray) -> int:
    """The index a frame written by ``write_test_video`` encodes.

    Reads the middle of the picture (the marker lives in a corner), so it survives
    resizing, centre cropping and rotation.
    """
    height, width = rgb.shape[:2]
    middle = rgb[height // 4 : height - height // 4, width // 4 : width - width // 4]
    if middle.size == 0:
        middle = rgb
    r, g, b = (int(round(v / LEVEL_STEP)) for v in middle.reshape(-1, 3).mean(axis=0))
    return r * 64 + g * 8 + b


def indexed_picture(index: int, size: tuple[int, int], marker: bool = False) -> np.ndarray:
    """Frame ``index`` as RGB uint8 ``[height, width, 3]``."""
    width, height = size
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[:] = index_colour(index)
    if marker:
        rgb[: max(1, height // 8), : max(1, width // 8)] = 255
    return rgb


def write_test_video(
    path: Path | str,
    num_frames: int,
    fps: float | Fraction,
    size: tuple[int, int] = (64, 48),
    codec: str = "ffv1",
    *,
    times: Optional[Sequence[Fraction]] = None,
    rotation: int = 0,
    marker: bool = False,
) -> Path:
    """Write ``num_frames`` indexed frames at ``fps`` (or at ``times`` seconds).

    ``size`` is ``(width, height)``; the container follows ``path``'s suffix. With
    ``times`` the stream has a 1/1000 s time base and those exact pts (VFR).
    """
    path = Path(path)
    pix_fmt, options = _CODECS[codec]
    rate = Fraction(fps).limit_denominator(1_000_000)
    if times is None:
        time_base = 1 / rate
        stamps = list(range(num_frames))
    else:
        if len(times) != num_frames:
            raise ValueError("need one time per frame")
        time_base = Fraction(1, 1000)
        stamps = [int(Fraction(t) * 1000) for t in times]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height = size
        stream.pix_fmt = pix_fmt
        # The encoder's time base too, or explicit pts are rounded to its 1/fps grid.
        stream.codec_context.time_base = time_base
        stream.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        for index, pts in enumerate(stamps):
            frame = av.VideoFrame.from_ndarray(indexed_picture(index, size, marker), format="rgb24")
            frame.pts = pts
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_vfr_test_video(
    path: Path | str, times: Sequence[Fraction], size: tuple[int, int] = (64, 48)
) -> Path:
    """``write_test_video`` with explicit presentation times (FFV1 in Matroska)."""
    return write_test_video(path, len(times), 1000, size, times=times)


def write_raw_h264(path: Path | str, num_frames: int, size: tuple[int, int] = (64, 48)) -> Path:
    """An Annex-B H.264 elementary stream: no container, so no frame has a pts."""
    path = Path(path)
    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=10, options=_CODECS["libx264"][1])
        stream.width, stream.height = size
        stream.pix_fmt = "yuv444p"
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(indexed_picture(index, size), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_video(path: Path, frames, fps: int, codec="ffv1", pix_fmt="bgr0", options=None) -> Path:
    """Encode RGB uint8 [H, W, 3] frames at a constant rate (frame i at i / fps)."""
    frames = list(frames)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


COLOURS = {"red": (230, 10, 10), "green": (10, 230, 10), "blue": (10, 10, 230)}


def write_colour_video(path: Path, rgb, seconds: float, fps: int = 10, size=(48, 32)) -> Path:
    """A lossless video of one solid colour (ffv1 in Matroska), ``size`` = (width, height)."""
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    frame[...] = rgb
    return write_video(path, [frame] * int(round(seconds * fps)), fps, "ffv1", "yuv444p")


# ITU-R BT.2087: linear BT.709 RGB -> linear BT.2020 RGB.
_BT709_TO_BT2020 = np.array(
    [[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]]
)
_HDR_TRANSFERS = {"pq": ("smpte2084", 16), "hlg": ("arib-std-b67", 18)}


def write_hdr_video(path: Path, sdr_rgb: np.ndarray, transfer: str, codec: str, fps: int = 10):
    """The SDR picture ``sdr_rgb`` (uint8 [T, H, W, 3], BT.709) as a 10-bit HDR video:
    BT.2020 primaries, ``transfer`` "pq" (SMPTE ST 2084) or "hlg" (ARIB STD-B67), SDR
    white at 100 cd/m2 (ffmpeg's zscale npl=100); ``codec`` libx265 or libx264."""
    from av.video.reformatter import Colorspace

    v = sdr_rgb.astype(np.float64) / 255
    linear = np.where(v < 0.081, v / 4.5, ((v + 0.099) / 1.099) ** (1 / 0.45))  # BT.709
    nits = np.clip(linear @ _BT709_TO_BT2020.T, 0, None) * 100.0
    if transfer == "pq":  # SMPTE ST 2084 inverse EOTF
        m1, m2, c1, c2, c3 = 0.1593017578125, 78.84375, 0.8359375, 18.8515625, 18.6875
        y = (nits / 10000) ** m1
        signal = ((c1 + c2 * y) / (1 + c3 * y)) ** m2
    else:  # BT.2100 HLG: undo the OOTF of a 1000 cd/m2 display, then the OETF
        luma = nits @ np.array([0.2627, 0.6780, 0.0593]) / 1000
        scene_luma = np.maximum(luma, 1e-9) ** (1 / 1.2)
        e = nits / 1000 / np.maximum(scene_luma, 1e-9)[..., None] ** 0.2
        a, b, c = 0.17883277, 0.28466892, 0.55991073
        signal = np.where(e <= 1 / 12, np.sqrt(3 * e), a * np.log(np.maximum(12 * e - b, 1e-9)) + c)
    rgb48 = np.round(np.clip(signal, 0, 1) * 65535).astype(np.uint16)
    name, trc = _HDR_TRANSFERS[transfer]
    params = f"colorprim=bt2020:transfer={name}:colormatrix=bt2020nc"
    options = {"x265-params": params + ":log-level=error"} if codec == "libx265" else {
        "x264-params": params}  # fmt: skip
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.height, stream.width = sdr_rgb.shape[1:3]
        stream.pix_fmt = "yuv420p10le"
        ctx = stream.codec_context
        ctx.color_trc, ctx.color_primaries, ctx.colorspace = trc, 9, 9
        for picture in rgb48:
            frame = av.VideoFrame.from_ndarray(picture, format="rgb48le")
            frame = frame.reformat(format="yuv420p10le", dst_colorspace=Colorspace.BT2020)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# --- Edited videos: real clips joined with known shot boundaries -------------------------

EDIT_SIZE = (320, 240)  # (width, height) every shot is scaled to
EDIT_FPS = 25


class Boundary(NamedTuple):
    """Where a shot starts in an edited video: ``t`` is the first frame of the new shot
    for a cut, the middle of the transition for a fade or a dissolve (seconds)."""

    kind: str  # "cut" | "fade" | "dissolve"
    t: float


class EditedVideo(NamedTuple):
    path: Path
    boundaries: tuple[Boundary, ...]  # in time order, the video's start not included
    duration_s: float


def clip_frames(path: Path | str, seconds: float, start_s: float = 0.0) -> list[np.ndarray]:
    """``seconds`` of a real clip from ``start_s``, one frame per ``1 / EDIT_FPS`` s (the
    nearest earlier source frame), each RGB uint8 ``[240, 320, 3]`` (stretched)."""
    import cv2

    wanted = [start_s + i / EDIT_FPS for i in range(int(round(seconds * EDIT_FPS)))]
    out: list[np.ndarray] = []
    with av.open(str(path)) as container:
        last = None
        for frame in container.decode(video=0):
            t = float(frame.time) if frame.time is not None else 0.0
            while len(out) < len(wanted) and t > wanted[len(out)] + 1e-6 and last is not None:
                out.append(last)
            if len(out) == len(wanted):
                break
            last = cv2.resize(frame.to_ndarray(format="rgb24"), EDIT_SIZE, cv2.INTER_AREA)
    while len(out) < len(wanted) and last is not None:
        out.append(last)  # a clip shorter than asked holds its last frame
    return out


def _blend(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    return np.clip(a * (1 - weight) + b * weight + 0.5, 0, 255).astype(np.uint8)


def write_edited_video(
    path: Path | str,
    shots: Sequence[Sequence[np.ndarray]],
    joins: Sequence[str],
    transition_s: float = 1.0,
) -> EditedVideo:
    """Join ``shots`` (lists of RGB frames) with ``joins[i]`` between shot i and i + 1:
    ``"cut"``, ``"fade"`` (out to black and in again, ``transition_s`` in all) or
    ``"dissolve"`` (a linear cross-dissolve of ``transition_s``, overlapping the two
    shots). H.264 (yuv420p, crf 20) in MP4 at ``EDIT_FPS``: lossy, as real files are."""
    if len(joins) != len(shots) - 1:
        raise ValueError("need one join between each two shots")
    frames: list[np.ndarray] = list(shots[0])
    boundaries: list[Boundary] = []
    span = int(round(transition_s * EDIT_FPS))
    for join, shot in zip(joins, shots[1:]):
        shot = list(shot)
        if join == "cut":
            boundaries.append(Boundary("cut", len(frames) / EDIT_FPS))
            frames += shot
        elif join == "fade":
            half = span // 2
            black = np.zeros_like(shot[0])
            for i in range(half):  # the last `half` frames of the shot go to black
                k = len(frames) - half + i
                frames[k] = _blend(frames[k], black, (i + 1) / half)
            boundaries.append(Boundary("fade", len(frames) / EDIT_FPS))
            for i in range(min(half, len(shot))):  # and the next comes out of it
                shot[i] = _blend(black, shot[i], (i + 1) / (half + 1))
            frames += shot
        elif join == "dissolve":
            start = len(frames) - span
            for i in range(span):
                frames[start + i] = _blend(frames[start + i], shot[i], (i + 1) / (span + 1))
            boundaries.append(Boundary("dissolve", (start + span / 2) / EDIT_FPS))
            frames += shot[span:]
        else:
            raise ValueError(f"unknown join {join!r}")
    path = write_video(
        Path(path), frames, EDIT_FPS, "libx264", "yuv420p", {"crf": "20", "preset": "veryfast"}
    )
    return EditedVideo(path, tuple(boundaries), len(frames) / EDIT_FPS)


def pan_zoom_frames(still: np.ndarray, seconds: float, pixels_per_frame: float = 12.0):
    """A fast camera move over one still picture: a pan across it, then a zoom in,
    as RGB uint8 ``[240, 320, 3]`` frames (one shot, no boundary)."""
    import cv2

    big = cv2.resize(still, (EDIT_SIZE[0] * 2, EDIT_SIZE[1] * 2), interpolation=cv2.INTER_CUBIC)
    count = int(round(seconds * EDIT_FPS))
    width, height = EDIT_SIZE
    x = y = 0.0
    w, h = float(width), float(height)
    frames = []
    for i in range(count):
        if i < count // 2:  # pan right and down at `pixels_per_frame`
            x = min(x + pixels_per_frame, big.shape[1] - w)
            y = min(y + pixels_per_frame / 2, big.shape[0] - h)
        else:  # then zoom in about the window's centre, 3 % a frame
            cx, cy = x + w / 2, y + h / 2
            w, h = w / 1.03, h / 1.03
            x, y = cx - w / 2, cy - h / 2
        crop = big[int(y) : int(y + h), int(x) : int(x + w)]
        frames.append(cv2.resize(crop, EDIT_SIZE, interpolation=cv2.INTER_AREA))
    return frames


def with_flashes(frames: Sequence[np.ndarray], at_s: Sequence[float], length: int = 2):
    """``frames`` with a white flash (``length`` frames nearly white) at each ``at_s``."""
    frames = list(frames)
    white = np.full_like(frames[0], 255)
    for t in at_s:
        first = int(round(t * EDIT_FPS))
        for k in range(first, min(first + length, len(frames))):
            frames[k] = _blend(frames[k], white, 0.9)
    return frames


def shot_corpus(folder: Path | str, media: Path | str) -> list[EditedVideo]:
    """The edited videos shot detection is measured on (tests and bench/bench_shots.py),
    made from single-shot real clips under ``media`` (``../shared/media``): hard cuts,
    fades through black, one-second cross-dissolves, one-second shots, and one-shot
    controls (a fast pan and zoom over a still, white flashes, a fade-in at the start,
    a real clip's own camera motion) that have no boundary."""
    folder, media = Path(folder), Path(media)
    pool = media / "mmaction2" / "test.mp4"  # cleaning a pool, 10 s
    eyebrows = media / "mmaction2" / "test.avi"  # 6.5 s
    street = media / "mmaction2" / "test_video_structuralize.mp4"  # 10 s, hand-held
    cricket = media / "kinetics-i3d" / "v_CricketShot_g04_c01_rgb.gif"  # 3.2 s
    chaplin = media / "moviepy" / "chaplin.mp4"  # 9.6 s, one take

    def shot(path, seconds, start_s=0.0):
        return clip_frames(path, seconds, start_s)

    videos = [
        write_edited_video(
            folder / "cuts.mp4",
            [shot(pool, 3), shot(eyebrows, 3), shot(street, 3), shot(cricket, 3), shot(chaplin, 3)],
            ["cut"] * 4,
        ),
        write_edited_video(
            folder / "fades.mp4",
            [shot(chaplin, 3), shot(pool, 3, 4), shot(street, 3, 4)],
            ["fade", "fade"],
        ),
        write_edited_video(
            folder / "dissolves.mp4",
            [shot(eyebrows, 3), shot(street, 3), shot(chaplin, 3, 5)],
            ["dissolve", "dissolve"],
        ),
        write_edited_video(
            folder / "quick_cuts.mp4",
            [
                shot(pool, 1),
                shot(eyebrows, 1, 2),
                shot(street, 1, 6),
                shot(cricket, 1),
                shot(chaplin, 1, 6),
                shot(pool, 1, 7),
            ],
            ["cut"] * 5,
        ),
        write_edited_video(
            folder / "pan_zoom.mp4", [pan_zoom_frames(shot(chaplin, 0.04, 2)[0], 4)], []
        ),
        write_edited_video(folder / "flashes.mp4", [with_flashes(shot(street, 4), [1.0, 2.6])], []),
        write_edited_video(folder / "hand_held.mp4", [shot(street, 9.5)], []),
    ]
    # A programme that fades in from black at its start: no boundary there.
    opening = shot(pool, 4, 2)
    black = np.zeros_like(opening[0])
    half_s = 12
    opening = [black] * 6 + [
        _blend(black, f, (i + 1) / half_s) if i < half_s else f for i, f in enumerate(opening)
    ]
    videos.append(write_edited_video(folder / "fade_in.mp4", [opening], []))
    return videos


def match_boundaries(
    found: Sequence[tuple[str, float]], truth: Sequence[Boundary], fps: float = EDIT_FPS
) -> list[Optional[int]]:
    """For each true boundary, the index in ``found`` (``(kind, t)``, the video's start
    left out) that matches it, or None: a cut within one frame (``1 / fps`` s), a fade
    or a dissolve within half a second of its middle; each found one matches once."""
    used: set[int] = set()
    matches: list[Optional[int]] = []
    for boundary in truth:
        tolerance = 1 / fps + 1e-6 if boundary.kind == "cut" else 0.5
        close = [
            (abs(t - boundary.t), i)
            for i, (_, t) in enumerate(found)
            if i not in used and abs(t - boundary.t) <= tolerance
        ]
        matches.append(min(close)[1] if close else None)
        if close:
            used.add(min(close)[1])
    return matches
