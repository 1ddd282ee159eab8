"""Preparing a model for a job: one call, on the launcher, before the pipeline runs.

Beam-free. ``prepare(config)`` does what every worker would otherwise do at once, and
says what it did and why (``PreparedModel``), for the CLI to print and the run record
to keep:

- the built-in model (``builtin:``) is built into the cache on first use;
- where the workers are this machine, the model's SavedModel is found here, so a wrong
  path is one line rather than a traceback from every worker;
- on OpenVINO, the IR is converted (and for int8 calibrated on the job's input and
  quantized) once (``models.openvino.prepare``), and ``--precision auto`` settles;
- with ``--backend auto`` and ``--precision auto``, a model OpenVINO cannot take runs
  on TensorFlow instead, and the line says why.

Raises ``PrepareError`` (one line) when the model cannot be found, loaded or
converted as asked.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable, Optional

from beam_pipeline.models.savedmodel import (
    builtin_is_built,
    is_builtin,
    locate_saved_model,
    resolve_source,
)
from beam_pipeline.models.spec import ModelSpec

__all__ = ["PrepareError", "PreparedModel", "last_line", "prepare"]

MODEL_PATH_HINT = "--model-path must be the model's own SavedModel folder"


class PrepareError(Exception):
    """The model cannot be prepared as the flags ask; the message is one line."""


@dataclasses.dataclass(frozen=True)
class PreparedModel:
    """What runs, and what preparing it did.

    ``backend``: ``tensorflow`` | ``openvino`` (``--backend auto`` may fall back).
    ``precision``: ``f32`` | ``bf16`` | ``int8`` (``--precision auto`` settled).
    ``ir``: on OpenVINO, the IR's info (its key, ``ir_sha256``, build record and, for
    int8, the calibration summary); None on TensorFlow.
    ``steps``: one line per thing done or chosen (built, converted, calibrated, left out
    of calibration, fallen back), with why; empty when everything was cached.
    """

    backend: str
    precision: str
    ir: Optional[dict] = None
    steps: tuple[str, ...] = ()


def last_line(error: BaseException) -> str:
    """The last non-empty line of ``error``'s message (where a chained or wrapped error
    says what went wrong), else its type's name. Where the message embeds a traceback
    (a worker's, as Beam wraps it), the last ``Type: reason`` line: source lines and the
    ``^^^^``/``~~~~`` markers under them (Python 3.11+) are not reasons."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip().strip("^~ ")]
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        reasons = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*: \S", line)]
        lines = reasons or lines
    return lines[-1] if lines else type(error).__name__


def prepare(
    config: Any, local: bool = True, say: Callable[[str], None] = lambda line: None
) -> PreparedModel:
    """Prepare ``config.spec`` for the job ``config`` (an ``IndexConfig``: ``spec``,
    ``backend`` and ``precision`` as resolved from the flags, ``auto_backend``,
    ``auto_precision``, ``batch_size``, and for int8 the input and limits).

    ``local``: the workers are this machine (the model is looked for here first).
    ``say`` gets each step's line as it starts (a conversion takes minutes).
    """
    spec = config.spec
    steps: list[str] = []

    def note(line: str) -> None:
        steps.append(line)
        say(line)

    if is_builtin(spec.source):
        # Built once, here, rather than in every worker at once.
        if not builtin_is_built(spec.source):
            note(f"building model {spec.name} (first run only, ~1 min)")
        resolve_source(spec.source)
    if local:
        check_model_source(spec)
    if config.backend != "openvino":
        return PreparedModel(config.backend, config.precision, None, tuple(steps))
    from beam_pipeline.models.openvino.policy import BackendError
    from beam_pipeline.models.openvino.prepare import prepare_openvino

    try:
        precision, ir = prepare_openvino(spec, config, note)
    except Exception as error:  # noqa: BLE001 - any loader error: one line, not a trace
        reason = str(error) if isinstance(error, BackendError) else _cannot_load(spec, error)
        if not (config.auto_backend and config.auto_precision):
            raise PrepareError(reason) from None
        # Nothing asked for: a model OpenVINO cannot take still runs, on TensorFlow.
        note(f"--backend auto: tensorflow, not openvino: {reason}")
        return PreparedModel("tensorflow", "f32", None, tuple(steps))
    return PreparedModel("openvino", precision, ir, tuple(steps))


def check_model_source(spec: ModelSpec) -> None:
    """Find the model here, so a wrong path or an unreachable hub handle is one line
    (a hub model is downloaded to hub's cache, which this machine's workers then
    read). Raises PrepareError."""
    try:
        path = locate_saved_model(spec.source)
        if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise FileNotFoundError(f"{path} is a folder without a saved_model.pb")
    except Exception as error:  # noqa: BLE001 - any loader error: the model is not there
        raise PrepareError(
            f"cannot find model {spec.name} at {spec.source}: {last_line(error)} (--model-path "
            "DIR points a registered model at a local or bucket copy)"
        ) from None


def _cannot_load(spec: ModelSpec, error: BaseException) -> str:
    return (
        f"cannot load model {spec.name} from {spec.source} for OpenVINO: "
        f"{type(error).__name__}: {last_line(error)} ({MODEL_PATH_HINT})"
    )
