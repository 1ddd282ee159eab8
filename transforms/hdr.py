"""HDR video to an SDR picture: what a model trained on SDR video should see.

Phones record HDR by default: 10-bit, BT.2020 primaries, and a PQ (SMPTE ST 2084) or
HLG (ARIB STD-B67 / BT.2100) transfer. Converted to 8-bit RGB as if it were SDR, the
picture comes out washed out (mid grey near code 130 where SDR has it near 100, and
little contrast) and a Kinetics model's labels drop or flip. This module is the
operator ffmpeg's recipe ``zscale=t=linear:npl=100, zscale=p=bt709,
tonemap=mobius, zscale=t=bt709`` applies, in numpy, on frames already resized by
swscale (so on a few hundred pixels a side):

1. the transfer's EOTF to display light, with SDR reference white (100 cd/m2) at 1.0:
   PQ per SMPTE ST 2084; HLG per BT.2100 (inverse OETF, then the OOTF of a
   1000 cd/m2 display, system gamma 1.2);
2. BT.2020 to BT.709 primaries in linear light (ITU-R BT.2087 matrix), out-of-gamut
   values clipped;
3. Mobius tone mapping of max(R, G, B) (mpv's and ffmpeg's ``tonemap=mobius``,
   linear up to 0.3, then a rational curve reaching 1.0 at the transfer's peak:
   100 for PQ, 10 for HLG), each pixel scaled by it so hues stay;
4. the BT.709 OETF, to uint8.

Mobius, not Hable: it keeps SDR-range tones as they are (measured on the open case
``hdr10_pq_bt2020_hevc10.mp4``: mean RGB 82, 122, 136 against the SDR source's
91, 126, 132; Hable gives about 39, 80, 93).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["HDR_TRANSFERS", "is_hdr", "tone_map_to_sdr", "transfer_name"]

# FFmpeg's AVColorTransferCharacteristic values (libavutil/pixfmt.h) and names.
_TRANSFER_NAMES = {
    1: "bt709",
    4: "gamma22",
    5: "gamma28",
    6: "smpte170m",
    7: "smpte240m",
    8: "linear",
    13: "iec61966-2-1",
    14: "bt2020-10",
    15: "bt2020-12",
    16: "smpte2084",
    18: "arib-std-b67",
}
PQ, HLG = 16, 18
HDR_TRANSFERS = frozenset({PQ, HLG})
_PEAK = {PQ: 10000.0 / 100.0, HLG: 1000.0 / 100.0}  # in units of SDR white

# ITU-R BT.2087: linear BT.2020 RGB -> linear BT.709 RGB.
_BT2020_TO_BT709 = np.array(
    [[1.6605, -0.5876, -0.0728], [-0.1246, 1.1329, -0.0083], [-0.0182, -0.1006, 1.1187]],
    dtype=np.float32,
)
_BT2020_LUMA = np.array([0.2627, 0.6780, 0.0593], dtype=np.float32)


def transfer_name(trc: Optional[int]) -> Optional[str]:
    """FFmpeg's name of a transfer characteristic (``smpte2084``, ``arib-std-b67``,
    ``bt709``, ...); None where the file does not say (2, unspecified) or is unknown."""
    return _TRANSFER_NAMES.get(int(trc)) if trc is not None else None


def is_hdr(trc: Optional[int]) -> bool:
    """Whether the transfer is PQ or HLG."""
    return trc in HDR_TRANSFERS


def _pq_to_light(signal: np.ndarray) -> np.ndarray:
    """SMPTE ST 2084 EOTF: signal [0, 1] -> cd/m2 / 100."""
    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    p = np.power(signal, 1 / m2)
    return np.power(np.maximum(p - c1, 0) / (c2 - c3 * p), 1 / m1) * (10000.0 / 100.0)


def _hlg_to_light(signal: np.ndarray) -> np.ndarray:
    """BT.2100 HLG: inverse OETF, then the OOTF of a 1000 cd/m2 display -> cd/m2 / 100."""
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    scene = np.where(
        signal <= 0.5, signal * signal / 3, (np.exp((signal - c) / a) + b) / 12
    ).astype(np.float32)
    luma = np.maximum(scene @ _BT2020_LUMA, 0)[..., None]
    return 1000.0 / 100.0 * np.power(luma, 0.2) * scene


def _mobius(x: np.ndarray, peak: float, j: float = 0.3) -> np.ndarray:
    a = -j * j * (peak - 1) / (j * j - 2 * j + peak)
    b = (j * j - 2 * j * peak + peak) / max(peak - 1, 1e-6)
    return np.where(x <= j, x, (b * b + 2 * b * j + j * j) / (b - a) * (x + a) / (x + b))


def tone_map_to_sdr(rgb16: np.ndarray, trc: int) -> np.ndarray:
    """uint16 ``[H, W, 3]`` R'G'B' (BT.2020, full scale 65535, transfer ``trc``: PQ or
    HLG) -> uint8 ``[H, W, 3]`` RGB, BT.709 primaries and transfer. Raises ValueError
    for a transfer that is not HDR."""
    if trc not in HDR_TRANSFERS:
        raise ValueError(f"not an HDR transfer: {trc!r}")
    signal = rgb16.astype(np.float32) / 65535.0
    light = _pq_to_light(signal) if trc == PQ else _hlg_to_light(signal)
    light = np.maximum(light.astype(np.float32) @ _BT2020_TO_BT709.T, 0)
    brightest = np.maximum(light.max(axis=-1, keepdims=True), 1e-6)
    light = np.minimum(light * (_mobius(brightest, _PEAK[trc]) / brightest), 1.0)
    coded = np.where(light < 0.018, 4.5 * light, 1.099 * np.power(light, 0.45) - 0.099)
    return np.round(coded * 255).astype(np.uint8)
