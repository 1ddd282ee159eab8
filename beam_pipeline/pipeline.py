"""build_pipeline: the chain of stages, and nothing else."""

from __future__ import annotations

import apache_beam as beam

from beam_pipeline.models.handler import build_handler, build_video_handler
from beam_pipeline.models.spec import CLIP
from beam_pipeline.options import IndexConfig
from transforms.decode import DecodeClips
from transforms.inference import ClassifyClips
from transforms.manifest import ReadManifest
from transforms.postprocess import Summarise, failure_row
from transforms.sink import WriteIndex
from transforms.stream import ClassifyStream


def build_pipeline(p: beam.Pipeline, config: IndexConfig) -> None:
    """manifest → classify (as the model's kind needs) → Parquet, into ``config.output``."""
    spec = config.model
    listed = p | "ReadManifest" >> ReadManifest(
        config.input,
        config.extensions,
        config.progress_path,
        skip_indexed_in=None if config.reindex else config.output,
        model=spec.name,
    )
    if spec.kind == CLIP:
        rows = _classify_clips(listed["refs"], config)
    else:
        # Stream and frame-sequence models take a whole video per model element.
        handler = build_video_handler(spec, config.limits, config.top_k, config.batch_size)
        rows = listed["refs"] | "ClassifyStream" >> ClassifyStream(
            handler, spec.name, config.run_id, config.progress_path
        )
    rows["ManifestFailures"] = listed["failures"] | "ManifestFailureRows" >> beam.Map(
        _manifest_failure_row, spec.name, config.run_id
    )
    rows | "WriteIndex" >> WriteIndex(config.output, config.run_id, flush_s=config.commit_every_s)


def _classify_clips(refs: beam.PCollection, config: IndexConfig) -> dict:
    """decode → classify → summarise, for a clip classifier: named (table, row) collections."""
    spec = config.model
    progress = config.progress_path
    decoded = refs | "DecodeClips" >> DecodeClips(
        config.sampling, spec.frame_spec(), config.limits, progress
    )
    outcomes = decoded["clips"] | "ClassifyClips" >> ClassifyClips(
        build_handler(spec, config.batch_size), progress
    )
    return {"Clips": outcomes, "DecodeFailures": decoded["failed"]} | "Summarise" >> Summarise(
        spec.labels, config.top_k, spec.name, config.run_id, progress
    )


def _manifest_failure_row(failure, model: str, run_id: str) -> tuple[str, dict]:
    return "failures", failure_row(failure, None, None, model, run_id)
