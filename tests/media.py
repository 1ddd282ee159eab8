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
from typing import Optional, Sequence

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
