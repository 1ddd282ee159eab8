"""IRs on disk: where they live, what they are keyed by, and how one is written once.

Beam-free. An IR is a folder (``model.xml``, ``model.bin`` and ``video_index_ir.json``,
its key and record) under ``<cache>/openvino/<model>-<sha>/`` (``cache`` as for the I3D
SavedModel: ``$VIDEO_INDEX_CACHE``, else ``~/.cache/video-index``). Its key (a dict:
the SavedModel's sha256, input shape, OpenVINO version, weights' precision, ... as
``ir`` builds it) names the folder, so another key is another folder. ``cached_build``
builds a missing IR under a file lock into a temporary folder renamed into place:
concurrent workers convert once and never read half an IR.

A prebuilt IR travels with its model: ``export_ir`` writes one to
``<SavedModel>/openvino/<key>/`` (local or bucket), where ``carried_ir`` finds it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

from beam_pipeline.models.i3d import default_cache_dir, exclusive_lock

__all__ = [
    "IR_INFO_FILE",
    "IR_SUBDIR",
    "IrInfo",
    "cache_root",
    "cached_build",
    "carried_ir",
    "export_ir",
    "key_name",
    "model_folder",
    "savedmodel_sha256",
    "write_json_atomically",
]

_LOGGER = logging.getLogger(__name__)

IR_INFO_FILE = "video_index_ir.json"
IR_SUBDIR = "openvino"  # under the cache, and where a SavedModel folder carries its IRs


@dataclasses.dataclass(frozen=True)
class IrInfo:
    """A converted model on disk: ``path`` is ``model.xml`` (``model.bin`` beside it);
    ``key`` is its ``video_index_ir.json`` (the key, ``ir_sha256`` and the build record)."""

    path: Path
    key: dict

    @property
    def sha256(self) -> str:
        """sha256 of the IR's ``model.xml`` and ``model.bin``: what the run record names."""
        return self.key["ir_sha256"]


def cache_root(cache_dir: Optional[Path] = None) -> Path:
    """``<cache>/openvino``: where IRs (and remembered calibration summaries) live."""
    return (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / IR_SUBDIR


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


def model_folder(cache_dir: Optional[Path], name: str, model_sha256: str) -> Path:
    """The folder that holds every IR of one SavedModel (named ``name``)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:64]
    return cache_root(cache_dir) / f"{safe}-{model_sha256[:16]}"


def key_name(key: dict) -> str:
    """An IR folder's name: ``<weights>-b<batch>-<16 hex of the key's sha256>``."""
    text = json.dumps(key, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{key['weights']}-b{key['input_shape'][0]}-{digest}"


def read_info(folder: Path | str, fs: Any = None) -> Optional[dict]:
    """The ``video_index_ir.json`` of an IR folder (any fsspec URL), or None."""
    import fsspec

    if fs is None:
        fs, folder = fsspec.core.url_to_fs(str(folder))
    try:
        with fs.open(f"{str(folder).rstrip('/')}/{IR_INFO_FILE}", "rt") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def matches(info: Optional[dict], key: dict) -> bool:
    """Whether an IR's info holds every field of ``key`` with the same value."""
    return info is not None and {k: info.get(k) for k in key} == key


def _complete(folder: Path, key: dict) -> Optional[IrInfo]:
    info = read_info(folder)
    if matches(info, key) and (folder / "model.bin").is_file():
        return IrInfo(folder / "model.xml", info)
    return None


def cached_build(
    folder: Path,
    key: dict,
    build: Callable[[], tuple[Any, dict]],
    announce: Optional[Callable[[], None]] = None,
) -> IrInfo:
    """The IR in ``folder`` if its key is ``key``, else ``build()`` (an ``ov.Model`` and
    a record kept beside the key, e.g. the calibration) saved there, once, under a
    file lock. ``announce`` is called once, before a build starts."""
    found = _complete(folder, key)
    if found is not None:
        return found
    with exclusive_lock(folder.parent / f".{folder.name}.lock"):
        found = _complete(folder, key)
        if found is not None:
            return found
        if announce is not None:
            announce()
        started = time.monotonic()
        model, extra = build()
        extra["build_s"] = round(time.monotonic() - started, 1)
        _save(model, folder, key, extra)
        _LOGGER.info("built IR %s in %.1f s", folder.name, extra["build_s"])
    return _complete(folder, key)


def ensure_folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json_atomically(path: Path, value: Any) -> None:
    """``value`` as JSON at ``path`` (folders made), renamed into place."""
    with tempfile.NamedTemporaryFile(
        "w", dir=ensure_folder(path.parent), suffix=".tmp", delete=False
    ) as f:
        json.dump(value, f)
    os.replace(f.name, path)


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
    import fsspec
    import openvino as ov

    with tempfile.TemporaryDirectory(dir=ensure_folder(folder.parent), prefix=".build-") as tmp:
        # compress_to_fp16=False: the f32 weights stay f32; bf16 is chosen at compile time.
        ov.save_model(model, f"{tmp}/model.xml", compress_to_fp16=False)
        local = fsspec.filesystem("file")
        ir_sha = _sha256_files(local, [f"{tmp}/model.xml", f"{tmp}/model.bin"])
        info = {**key, "ir_sha256": ir_sha, **extra}
        Path(tmp, IR_INFO_FILE).write_text(json.dumps(info, indent=1))
        _replace_dir(Path(tmp), folder)


def carried_ir(source: str, key: dict, cache_dir: Optional[Path]) -> Optional[IrInfo]:
    """A matching IR that travels in ``<SavedModel>/openvino/<name>/`` (local: used
    where it is; bucket: copied to the cache once), or None."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(source)
    folder = f"{root.rstrip('/')}/{IR_SUBDIR}/{key_name(key)}"
    info = read_info(folder, fs)
    if not matches(info, key):
        return None
    if "://" not in source:
        return IrInfo(Path(folder) / "model.xml", info)
    local = cache_root(cache_dir) / "carried" / key_name(key)
    if not matches(read_info(local), key):
        with tempfile.TemporaryDirectory(dir=ensure_folder(local.parent)) as tmp:
            for name in ("model.xml", "model.bin", IR_INFO_FILE):
                fs.get(f"{folder}/{name}", f"{tmp}/{name}")
            _replace_dir(Path(tmp), local)
    return IrInfo(local / "model.xml", read_info(local))


KEY_FIELDS = (  # every field of a clip IR's key (``ir.clip_key``)
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


def export_ir(ir: IrInfo, destination: str) -> str:
    """Copy ``ir`` to ``<destination>/openvino/<key>/`` (any fsspec URL), where
    ``carried_ir`` finds it when ``destination`` is the model's SavedModel folder."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(destination)
    folder = f"{root.rstrip('/')}/{IR_SUBDIR}/{key_name({k: ir.key[k] for k in KEY_FIELDS})}"
    fs.makedirs(folder, exist_ok=True)
    for name in ("model.xml", "model.bin", IR_INFO_FILE):
        fs.put(str(ir.path.parent / name), f"{folder}/{name}")
    return fs.unstrip_protocol(folder)
