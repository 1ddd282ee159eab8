"""A model's SavedModel in TensorFlow: found, loaded, and called by its conventions.

Beam-free; TensorFlow is imported only inside the functions. What every backend needs
of a spec's ``source`` before it runs anything (the TensorFlow backend calls the
SavedModel; the OpenVINO package converts the same calls):

- :func:`locate_saved_model` / :func:`resolve_source` / :func:`load_saved_model`: a
  ``source`` (``builtin:`` model, TF Hub handle, local or bucket SavedModel) found,
  built or loaded;
- :func:`configure_tensorflow`: TF thread pools and GPU memory growth, once a process;
- :func:`clip_convention` / :func:`embedding_convention` / :func:`stream_convention`:
  one function from a float tensor to the outputs, whatever shape the export has;
  :func:`sole_output` / :func:`find_signature`: which output, which signature.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable, Iterable, Optional

from beam_pipeline.models.spec import ModelSpec

__all__ = [
    "BUILTIN",
    "builtin_is_built",
    "clip_convention",
    "configure_tensorflow",
    "embedding_convention",
    "find_signature",
    "is_builtin",
    "load_saved_model",
    "locate_saved_model",
    "resolve_source",
    "sole_output",
    "stream_convention",
]

_LOGGER = logging.getLogger(__name__)
_TF_CONFIGURED = threading.Lock()
_tf_configured = False

BUILTIN = "builtin:"  # a spec source built by this package on first use


def configure_tensorflow() -> None:
    """Thread pools sized to the machine and GPU memory growth, once per process.

    Memory growth matters on a GPU worker that runs several SDK threads: without it
    the first model to load takes the whole card. ``$VIDEO_INDEX_TF_THREADS`` caps the
    threads of one op (0, the default: every core).
    """
    global _tf_configured
    with _TF_CONFIGURED:
        if _tf_configured:
            return
        _tf_configured = True
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialised in this process
                pass
        threads = int(os.environ.get("VIDEO_INDEX_TF_THREADS", "0"))
        try:
            # 0 lets TF use every core for one op; decode threads share them.
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(2)
        except RuntimeError:
            pass  # TF already ran an op here (tests); keep its settings


def is_builtin(source: str) -> bool:
    """Whether a spec's ``source`` names a model this package builds (``builtin:NAME``)."""
    return source.startswith(BUILTIN)


def builtin_is_built(source: str) -> bool:
    """Whether the ``builtin:`` model ``source`` is already in the cache (True for any
    other source: nothing to build)."""
    if not is_builtin(source):
        return True
    from beam_pipeline.models import i3d

    return i3d.i3d_is_cached()


def resolve_source(source: str) -> str:
    """The loadable path or handle for a spec's ``source``.

    ``builtin:i3d-kinetics-400`` is built into the cache on first use (see
    ``models.i3d``); raises ValueError for any other ``builtin:`` name.
    """
    if not is_builtin(source):
        return source
    from beam_pipeline.models import i3d, i3d_weights

    name = source[len(BUILTIN) :]
    if name != i3d_weights.MODEL_NAME:
        raise ValueError(f"unknown builtin model {name!r}")
    return str(i3d.ensure_i3d_savedmodel())


def locate_saved_model(source: str) -> str:
    """A spec's ``source`` as a SavedModel folder: a local or bucket path as it is, a
    ``builtin:`` model built (``resolve_source``), a TF Hub handle downloaded to hub's
    cache. Raises OSError (or hub's error) when there is no such model."""
    path = resolve_source(source)
    if "://" not in path and not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    if path.startswith(("https://", "http://")):
        import tensorflow_hub as hub

        return hub.resolve(path)
    return path


def load_saved_model(source: str) -> Any:
    """A SavedModel or TF Hub handle, loaded as a TF object."""
    import tensorflow as tf

    path = resolve_source(source)
    if path.startswith(("https://", "http://")) or "://" not in path and not os.path.exists(path):
        import tensorflow_hub as hub

        _LOGGER.info("loading %s through tensorflow_hub", path)
        return hub.load(path)
    _LOGGER.info("loading SavedModel %s", path)
    return tf.saved_model.load(path)


def sole_output(spec: ModelSpec, outputs: Any) -> Any:
    """The answer among a call's outputs: ``outputs[spec.output_key]``, the only value
    of a one-entry dict, or ``outputs`` itself when it is not a dict.

    Raises ValueError for a dict of several outputs and no ``output_key``.
    """
    if not isinstance(outputs, dict):
        return outputs
    if spec.output_key:
        return outputs[spec.output_key]
    if len(outputs) != 1:
        raise ValueError(f"model {spec.name} has outputs {sorted(outputs)}: set output_key")
    return next(iter(outputs.values()))


def find_signature(loaded: Any, names: Iterable[Optional[str]]) -> Optional[Any]:
    """The first of ``names`` (None entries skipped) among ``loaded.signatures``, or None."""
    signatures = getattr(loaded, "signatures", {})
    for name in names:
        if name and name in signatures:
            return signatures[name]
    return None


