"""What the CPU can run, and which precision ``--precision`` means on it.

Beam-free; reads the CPU plugin's capabilities (and ``/proc/cpuinfo``), nothing else.
``resolve_precision`` is the one place ``auto`` is decided; ``float_hint`` says what
the float layers of a resolved precision run in.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional

from beam_pipeline.models.spec import CLIP

__all__ = [
    "MIN_INT8_CALIBRATION_VIDEOS",
    "PRECISIONS",
    "BackendError",
    "auto_int8_holds",
    "cpu_capabilities",
    "float_hint",
    "resolve_precision",
]

PRECISIONS = ("auto", "f32", "bf16", "int8")
# ``--precision auto`` keeps int8 only when the calibration clips come from at least this
# many videos: calibrated on either half of the 12 gate files (halves with no content in
# common, tests/test_openvino.py HELD_OUT_FOLDS), int8 met the gates on the other half's
# clips, pooled over both folds; calibrated on 3 files, it did not.
MIN_INT8_CALIBRATION_VIDEOS = 6


class BackendError(RuntimeError):
    """The OpenVINO backend cannot serve this model or precision; one-line reason."""


_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_capabilities() -> frozenset[str]:
    """The CPU plugin's ``OPTIMIZATION_CAPABILITIES`` (e.g. ``{'FP32', 'BF16', 'INT8'}``),
    plus ``VNNI`` where ``/proc/cpuinfo`` lists AVX512-VNNI, AVX-VNNI or AMX-INT8: int8
    convolutions without VNNI may saturate and lose accuracy (OpenVINO's CPU device
    docs, "saturation issue"), so ``auto`` picks int8 only with it.

    ``$VIDEO_INDEX_OV_CAPABILITIES`` (comma-separated, e.g. ``FP32,INT8,VNNI``) overrides
    what the CPU reports: what ``auto`` would pick on another CPU (tests use it)."""
    override = os.environ.get("VIDEO_INDEX_OV_CAPABILITIES")
    if override:
        return frozenset(c.strip().upper() for c in override.split(",") if c.strip())
    import openvino as ov

    caps = set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:  # not Linux: no VNNI claimed
        flags = set()
    if flags.intersection(_VNNI_FLAGS):
        caps.add("VNNI")
    return frozenset(caps)


def resolve_precision(
    precision: str, capabilities: Optional[Iterable[str]] = None, kind: str = CLIP
) -> str:
    """The precision ``auto`` means on this CPU, or ``precision`` itself if it can run.

    ``auto`` (docs/openvino.md; ``bench/bench_backends.py``): ``bf16`` where
    the CPU has it (AVX512-BF16 / AMX report ``BF16``): 3.8x TF fp32 model-only on I3D,
    no calibration, the gates met. Else, for a clip model on a CPU with ``INT8`` and
    ``VNNI`` (``cpu_capabilities``), ``int8`` (3.4-3.7x TF fp32 with its float layers
    in f32, where f32 alone is 1.1x): the launcher then keeps it only if the job's
    calibration clips come from at least ``MIN_INT8_CALIBRATION_VIDEOS`` videos
    (``auto_int8_holds``), else f32. Else ``f32``. Raises BackendError for an unknown
    precision, for ``bf16`` on a CPU without it (it would run emulated, slower than
    f32) and for int8 on a non-clip model.
    """
    if precision not in PRECISIONS:
        raise BackendError(f"--precision must be one of {', '.join(PRECISIONS)}")
    caps = frozenset(capabilities if capabilities is not None else cpu_capabilities())
    if precision == "auto":
        if "BF16" in caps:
            return "bf16"
        return "int8" if {"INT8", "VNNI"} <= caps and kind == CLIP else "f32"
    if precision == "bf16" and "BF16" not in caps:
        raise BackendError("--precision bf16: this CPU has no bf16 (AVX512-BF16 or AMX)")
    if precision == "int8" and kind != CLIP:
        raise BackendError(f"--precision int8: only for clip models, not {kind} models")
    return precision


def auto_int8_holds(calibration_summary: dict) -> tuple[bool, int]:
    """Whether ``auto`` keeps int8 for a job calibrated on ``calibration_summary``
    (``CalibrationSet.summary()``): ``(kept, distinct videos of its clips)``. Calibrated
    on 6 videos, int8 met the gates on 6 videos it never saw; on 3, it did not
    (docs/openvino.md, int8 on unseen videos)."""
    videos = len({source["uri"] for source in calibration_summary.get("sources", ())})
    return videos >= MIN_INT8_CALIBRATION_VIDEOS, videos


def float_hint(precision: str, capabilities: Optional[Iterable[str]] = None) -> str:
    """``INFERENCE_PRECISION_HINT`` for a resolved precision: what float layers run in."""
    caps = frozenset(capabilities if capabilities is not None else cpu_capabilities())
    if precision == "bf16" or (precision == "int8" and "BF16" in caps):
        return "bf16"
    return "f32"
