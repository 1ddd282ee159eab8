"""A thumbnail per clip, from the frames decode already produced (no second decode).

Beam-free. Takes a clip's model-ready frames, ``uint8 [T, H, W, 3] RGB`` (for I3D the
224 x 224 centre crop of the frames resampled to 25 fps), and gives its middle frame
``T // 2`` scaled so that its longer side is at most ``MAX_SIDE`` pixels, encoded as
JPEG. The bytes travel on the clip's key (``ClipKey.thumbnail``) and are written in
the ``thumbnail`` column of ``clips/``.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["MAX_SIDE", "JPEG_QUALITY", "MIME_TYPE", "encode_thumbnail", "add_thumbnail"]

MAX_SIDE = 160  # pixels, longer side
JPEG_QUALITY = 80  # cv2/libjpeg scale 0-100
MIME_TYPE = "image/jpeg"


def encode_thumbnail(frames: np.ndarray, max_side: int = MAX_SIDE) -> bytes:
    """The JPEG of the middle frame of ``frames`` (``uint8 [T, H, W, 3] RGB``, T >= 1).

    The frame is shrunk with area averaging (never enlarged) so that its longer side is
    at most ``max_side`` pixels, aspect ratio kept. Raises ``ValueError`` on another
    shape or dtype, ``RuntimeError`` if the encoder fails.
    """
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise ValueError(
            f"expected uint8 [T, H, W, 3] with T >= 1, got {frames.dtype} {frames.shape}"
        )
    frame = frames[len(frames) // 2]
    height, width = frame.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise RuntimeError("the JPEG encoder failed")
    return encoded.tobytes()


def add_thumbnail(keyed_clip: tuple, max_side: int = MAX_SIDE) -> tuple:
    """``(ClipKey, frames)`` -> the same pair, the key carrying ``thumbnail`` bytes."""
    key, frames = keyed_clip
    return key._replace(thumbnail=encode_thumbnail(frames, max_side)), frames
