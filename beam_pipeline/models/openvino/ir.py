"""The IR of a spec at one batch and precision: taken from the cache, else built.

Beam-free. A clip model's IR (``ensure_ir``) is keyed by the SavedModel's sha256, the
input shape, the value range, the outputs, the OpenVINO version, the weights'
precision and, for int8, the calibration set's sha256 and the quantization settings;
a stream model's (``ensure_stream_ir``) by the same less what int8 adds. f32 and bf16
share the float IR (bf16 is chosen when it is compiled); int8 is the float IR
quantized. Lookup order: an IR carried beside the SavedModel, the cache, a build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from beam_pipeline.models.openvino import convert
from beam_pipeline.models.openvino.cache import (
    IrInfo,
    cached_build,
    carried_ir,
    key_name,
    model_folder,
    read_info,
    savedmodel_sha256,
)
from beam_pipeline.models.openvino.calibration import CalibrationSet
from beam_pipeline.models.openvino.policy import BackendError
from beam_pipeline.models.openvino.quantize import quantize, quantize_settings
from beam_pipeline.models.savedmodel import locate_saved_model
from beam_pipeline.models.spec import CLIP, STREAM, ModelSpec

__all__ = ["clip_key", "ensure_ir", "ensure_stream_ir"]


def clip_key(
    spec: ModelSpec,
    model_sha256: str,
    batch: int,
    weights: str,
    calibration: Optional[str],
    quantize_options: Optional[dict] = None,
) -> dict:
    """A clip IR's key (see the module doc); ``weights`` is ``f32`` or ``int8``."""
    import openvino as ov

    shape = [batch, spec.frames_per_clip, spec.size, spec.size, 3]
    return {
        "model_sha256": model_sha256,
        "kind": spec.kind,
        "input_shape": shape,
        "value_range": list(spec.value_range),
        "outputs": convert.ir_outputs(spec),
        "weights": weights,  # f32 or int8
        "calibration_sha256": calibration,
        # int8: the quantization settings (every field, defaults filled in)
        "quantize": quantize_settings(quantize_options) if weights == "int8" else None,
        "openvino": ov.get_version(),
    }


def ensure_ir(
    spec: ModelSpec,
    batch: int,
    precision: str,
    calibration: Optional[CalibrationSet] = None,
    cache_dir: Optional[Path] = None,
    quantize_options: Optional[dict] = None,
    calibration_sha256: Optional[str] = None,
    announce: Optional[Callable[[], None]] = None,
) -> IrInfo:
    """The cached IR for clip model ``spec`` at batch ``batch`` and ``precision``, built
    on first use.

    ``precision`` is resolved (``f32``, ``bf16`` or ``int8``). int8 builds from
    ``calibration``; without it (a worker), it takes the cached int8 IR calibrated on
    ``calibration_sha256`` (None: the only one cached for this model and shape).
    ``announce`` is called once, before a build starts (not when the IR is cached).
    Safe to call from several processes. Raises BackendError when the model cannot be
    converted or int8 has no calibration, FileNotFoundError when the SavedModel is not
    there.
    """
    source = locate_saved_model(spec.source)
    model_sha = savedmodel_sha256(source)
    if spec.kind != CLIP:
        raise BackendError(f"OpenVINO serves clip models; {spec.name} is a {spec.kind} model")
    weights = "int8" if precision == "int8" else "f32"
    base = model_folder(cache_dir, spec.name, model_sha)
    if weights == "int8" and calibration is None:
        found = _find_int8(base, spec, model_sha, batch, calibration_sha256)
        if found is not None:
            return found
        raise BackendError(
            f"no int8 IR of {spec.name} at batch {batch} is cached: run with --precision "
            "int8 on the launcher first (it calibrates on the input), or pass --precision bf16"
        )
    key = clip_key(
        spec, model_sha, batch, weights, calibration.sha256 if calibration else None,
        quantize_options,
    )  # fmt: skip
    carried = carried_ir(source, key, cache_dir)
    if carried is not None:
        return carried

    def build():
        if weights == "f32":
            return convert.convert_clip(spec, source, batch), {}
        float_ir = ensure_ir(spec, batch, "f32", cache_dir=cache_dir)
        return quantize(float_ir.path, calibration, spec, key["quantize"])

    return cached_build(base / key_name(key), key, build, announce)


def _find_int8(
    base: Path, spec: ModelSpec, model_sha: str, batch: int, calibration_sha256: Optional[str]
) -> Optional[IrInfo]:
    key = clip_key(spec, model_sha, batch, "int8", calibration_sha256)
    found = []
    for folder in sorted(base.glob(f"int8-b{batch}-*")):
        info = read_info(folder)
        if info and all(
            info.get(k) == v for k, v in key.items() if v is not None or k != "calibration_sha256"
        ):
            found.append(IrInfo(folder / "model.xml", info))
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise BackendError(
            f"{len(found)} int8 IRs of {spec.name} at batch {batch} are cached (calibrated on "
            "different inputs): the launcher must say which (it passes its calibration set)"
        )
    return None


def stream_key(spec: ModelSpec, model_sha256: str, batch: int) -> dict:
    """A stream IR's key: one frame per video, ``batch`` videos, f32 weights."""
    import openvino as ov

    return {
        "model_sha256": model_sha256,
        "kind": STREAM,
        "input_shape": [batch, 1, spec.size, spec.size, 3],
        "value_range": list(spec.value_range),
        "weights": "f32",
        "calibration_sha256": None,
        "openvino": ov.get_version(),
    }


def ensure_stream_ir(
    spec: ModelSpec,
    batch: int,
    cache_dir: Optional[Path] = None,
    announce: Optional[Callable[[], None]] = None,
) -> IrInfo:
    """The cached stream IR of ``spec`` at lockstep batch ``batch``, built on first use
    (about 1.5 min for MoViNet A0 on 2 cores; ``announce`` is called before a build
    starts). Safe to call from several processes. Raises BackendError when the model
    is not a stream model or cannot be converted."""
    if spec.kind != STREAM:
        raise BackendError(f"{spec.name} is a {spec.kind} model, not a stream model")
    source = locate_saved_model(spec.source)
    model_sha = savedmodel_sha256(source)
    key = stream_key(spec, model_sha, batch)
    folder = model_folder(cache_dir, spec.name, model_sha) / f"stream-{key_name(key)}"
    return cached_build(folder, key, lambda: convert.convert_stream(spec, source, batch), announce)
