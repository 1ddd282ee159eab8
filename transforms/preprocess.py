"""Frame preprocessing: resize the shorter side, then centre crop to the model's square.

Takes RGB uint8 ``[H, W, 3]`` frames of any size and aspect (640x64, 1x1, portrait)
and gives RGB uint8 ``[size, size, 3]``. Resizing is bilinear (as the I3D reference
preprocessing); the shorter side goes to ``resize_shorter`` (default ``size``) and the
longer side keeps the aspect, but never below ``size``, so the crop always fits.

"Bilinear" as swscale does it: when shrinking, its kernel widens with the scale
factor, so it averages rather than skips pixels (a plain bilinear tap, such as cv2's
``INTER_LINEAR``, would drop thin detail when shrinking by 4x or more).

The resize runs inside the decoder's pixel-format conversion (swscale), which is
cheaper than converting at full resolution and resizing after: ``resize_dims`` gives
the size for that (``transforms.reading.prepare_frame``), ``centre_crop`` finishes.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class FrameSpec:
    """The square a model eats: ``size`` pixels, after resizing the shorter side."""

    size: int
    resize_shorter: Optional[int] = None

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")
        if self.resize_shorter is not None and self.resize_shorter < self.size:
            raise ValueError("resize_shorter must be >= size (the crop must fit)")

    @property
    def shorter(self) -> int:
        return self.resize_shorter or self.size


def resize_dims(width: int, height: int, spec: FrameSpec) -> tuple[int, int]:
    """(width, height) after resizing the shorter side to ``spec.shorter``.

    The longer side is rounded, and kept at least ``spec.size`` so the centre crop
    fits even for extreme aspects.
    """
    if width < 1 or height < 1:
        raise ValueError(f"frame has no pixels: {width}x{height}")
    target = spec.shorter
    if width <= height:
        new_w, new_h = target, max(spec.size, round(height * target / width))
    else:
        new_w, new_h = max(spec.size, round(width * target / height)), target
    return new_w, new_h


def centre_crop(frame: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` square of an ``[H, W, 3]`` frame (a copy)."""
    height, width = frame.shape[:2]
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} from {width}x{height}")
    top = (height - size) // 2
    left = (width - size) // 2
    return np.ascontiguousarray(frame[top : top + size, left : left + size])
