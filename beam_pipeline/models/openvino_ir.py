"""SavedModel -> OpenVINO IR, converted once and cached; int8 by NNCF post-training quantization.

Beam-free. A clip model's SavedModel (any source a spec names: the built-in I3D, a
TF Hub handle, a local or bucket directory) is converted with ``openvino.convert_model``
at one static input shape, ``float32 [batch, frames_per_clip, size, size, 3]`` RGB in
the spec's ``value_range``, giving the logits ``float32 [batch, classes]`` and, where
the spec names an ``embedding_key``, the embedding ``float32 [batch, embedding_dim]``
from the same pass (``ir_outputs``). The IR is cached under
``<cache>/openvino/`` (``cache`` as for the I3D SavedModel), keyed by the SavedModel's
sha256, the input shape, the OpenVINO version, the weights' precision and, for int8,
the calibration set's sha256 and the quantization settings (``QUANTIZE_DEFAULTS``);
built under a file lock into a temporary folder and renamed into place, so concurrent
workers convert once and never read half an IR.

Precisions (``--precision``):

- ``f32``: the float IR, run in float32.
- ``bf16``: the same float IR, run with ``INFERENCE_PRECISION_HINT=bf16`` (the CPU
  plugin keeps accumulations in f32). Only where the CPU has bf16 (AVX512-BF16 / AMX).
- ``int8``: the float IR quantized by ``nncf.quantize`` (weights and activations of
  convolutions in int8, calibrated on real clips, see ``CalibrationSet``); the layers
  left in float run in bf16 where the CPU has it, else f32.
- ``auto``: bf16 where the CPU has it, else int8 (when the calibration spans enough
  videos) or f32: see ``resolve_precision``.

A prebuilt IR travels with a model: ``export_ir`` writes ``model.xml``, ``model.bin``
and ``video_index_ir.json`` to a folder (local or bucket, e.g. beside the SavedModel
that ``--model-path`` names) and ``ensure_ir`` takes it from ``<SavedModel>/openvino/``
when its key matches, before converting anything itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from beam_pipeline.models.backend import locate_saved_model
from beam_pipeline.models.i3d import default_cache_dir, exclusive_lock
from beam_pipeline.models.spec import CLIP, ModelSpec

__all__ = [
    "MIN_INT8_CALIBRATION_VIDEOS",
    "PRECISIONS",
    "CalibrationSet",
    "auto_int8_holds",
    "IrInfo",
    "calibration_set",
    "cpu_capabilities",
    "ensure_ir",
    "export_ir",
    "ir_outputs",
    "resolve_precision",
    "savedmodel_sha256",
]

_LOGGER = logging.getLogger(__name__)

PRECISIONS = ("auto", "f32", "bf16", "int8")
IR_INFO_FILE = "video_index_ir.json"
IR_SUBDIR = "openvino"  # where a SavedModel folder may carry its prebuilt IRs
# Calibration: clips taken round-robin over the first videos of the input, so that
# every video lends its first clip before any lends a second. 32 clips: the int8
# gates held with 16 on ../shared/media and did not with 8 (bench/bench_backends.py).
DEFAULT_CALIBRATION_CLIPS = 32
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


# -- hashes --------------------------------------------------------------------------


def _sha256_files(fs: Any, paths: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with fs.open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def savedmodel_sha256(path: str) -> str:
    """sha256 over a SavedModel folder's ``saved_model.pb`` and ``variables/`` files.

    ``path`` is any fsspec URL. Raises FileNotFoundError when it holds no SavedModel.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(path)
    root = root.rstrip("/")
    graph = f"{root}/saved_model.pb"
    if not fs.exists(graph):
        raise FileNotFoundError(graph)
    variables = sorted(p for p in fs.find(f"{root}/variables") if not fs.isdir(p))
    return _sha256_files(fs, [graph] + variables)