def clip_convention(spec: ModelSpec, loaded: Any) -> Callable[[Any], Any]:
    """One function from a float tensor to the output, whatever shape the export has.

    TF Hub's I3D is a TF1-format module (signature 'default', output 'default');
    MoViNet base takes a dict ``{'image': x}``; a Keras export is a plain callable.
    """
    signature: Optional[Any] = None
    if spec.signature:
        signature = loaded.signatures[spec.signature]
    elif not callable(loaded):
        signature = find_signature(loaded, ("serving_default", "default"))
        if signature is None:
            raise ValueError(f"model {spec.name} is neither callable nor has a signature")
    if signature is not None:
        input_key = spec.input_key
        if input_key is None:
            _, kwargs = signature.structured_input_signature
            if len(kwargs) != 1:
                raise ValueError(
                    f"model {spec.name} signature takes {sorted(kwargs)}: set input_key"
                )
            input_key = next(iter(kwargs))
        return lambda x: sole_output(spec, signature(**{input_key: x}))
    if spec.input_key:
        return lambda x: sole_output(spec, loaded({spec.input_key: x}))
    return lambda x: sole_output(spec, loaded(x))


def embedding_convention(spec: ModelSpec, loaded: Any) -> Callable[[Any], tuple[Any, Any]]:
    """One function from a float tensor to (logits, embeddings), from one signature call.

    The signature is ``embedding_signature`` (else the spec's ``signature``, else
    ``serving_default``); the embeddings are its ``embedding_key`` output, the logits
    its ``output_key`` output or, without one, its other output.
    """
    if not spec.embedding_key:
        raise ValueError(f"model {spec.name} names no embedding output (embedding_key)")
    name = spec.embedding_signature or spec.signature or "serving_default"
    signature = find_signature(loaded, (name,))
    if signature is None:
        raise ValueError(f"model {spec.name} has no signature {name!r} for its embedding")
    input_key = spec.input_key
    if input_key is None:
        _, kwargs = signature.structured_input_signature
        if len(kwargs) != 1:
            raise ValueError(f"model {spec.name} signature takes {sorted(kwargs)}: set input_key")
        input_key = next(iter(kwargs))
    outputs = list(signature.structured_outputs)
    logits_key = spec.output_key
    if logits_key is None:
        others = [key for key in outputs if key != spec.embedding_key]
        if len(others) != 1:
            raise ValueError(f"model {spec.name} has outputs {sorted(outputs)}: set output_key")
        logits_key = others[0]
    for key in (logits_key, spec.embedding_key):
        if key not in outputs:
            raise ValueError(f"model {spec.name} signature {name!r} has no output {key!r}")

    def call(x: Any) -> tuple[Any, Any]:
        result = signature(**{input_key: x})
        return result[logits_key], result[spec.embedding_key]

    return call


def stream_convention(spec: ModelSpec, loaded: Any):
    """(init_states(batch) -> states, call(image [B, 1, H, W, 3], states) -> (logits, states)).

    Prefers the restored Keras object (``model.init_states``, ``model({**states,
    'image': x})``, as in the MoViNet tutorial) over the XLA-compiled ``call``
    signature: on this 2-core CPU it is as fast at B=1 (36-43 vs 48-54 ms a step) and
    3x faster at B=8 (92-108 vs 300-325 ms), and the signature recompiles (~5 s) for
    every new batch size.
    """
    import tensorflow as tf

    image_key = spec.input_key or "image"
    logits_key = spec.output_key or "logits"
    size = spec.size

    def shape(batch: int):
        return tf.constant([batch, 1, size, size, 3], tf.int32)

    def split(outputs: Any) -> tuple[Any, dict]:
        if isinstance(outputs, (tuple, list)) and len(outputs) == 2:
            logits, states = outputs
            return logits, dict(states)
        if isinstance(outputs, dict) and logits_key in outputs:
            states = dict(outputs)
            return states.pop(logits_key), states
        raise ValueError(
            f"model {spec.name}: a stream step must give (logits, states) or a dict "
            f"with {logits_key!r}"
        )

    if callable(loaded) and hasattr(loaded, "init_states"):
        # One graph per step instead of Keras' eager call machinery; reduce_retracing
        # makes the batch dim unknown after the second size, so a shrinking batch
        # does not retrace (~2.5 s) at every new size.
        @tf.function(reduce_retracing=True)
        def call(x, states):
            return loaded({**states, image_key: x})

        return (
            lambda batch: dict(loaded.init_states(shape(batch))),
            lambda x, states: split(call(x, states)),
        )
    signatures = getattr(loaded, "signatures", {})
    if "init_states" in signatures and "call" in signatures:
        init_fn, call_fn = signatures["init_states"], signatures["call"]
        return (
            lambda batch: dict(init_fn(input_shape=shape(batch))),
            lambda x, states: split(call_fn(**{**states, image_key: x})),
        )
    raise ValueError(
        f"model {spec.name} is not a stream model: it needs 'init_states' and a call "
        "that takes the states (signatures 'init_states' and 'call')"
    )
