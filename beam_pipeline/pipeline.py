"""build_pipeline: the chain of stages, and nothing else."""

from __future__ import annotations

from typing import Optional

import apache_beam as beam

from beam_pipeline.models.backend import Backend, backend_for
from beam_pipeline.models.handler import build_handler, build_video_handler
from beam_pipeline.models.spec import CLIP
from beam_pipeline.options import IndexConfig
from transforms.context import RunContext
from transforms.decode import DecodeClips
from transforms.inference import ClassifyClips
from transforms.manifest import ReadManifest
from transforms.postprocess import Summarise
from transforms.rows import failure_row
from transforms.sink import WriteIndex
from transforms.thumbnails import add_thumbnail
from transforms.video_inference import ClassifyVideos
from video_index.schemas import clips_schema


def build_pipeline(
    p: beam.Pipeline, config: IndexConfig, progress_path: Optional[str] = None
) -> None:
    """manifest → classify (as the model's kind needs) → Parquet, into ``config.output``.

    ``progress_path``: where a local run's stages append progress events (the CLI's
    live line); None on remote runners.
    """
    spec = config.spec
    run = RunContext(config.run_id, spec.name, progress_path)
    listed = p | "ReadManifest" >> ReadManifest(
        config.inputs,
        run,
        config.extensions,
        skip_indexed_in=None if config.reindex else config.output,
        retry_failed=config.retry_failed,
    )
    if spec.kind == CLIP:
        rows = _classify_clips(listed["refs"], config, run)
    else:
        # Stream and frame-sequence models take a whole video per model element.
        handler = build_video_handler(
            spec, config.limits, config.top_k, config.batch_size, _backend(config)
        )
        rows = listed["refs"] | "ClassifyVideos" >> ClassifyVideos(handler, run)
    rows["ManifestFailures"] = listed["failures"] | "ManifestFailureRows" >> beam.Map(
        lambda failure: ("failures", failure_row(failure, run))
    )
    rows | "WriteIndex" >> WriteIndex(
        config.output,
        run.run_id,
        flush_s=config.commit_every_s,
        clips_schema=table_schemas(config)["clips"],
    )


def table_schemas(config: IndexConfig) -> dict:
    """``{"clips": schema}``: the clips table's columns this run writes (its optional
    embedding, thumbnail and shot columns, ``video_index.schemas.clips_schema``)."""
    embedding_dim = config.spec.embedding_dim if config.embeddings else None
    return {"clips": clips_schema(embedding_dim, config.thumbnails, config.shots)}


def _classify_clips(refs: beam.PCollection, config: IndexConfig, run: RunContext) -> dict:
    """decode → classify → summarise, for a clip classifier: named (table, row) collections."""
    spec = config.spec
    decoded = refs | "DecodeClips" >> DecodeClips(
        config.sampling, spec.frame_spec(), run, config.limits, shots=config.shots
    )
    clips = decoded["clips"]
    if config.thumbnails:
        clips = clips | "Thumbnails" >> beam.Map(add_thumbnail)
    outcomes = clips | "ClassifyClips" >> ClassifyClips(
        build_handler(spec, config.batch_size, _backend(config), embeddings=config.embeddings), run
    )
    return {"Clips": outcomes, "DecodeFailures": decoded["failed"]} | "Summarise" >> Summarise(
        spec.labels, config.top_k, run
    )


def _backend(config: IndexConfig) -> Backend:
    calibration = (config.ir or {}).get("calibration_sha256")
    return backend_for(config.backend, config.batch_size, config.precision, calibration)
