"""A float IR → int8 by NNCF post-training quantization, on calibration clips.

Beam-free. Weights and activations of convolutions in int8, calibrated on real clips
of the job's input (``calibration.CalibrationSet``); the layers left in float run in
bf16 where the CPU has it, else f32 (``policy.float_hint``). The settings
(``QUANTIZE_DEFAULTS``, the measured choice: README, int8 recipes) are part of the
int8 IR's key.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

import numpy as np

from beam_pipeline.models.openvino.convert import to_model_range
from beam_pipeline.models.spec import ModelSpec

__all__ = ["QUANTIZE_DEFAULTS", "quantize", "quantize_settings"]

# The quantization settings an int8 IR is built with (``quantize_settings``); all are
# part of the IR's key. The defaults are the measured choice (docs/openvino.md: int8 recipe).
QUANTIZE_DEFAULTS = {
    "preset": "performance",  # or "mixed" (asymmetric activations)
    # False: NNCF's full bias correction; the only setting that met the gates (docs/openvino.md)
    "fast_bias_correction": False,
    "float_first_convs": 1,  # convolutions kept in float at the start, in graph order
    "float_last_convs": 1,  # and at the end (I3D: 1 = logits, 7 = + Mixed_5c, 13 = + Mixed_5b)
    # Activation ranges over the calibration batches: NNCF's default "mean_minmax" (the
    # mean of each batch's min and max) or "minmax" (the extremes seen: no clipping of
    # what calibration saw).
    "activation_range": "mean_minmax",
    # Accuracy control (nncf.quantize_with_accuracy_control): None = plain nncf.quantize;
    # else layers go back to float until the mean total-variation distance between the
    # float and int8 softmax on the calibration clips has dropped by at most this much.
    "max_drop": None,
}


def quantize_settings(options: Optional[dict] = None) -> dict:
    """``options`` over ``QUANTIZE_DEFAULTS``. Raises ValueError on an unknown setting."""
    options = dict(options or {})
    unknown = set(options) - set(QUANTIZE_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown quantize settings: {', '.join(sorted(unknown))}")
    return {**QUANTIZE_DEFAULTS, **options}


def _batches(clips: np.ndarray, batch: int) -> list[np.ndarray]:
    out = []
    for i in range(0, len(clips), batch):
        part = clips[i : i + batch]
        pad = [part[-1:]] * (batch - len(part))  # the IR takes exactly `batch` clips
        out.append(np.concatenate([part, *pad]))
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def quantize(float_ir: Path, calibration: Any, spec: ModelSpec, settings: dict) -> tuple[Any, dict]:
    """The float IR at ``float_ir`` quantized by NNCF on ``calibration`` (a
    ``CalibrationSet``: uint8 clips), at the IR's batch.

    ``settings``: see ``QUANTIZE_DEFAULTS``. Returns ``(ov.Model, record)``, the record
    naming the calibration and the settings.
    """
    import nncf

    # NNCF logs and draws progress bars on stdout, where the job's summary goes: its
    # INFO lines are dropped and its bars go to stderr.
    nncf.set_log_level(logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr):
        return _quantize_quietly(float_ir, calibration, spec, quantize_settings(settings))


def _quantize_quietly(
    float_ir: Path, calibration: Any, spec: ModelSpec, settings: dict
) -> tuple[Any, dict]:
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    model = ov.Core().read_model(str(float_ir))
    batch = model.inputs[0].get_partial_shape()[0].get_length()
    batches = _batches(calibration.clips, batch)
    convs = [op.get_friendly_name() for op in model.get_ordered_ops() if _is_conv(op)]
    first, last = settings["float_first_convs"], settings["float_last_convs"]
    names = convs[:first] + (convs[len(convs) - last :] if last else [])
    ignored = nncf.IgnoredScope(names=sorted(set(names))) if names else None

    ranges = {
        "mean_minmax": RangeEstimatorParametersSet.MEAN_MINMAX,
        "minmax": RangeEstimatorParametersSet.MINMAX,
    }[settings["activation_range"]]
    common = dict(
        subset_size=len(batches),
        preset=nncf.QuantizationPreset(settings["preset"]),
        fast_bias_correction=settings["fast_bias_correction"],
        ignored_scope=ignored,
    )
    dataset = nncf.Dataset(batches, lambda b: to_model_range(b, spec))
    record = {"calibration": calibration.summary(), "quantize": settings}
    advanced = AdvancedQuantizationParameters(activations_range_estimator_params=ranges)
    if settings["max_drop"] is None:
        return nncf.quantize(model, dataset, advanced_parameters=advanced, **common), record

    # Validation: the calibration clips, scored against the float IR's own softmax
    # (metric 1 - mean total-variation distance, 1.0 for the float model itself).
    reference = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    items = [(b, _softmax(reference(to_model_range(b, spec))[0])) for b in batches]

    def validate(compiled: Any, data: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
        distances = [
            0.5 * np.abs(_softmax(compiled(to_model_range(b, spec))[0]) - p).sum(-1).mean()
            for b, p in data
        ]
        return float(1.0 - np.mean(distances))

    quantized = nncf.quantize_with_accuracy_control(
        model,
        dataset,
        nncf.Dataset(items),
        validate,
        max_drop=settings["max_drop"],
        advanced_quantization_parameters=advanced,
        **common,
    )
    return quantized, record


def _is_conv(op: Any) -> bool:
    return op.get_type_name() in ("Convolution", "GroupConvolution")
