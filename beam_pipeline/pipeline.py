"""build_pipeline: the chain of stages, and nothing else."""

from __future__ import annotations

import apache_beam as beam

from beam_pipeline.models.handler import build_handler, build_video_handler
from beam_pipeline.models.spec import CLIP
from beam_pipeline.options import IndexConfig
from transforms.decode import DecodeClips
from transforms.inference import ClassifyClips
from transforms.manifest import ReadManifest
from transforms.postprocess import Summarise
from transforms.sink import WriteIndex
from transforms.stream import ClassifyStream


def build_pipeline(p: beam.Pipeline, config: IndexConfig) -> None:
    """manifest → classify (the strategy the model's kind needs) → Parquet, into ``config.output``."""
    spec = config.model
    listed = p | "ReadManifest" >> ReadManifest(
        config.input, config.extensions, config.progress_path
    )
    if spec.kind == CLIP:
        rows = _classify_clips(listed["refs"], config)
    else:
        # Stream and frame-sequence models take a whole video per model element.
        handler = build_video_handler(spec, config.limits, config.top_k, config.batch_size)
        rows = listed["refs"] | "ClassifyStream" >> ClassifyStream(
            handler, spec.name, config.run_id, config.progress_path
        )
    manifest_failures = listed["failures"] | "ManifestFailureRows" >> beam.Map(
        _manifest_failure_row, spec.name, config.run_id
    )
    failures = (rows["failures"], manifest_failures) | "AllFailures" >> beam.Flatten()
    {"videos": rows["videos"], "clips": rows["clips"], "failures": failures} | "WriteIndex" >> (
        WriteIndex(config.output, config.run_id)
    )


def _classify_clips(refs: beam.PCollection, config: IndexConfig) -> dict:
    """decode → classify → summarise, for a clip classifier: the index's row dicts."""
    spec = config.model
    progress = config.progress_path
    decoded = refs | "DecodeClips" >> DecodeClips(
        config.sampling, spec.frame_spec(), config.limits, progress
    )
    classified = decoded["clips"] | "ClassifyClips" >> ClassifyClips(
        build_handler(spec, config.batch_size), progress
    )
    outcomes = (
        decoded["done"],
        classified["predictions"],
        classified["failures"],
    ) | "Outcomes" >> beam.Flatten()
    return outcomes | "Summarise" >> Summarise(
        spec.labels, config.top_k, spec.name, config.run_id, progress
    )


def _manifest_failure_row(failure, model: str, run_id: str) -> dict:
    from transforms.postprocess import failure_row

    return failure_row(failure, None, None, model, run_id)