# -- calibration ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CalibrationSet:
    """Clips that NNCF calibrates the int8 ranges on.

    ``clips``: ``uint8 [N, T, S, S, 3]`` RGB, as decode gives them to the model.
    ``sources``: per clip ``(uri, clip_index, sha256 of the clip's bytes)``; the run
    record lists them. ``sha256``: over the clip hashes in order; part of the int8 IR's key.
    """

    clips: np.ndarray
    sources: tuple[tuple[str, int, str], ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256("".join(s[2] for s in self.sources).encode()).hexdigest()

    def summary(self) -> dict:
        return {
            "clips": len(self.sources),
            "sha256": self.sha256,
            "sources": [
                {"uri": uri, "clip_index": index, "sha256": sha} for uri, index, sha in self.sources
            ],
        }


def calibration_set(
    spec: ModelSpec,
    uris: Iterable[str],
    count: int = DEFAULT_CALIBRATION_CLIPS,
    max_videos: int = 64,
    limits: Any = None,
) -> CalibrationSet:
    """``count`` clips from the videos ``uris`` names, in order, round-robin over videos.

    Clips are sampled as the job samples them (the spec's clip length and fps, one clip
    length apart) and preprocessed by the product's decode, so the calibration sees what
    inference sees. Up to ``max_videos`` videos are opened; a video that fails to decode
    is skipped. Deterministic for the same input. Raises BackendError if no clip decodes.
    """
    from transforms.reading import read_clips
    from transforms.video_io import DecodeLimits

    per_video: list[tuple[str, list[np.ndarray]]] = []
    sampling = spec.clip_sampling(max_clips=count)
    for uri in uris:
        if len(per_video) >= max_videos:
            break
        try:
            with read_clips(uri, sampling, spec.frame_spec(), limits or DecodeLimits()) as reader:
                frames = [clip.frames for clip in reader]
        except Exception as error:  # noqa: BLE001 - a bad video just lends no clips
            _LOGGER.info("calibration: skipping %s (%s)", uri, error)
            continue
        if frames:
            per_video.append((uri, frames))
        if sum(len(f) for _, f in per_video) >= count * 4:
            break  # enough to pick from without opening every video
    chosen: list[tuple[str, int, np.ndarray]] = []
    depth = 0
    while len(chosen) < count and any(depth < len(f) for _, f in per_video):
        for uri, frames in per_video:
            if depth < len(frames) and len(chosen) < count:
                chosen.append((uri, depth, frames[depth]))
        depth += 1
    if not chosen:
        raise BackendError("int8 calibration: no clip could be decoded from the input")
    sources = tuple(
        (uri, index, hashlib.sha256(np.ascontiguousarray(clip).tobytes()).hexdigest())
        for uri, index, clip in chosen
    )
    return CalibrationSet(np.stack([clip for _, _, clip in chosen]), sources)


def input_calibration(
    spec: ModelSpec,
    refs: Sequence[Any],
    count: int,
    limits: Any = None,
    cache_dir: Optional[Path] = None,
    refresh: bool = False,
) -> tuple[Optional[CalibrationSet], dict]:
    """The calibration set of a job's input, or only its summary when seen before.

    ``refs``: the input's VideoRefs in listing order. The summary (clip hashes) of a
    set is kept under ``<cache>/openvino/calibration/``, keyed by the model, ``count``
    and the listed videos' (uri, size, version), so a re-run over an unchanged input
    finds its int8 IR without decoding the calibration clips again (``refresh``: decode
    anyway, e.g. when that IR was deleted). Returns ``(set or None, summary)``.
    """
    listing = [(r.uri, r.size, r.version) for r in refs]
    text = json.dumps([spec.name, spec.frames_per_clip, spec.size, count, listing])
    key = hashlib.sha256(text.encode()).hexdigest()[:32]
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    remembered = cache_dir / IR_SUBDIR / "calibration" / f"{key}.json"
    if not refresh:
        try:
            return None, json.loads(remembered.read_text())
        except (OSError, ValueError):
            pass
    calibration = calibration_set(spec, (uri for uri, _, _ in listing), count, limits=limits)
    summary = calibration.summary()
    with tempfile.NamedTemporaryFile(
        "w", dir=_mkdir(remembered.parent), suffix=".tmp", delete=False
    ) as f:
        json.dump(summary, f)
    os.replace(f.name, remembered)
    return calibration, summary


# -- the IR cache --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class IrInfo:
    """A converted model on disk: ``path`` is ``model.xml`` (``model.bin`` beside it)."""

    path: Path
    key: dict

    @property
    def sha256(self) -> str:
        """sha256 of the IR's ``model.xml`` and ``model.bin``: what the run record names."""
        return self.key["ir_sha256"]


def _key(
    spec: ModelSpec,
    model_sha256: str,
    batch: int,
    weights: str,
    calibration: Optional[str],
    quantize_options: Optional[dict] = None,
):
    import openvino as ov

    shape = [batch, spec.frames_per_clip, spec.size, spec.size, 3]
    return {
        "model_sha256": model_sha256,
        "kind": spec.kind,
        "input_shape": shape,
        "value_range": list(spec.value_range),
        "outputs": ir_outputs(spec),
        "weights": weights,  # f32 or int8
        "calibration_sha256": calibration,
        # int8: the quantization settings (every field, defaults filled in)
        "quantize": quantize_settings(quantize_options) if weights == "int8" else None,
        "openvino": ov.get_version(),
    }


def _key_name(key: dict) -> str:
    text = json.dumps(key, sort_keys=True)
    return f"{key['weights']}-b{key['input_shape'][0]}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _read_info(folder: Path | str, fs: Any = None) -> Optional[dict]:
    import fsspec

    if fs is None:
        fs, folder = fsspec.core.url_to_fs(str(folder))
    try:
        with fs.open(f"{str(folder).rstrip('/')}/{IR_INFO_FILE}", "rt") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _matches(info: Optional[dict], key: dict) -> bool:
    return info is not None and {k: info.get(k) for k in key} == key


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
    """The cached IR for ``spec`` at batch ``batch`` and ``precision``, built on first use.

    ``precision`` is resolved (``f32``, ``bf16`` or ``int8``); f32 and bf16 share the
    float IR. int8 builds from ``calibration``; without it (a worker), it takes the
    cached int8 IR calibrated on ``calibration_sha256`` (None: the only one cached for
    this model and shape). ``announce`` is called once, before a build starts (not
    when the IR is cached). Safe to call from several processes.
    Raises BackendError when the model cannot be converted or int8 has no calibration.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    source = locate_saved_model(spec.source)
    model_sha = savedmodel_sha256(source)
    if spec.kind != CLIP:
        raise BackendError(f"OpenVINO serves clip models; {spec.name} is a {spec.kind} model")
    weights = "int8" if precision == "int8" else "f32"
    base = cache_dir / IR_SUBDIR / f"{_safe(spec.name)}-{model_sha[:16]}"
    if weights == "int8" and calibration is None:
        found = _find_int8(base, spec, model_sha, batch, calibration_sha256)
        if found is not None:
            return found
        raise BackendError(
            f"no int8 IR of {spec.name} at batch {batch} is cached: run with --precision "
            "int8 on the launcher first (it calibrates on the input), or pass --precision bf16"
        )
    key = _key(
        spec,
        model_sha,
        batch,
        weights,
        calibration.sha256 if calibration else None,
        quantize_options,
    )
    carried = _carried_ir(source, key, cache_dir)
    if carried is not None:
        return carried
    folder = base / _key_name(key)
    info = _read_info(folder)
    if _matches(info, key) and (folder / "model.bin").is_file():
        return IrInfo(folder / "model.xml", info)
    with exclusive_lock(base / f".{folder.name}.lock"):
        info = _read_info(folder)
        if _matches(info, key) and (folder / "model.bin").is_file():
            return IrInfo(folder / "model.xml", info)
        if announce is not None:
            announce()
        started = time.monotonic()
        if weights == "f32":
            model, extra = _convert(spec, source, batch), {}
        else:
            float_ir = ensure_ir(spec, batch, "f32", cache_dir=cache_dir)
            model, extra = _quantize(float_ir.path, calibration, spec, key["quantize"])
        extra["build_s"] = round(time.monotonic() - started, 1)
        _save(model, folder, key, extra)
        _LOGGER.info("built %s IR of %s in %.1f s", weights, spec.name, extra["build_s"])
    return IrInfo(folder / "model.xml", _read_info(folder))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:64]


def _find_int8(
    base: Path, spec: ModelSpec, model_sha: str, batch: int, calibration_sha256: Optional[str]
) -> Optional[IrInfo]:
    key = _key(spec, model_sha, batch, "int8", calibration_sha256)
    found = []
    for folder in sorted(base.glob(f"int8-b{batch}-*")):
        info = _read_info(folder)
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


def _carried_ir(source: str, key: dict, cache_dir: Path) -> Optional[IrInfo]:
    """A matching IR that travels in ``<SavedModel>/openvino/<name>/``, copied to the cache."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(source)
    folder = f"{root.rstrip('/')}/{IR_SUBDIR}/{_key_name(key)}"
    info = _read_info(folder, fs)
    if not _matches(info, key):
        return None
    if "://" not in source:
        return IrInfo(Path(folder) / "model.xml", info)
    local = cache_dir / IR_SUBDIR / "carried" / _key_name(key)
    if not _matches(_read_info(local), key):
        with tempfile.TemporaryDirectory(dir=_mkdir(local.parent)) as tmp:
            for name in ("model.xml", "model.bin", IR_INFO_FILE):
                fs.get(f"{folder}/{name}", f"{tmp}/{name}")
            _replace_dir(Path(tmp), local)
    return IrInfo(local / "model.xml", _read_info(local))


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _replace_dir(tmp: Path, folder: Path) -> None:
    # Readers only ever see a whole folder: an old one is renamed away before the new
    # one is renamed in (a rename cannot replace a non-empty folder).
    if folder.exists():
        stale = folder.with_name(folder.name + f".stale-{os.getpid()}")
        os.replace(folder, stale)
        shutil.rmtree(stale, ignore_errors=True)
    os.replace(tmp, folder)
    tmp.mkdir()  # TemporaryDirectory's cleanup expects it


def _save(model: Any, folder: Path, key: dict, extra: dict) -> None:
    import openvino as ov

    with tempfile.TemporaryDirectory(dir=_mkdir(folder.parent), prefix=".build-") as tmp:
        # compress_to_fp16=False: the f32 weights stay f32; bf16 is chosen at compile time.
        ov.save_model(model, f"{tmp}/model.xml", compress_to_fp16=False)
        ir_sha = _sha256_files(_local_fs(), [f"{tmp}/model.xml", f"{tmp}/model.bin"])
        info = {**key, "ir_sha256": ir_sha, **extra}
        Path(tmp, IR_INFO_FILE).write_text(json.dumps(info, indent=1))
        _replace_dir(Path(tmp), folder)


def _local_fs() -> Any:
    import fsspec

    return fsspec.filesystem("file")


def export_ir(ir: IrInfo, destination: str) -> str:
    """Copy ``ir`` to ``<destination>/openvino/<key>/`` (any fsspec URL), where
    ``ensure_ir`` finds it when ``destination`` is the model's SavedModel folder."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(destination)
    folder = f"{root.rstrip('/')}/{IR_SUBDIR}/{_key_name({k: ir.key[k] for k in _KEY_FIELDS})}"
    fs.makedirs(folder, exist_ok=True)
    for name in ("model.xml", "model.bin", IR_INFO_FILE):
        fs.put(str(ir.path.parent / name), f"{folder}/{name}")
    return fs.unstrip_protocol(folder)


_KEY_FIELDS = (  # every field of ``_key``
    "model_sha256",
    "input_shape",
    "value_range",
    "outputs",
    "weights",
    "calibration_sha256",
    "openvino",
    "kind",
    "quantize",
)


# -- conversion and quantization -----------------------------------------------------


def conversion_reason(error: BaseException) -> str:
    """One line from an ``ov.convert_model`` error: its summary lines (``-- No conversion
    rule found for operations: Svd``), else its last non-empty line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    summary = [line.lstrip("- ").strip() for line in lines if line.startswith("--")]
    return "; ".join(summary) or (lines[-1] if lines else type(error).__name__)


def ir_outputs(spec: ModelSpec) -> list[str]:
    """The clip IR's outputs, in order: ``logits`` and, where the spec names an
    ``embedding_key``, ``embedding`` (one pass gives both; part of the IR's key)."""
    return ["logits", "embedding"] if spec.embedding_key else ["logits"]


def _convert(spec: ModelSpec, source: str, batch: int) -> Any:
    """The SavedModel as an ov.Model at one static shape (see the module doc), its
    outputs named and ordered as ``ir_outputs(spec)``."""
    import openvino as ov
    import tensorflow as tf

    from beam_pipeline.models.backend import (
        clip_convention,
        configure_tensorflow,
        embedding_convention,
    )

    configure_tensorflow()
    loaded = tf.saved_model.load(source)
    names = ir_outputs(spec)
    call = (embedding_convention if spec.embedding_key else clip_convention)(spec, loaded)
    shape = [batch, spec.frames_per_clip, spec.size, spec.size, 3]
    function = tf.function(lambda x: call(x)).get_concrete_function(
        tf.TensorSpec(shape, tf.float32)
    )
    try:
        model = ov.convert_model(function)
    except Exception as error:  # noqa: BLE001 - any converter error is the model's
        raise BackendError(
            f"OpenVINO cannot convert {spec.name}: {conversion_reason(error)}"
        ) from error
    widths = [spec.num_classes, spec.embedding_dim][: len(names)]
    got = [list(output.get_partial_shape().to_shape()) for output in model.outputs]
    if got != [[batch, width] for width in widths]:
        raise BackendError(
            f"OpenVINO converted {spec.name} to outputs of shapes {got}, expected "
            f"{[[batch, width] for width in widths]} ({', '.join(names)})"
        )
    for output, name in zip(model.outputs, names):
        output.get_tensor().set_names({name})
    return model


def to_model_range(clips: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """uint8 [B, T, S, S, 3] -> float32 in ``spec.value_range`` (the IR's input)."""
    low, high = spec.value_range
    return clips.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low)


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


def _quantize(
    float_ir: Path, calibration: CalibrationSet, spec: ModelSpec, settings: dict
) -> tuple[Any, dict]:
    """The float IR quantized by NNCF on the calibration clips, at the IR's batch.

    ``settings``: see ``QUANTIZE_DEFAULTS``. Returns ``(ov.Model, record)``.
    """
    import nncf

    # NNCF logs and draws progress bars on stdout, where the job's summary goes: its
    # INFO lines are dropped and its bars go to stderr.
    nncf.set_log_level(logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr):
        return _quantize_quietly(float_ir, calibration, spec, quantize_settings(settings))


def _quantize_quietly(
    float_ir: Path, calibration: CalibrationSet, spec: ModelSpec, settings: dict
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
