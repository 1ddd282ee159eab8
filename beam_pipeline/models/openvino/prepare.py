"""The launcher's part of an OpenVINO job: convert, calibrate and choose, once.

Beam-free. ``prepare_openvino`` runs before the pipeline, so workers find the IR in
the cache instead of each converting it: the float IR (clip or stream), and for int8
the calibration on the job's own input (``calibration``: through the isolated decoder,
under the job's limits) and the quantized IR. ``--precision auto`` keeps int8 only
when the calibration spans ``MIN_INT8_CALIBRATION_VIDEOS`` videos, else f32; an int8
IR that a remembered calibration names but the cache lost is built again. Every step
and choice is told through ``note`` as one line, when it happens.
"""

from __future__ import annotations

from typing import Any, Callable

from beam_pipeline.models.openvino.calibration import input_calibration
from beam_pipeline.models.openvino.ir import ensure_ir, ensure_stream_ir
from beam_pipeline.models.openvino.policy import (
    MIN_INT8_CALIBRATION_VIDEOS,
    BackendError,
    auto_int8_holds,
)
from beam_pipeline.models.spec import STREAM, ModelSpec

__all__ = ["prepare_openvino"]

_NAMED_LEFT_OUT = 5  # files named in the calibration's left-out line; the rest counted


def prepare_openvino(spec: ModelSpec, config: Any, note: Callable[[str], None]) -> tuple[str, dict]:
    """``(precision that runs, the IR's info)`` for ``spec`` on OpenVINO.

    ``config`` gives ``batch_size``, ``precision`` (resolved: ``f32``, ``bf16`` or
    ``int8``), ``auto_precision``, and for int8 ``inputs``, ``extensions``,
    ``calibration_clips`` and ``limits`` (an ``IndexConfig``). Raises BackendError
    (one line) when the model cannot be converted or no clip of the input decodes.
    """
    batch = config.batch_size

    def announce() -> None:
        note(
            f"converting {spec.name} to OpenVINO IR at batch {batch} (first run only; cached after)"
        )

    if spec.kind == STREAM:
        return config.precision, ensure_stream_ir(spec, batch, announce=announce).key
    precision, calibration, calibration_sha256, refs = config.precision, None, None, []
    if precision == "int8":
        from transforms.manifest import list_input
        from transforms.records import VideoRef

        refs = [
            r
            for input_uri in config.inputs
            for r in list_input(input_uri, config.extensions)
            if isinstance(r, VideoRef)
        ]
        calibration, summary = input_calibration(
            spec, refs, config.calibration_clips, config.limits
        )
        calibration_sha256 = summary["sha256"]
        holds, videos = auto_int8_holds(summary)
        if calibration is not None:  # decoded now, not remembered from an earlier run
            _tell_calibration(note, summary, videos, refs)
        if config.auto_precision and not holds:
            note(
                f"--precision auto: f32, not int8: the calibration clips come from {videos} "
                "video(s), and int8 keeps its labels on videos it never saw when calibrated "
                f"on {MIN_INT8_CALIBRATION_VIDEOS} or more"
            )
            precision, calibration, calibration_sha256 = "f32", None, None
    try:
        ir = ensure_ir(
            spec, batch, precision, calibration, calibration_sha256=calibration_sha256,
            announce=announce,
        )  # fmt: skip
    except BackendError:
        if calibration is not None or not calibration_sha256:
            raise
        # The calibration was remembered but its int8 IR is gone from the cache: again.
        calibration, summary = input_calibration(
            spec, refs, config.calibration_clips, config.limits, refresh=True
        )
        _tell_calibration(note, summary, auto_int8_holds(summary)[1], refs)
        ir = ensure_ir(spec, batch, "int8", calibration)
    return precision, ir.key


def _tell_calibration(note: Callable[[str], None], summary: dict, videos: int, refs) -> None:
    note(
        f"int8: calibrating on {summary['clips']} clips of {videos} video(s) of the input "
        "(once per input: about a minute)"
    )
    left_out = summary.get("left_out") or []
    if left_out:
        ids = {ref.uri: ref.video_id for ref in refs}
        named = [f"{ids.get(f['uri'], f['uri'])} ({f['error']})" for f in left_out]
        more = len(named) - _NAMED_LEFT_OUT
        note(
            f"int8 calibration left out {len(named)} file(s) that did not decode: "
            + ", ".join(named[:_NAMED_LEFT_OUT])
            + (f" and {more} more" if more > 0 else "")
        )
