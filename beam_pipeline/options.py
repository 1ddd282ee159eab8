"""The job's flags (a PipelineOptions subclass) and the frozen config made from them.

Flags are declared once here; ``IndexConfig.from_options`` validates them into one
frozen object that ``build_pipeline`` hands to the stages through constructors.
Every flag takes ``--dash-case`` or Beam's ``--snake_case`` spelling.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import uuid
from typing import Optional

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.models.openvino.calibration import DEFAULT_CALIBRATION_CLIPS
from beam_pipeline.models.openvino.policy import BackendError, resolve_precision
from beam_pipeline.models.registry import DEFAULT_MODEL, resolve_model
from beam_pipeline.models.spec import CLIP, STREAM, ModelSpec, SpecError
from transforms.manifest import ALL_FILES, VIDEO_EXTENSIONS, InputError, check_matches_something
from transforms.sampling import SHORT_VIDEO_POLICIES, ClipSampling
from transforms.video_io import DecodeLimits

BACKENDS = ("auto", "tensorflow", "openvino")
DEFAULT_BACKEND = "auto"  # resolved by ``_backend``

# The clip flags, by the ClipSampling field that checks them (its errors name the field).
_CLIP_FLAGS = {
    "stride_s": "clip_stride_s",
    "max_clips": "max_clips_per_video",
    "short_video": "short_video",
}


class ConfigError(ValueError):
    """A bad flag or input; the message is the one-line error the user sees."""


def _flag(parser, name: str, **kwargs) -> None:
    dest = name.replace("-", "_")
    spellings = [f"--{name}"] if dest == name else [f"--{name}", f"--{dest}"]
    parser.add_argument(*spellings, dest=dest, **kwargs)


class VideoIndexOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        _flag(
            parser,
            "input",
            action="append",
            help="folder, glob, manifest (.csv/.jsonl/.txt) or video; any fsspec URL; "
            "repeat it to index several",
        )
        _flag(parser, "output", help="folder (local or bucket) that receives the index tables")
        _flag(
            parser,
            "model",
            default=DEFAULT_MODEL,
            help="registered name, TF Hub handle, SavedModel dir or spec file",
        )
        _flag(
            parser, "label-file", default=None, help="class names file for a --model that has none"
        )
        _flag(
            parser,
            "model-path",
            default=None,
            help="where a registered model's SavedModel is (local or bucket), instead of its hub handle",
        )
        _flag(
            parser,
            "backend",
            default=DEFAULT_BACKEND,
            help="auto | tensorflow | openvino (auto: openvino for clip and stream models when "
            "the workers are this machine, else tensorflow; openvino converts once)",
        )
        _flag(
            parser,
            "precision",
            default="auto",
            help="openvino: auto | f32 | bf16 | int8 (auto: bf16 where the CPU has it, else int8 "
            "on a CPU with VNNI when the calibration spans 6+ videos, else f32)",
        )
        _flag(
            parser,
            "calibration-clips",
            type=int,
            default=DEFAULT_CALIBRATION_CLIPS,
            help="openvino int8: clips of the input that calibrate the quantization (default "
            f"{DEFAULT_CALIBRATION_CLIPS})",
        )
        _flag(
            parser,
            "clip-stride-s",
            type=float,
            default=None,
            help="seconds between clip starts (default: one clip length)",
        )
        _flag(
            parser,
            "max-clips-per-video",
            type=int,
            default=None,
            help="cap on clips per video (default: none)",
        )
        _flag(
            parser,
            "short-video",
            default=None,
            help="a video shorter than one clip: loop (default) | repeat_last",
        )
        _flag(
            parser,
            "clips-per-shot",
            type=int,
            default=None,
            help="place clips inside shots, at most N per shot: one centred on a shot "
            "shorter than a clip, windows at the stride in longer ones (docs/shots.md)",
        )
        _flag(
            parser,
            "top-k",
            type=int,
            default=5,
            help="labels kept per clip and per video (default 5)",
        )
        _flag(
            parser,
            "batch-size",
            type=int,
            default=None,
            help="clips per model call (default: the model's)",
        )
        limits = DecodeLimits()
        _flag(
            parser,
            "max-pixels-per-frame",
            type=int,
            default=limits.max_pixels_per_frame,
            help=f"a larger frame fails its video (default {limits.max_pixels_per_frame})",
        )
        _flag(
            parser,
            "max-duration-s",
            type=float,
            default=limits.max_duration_s,
            help=f"a longer video fails (default {limits.max_duration_s:g} s)",
        )
        _flag(
            parser,
            "max-decode-s",
            type=float,
            default=limits.max_decode_s,
            help="seconds spent opening and decoding one video before it fails, the model's "
            f"time left out (default {limits.max_decode_s:g})",
        )
        _flag(
            parser,
            "max-decode-ratio",
            type=float,
            default=limits.max_decode_ratio,
            help="a video also fails once decoding has taken this many seconds per second of "
            f"it decoded, after {limits.min_decode_s:g} s (default {limits.max_decode_ratio:g})",
        )
        _flag(
            parser,
            "extensions",
            default=",".join(VIDEO_EXTENSIONS),
            help="comma-separated file extensions taken from a folder; '*' takes every file "
            "(files left out are counted in the summary and the run record)",
        )
        _flag(parser, "run-id", default=None, help="name of this run (default: UTC time + random)")
        _flag(
            parser,
            "reindex",
            action="store_true",
            help="index every video, even those the output already holds unchanged",
        )
        _flag(
            parser,
            "retry-failed",
            action="store_true",
            help="try again every video whose failure the output holds, also content "
            "failures (transient ones are always tried again)",
        )
        _flag(
            parser,
            "no-embeddings",
            action="store_true",
            help="do not store clip embeddings (stored by default where the model gives them)",
        )
        _flag(
            parser,
            "no-thumbnails",
            action="store_true",
            help="do not store a thumbnail per clip (stored by default for clip models)",
        )
        _flag(
            parser,
            "no-shots",
            action="store_true",
            help="do not detect shots (detected by default for clip models: the shots table)",
        )
        _flag(
            parser,
            "commit-every-s",
            type=float,
            default=20.0,
            help="seconds between commits of finished rows (what a killed run keeps)",
        )
        _flag(
            parser,
            "compact-after-files",
            type=int,
            default=1000,
            help="at the end of a run, compact the index if it has more small files "
            "than this (0: never)",
        )


def new_run_id() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


@dataclasses.dataclass(frozen=True)
class IndexConfig:
    """One validated run of ``video-index index``: what the stages are built from.

    ``spec`` is the model; the clip flags (``clip_stride_s``, ``max_clips_per_video``,
    ``short_video``, ``clips_per_shot``) are kept as given and joined with the spec's facts in
    ``sampling``, so no model fact is copied here.
    """

    inputs: tuple[str, ...]  # each --input, in order
    output: str
    spec: ModelSpec
    limits: DecodeLimits
    top_k: int
    batch_size: int
    extensions: tuple[str, ...]
    run_id: str
    clip_stride_s: Optional[float] = None
    max_clips_per_video: Optional[int] = None
    short_video: str = "loop"
    clips_per_shot: Optional[int] = None  # clips placed inside shots (transforms.shot_sampling)
    reindex: bool = False
    retry_failed: bool = False
    commit_every_s: float = 20.0
    # clips/ columns beyond the labels: the model's embedding (where its spec names
    # one) and a thumbnail (clip models); see video_index.schemas.clips_schema.
    embeddings: bool = False
    thumbnails: bool = False
    shots: bool = False  # the shots/ table (clip models; transforms.shots)
    compact_after_files: int = 1000
    backend: str = "tensorflow"  # resolved (tensorflow | openvino)
    precision: str = "f32"  # resolved (f32 | bf16 | int8); tensorflow: always f32
    backend_requested: str = "tensorflow"  # the flags as given (the run record says both)
    precision_requested: str = "f32"
    calibration_clips: int = DEFAULT_CALIBRATION_CLIPS
    ir: Optional[dict] = None  # openvino: the IR's info (hashes, calibration), from the launcher
    preparation: tuple[str, ...] = ()  # what preparing the model did and chose, one line each

    @property
    def auto_backend(self) -> bool:
        """``--backend auto`` chose the backend (openvino falls back to tensorflow)."""
        return self.backend_requested == "auto"

    @property
    def auto_precision(self) -> bool:
        """``--precision auto`` chose the OpenVINO precision (int8 may fall back to f32)."""
        return self.backend == "openvino" and self.precision_requested == "auto"

    def prepared(self, model) -> "IndexConfig":
        """This config as ``models.prepare.prepare`` left it (a ``PreparedModel``): the
        backend and precision that run, the IR, and what preparing did."""
        return dataclasses.replace(
            self,
            backend=model.backend,
            precision=model.precision,
            ir=model.ir,
            preparation=model.steps,
        )

    @property
    def sampling(self) -> ClipSampling:
        """How a clip model's clips are cut: the spec's frames and fps, the clip flags."""
        return self.spec.clip_sampling(
            stride_s=self.clip_stride_s,
            max_clips=self.max_clips_per_video,
            short_video=self.short_video,
            clips_per_shot=self.clips_per_shot,
        )

    @classmethod
    def from_options(cls, options: PipelineOptions, check_input: bool = True) -> "IndexConfig":
        opts = options.view_as(VideoIndexOptions)
        if not opts.input:
            raise ConfigError("--input is required (a folder, glob, manifest or video)")
        if not opts.output:
            raise ConfigError("--output is required (a folder for the index tables)")
        extensions = tuple(
            e if e.startswith(".") or e == ALL_FILES else f".{e}"
            for e in (x.strip().lower() for x in opts.extensions.split(","))
            if e
        )
        if check_input:
            try:
                for input_uri in opts.input:
                    check_matches_something(input_uri, extensions)
            except InputError as error:
                raise ConfigError(str(error)) from None
            if "://" not in opts.output and os.path.isfile(opts.output):
                raise ConfigError(f"--output {opts.output} is a file; give a folder for the index")
        try:
            spec = resolve_model(opts.model, opts.label_file, opts.model_path)
        except SpecError as error:
            raise ConfigError(str(error)) from None
        except FileNotFoundError as error:
            raise ConfigError(f"cannot read {error.filename or error}") from None
        if spec.kind != CLIP:
            clip_flags = ("clip_stride_s", "max_clips_per_video", "short_video", "clips_per_shot")
            given = [
                f"--{name.replace('_', '-')}"
                for name in clip_flags
                if getattr(opts, name) is not None
            ]
            if given:
                raise ConfigError(
                    f"{', '.join(given)}: only for clip models; {spec.name} is a "
                    f"{spec.kind} model, which takes whole videos, not clips"
                )
        short_video = opts.short_video or SHORT_VIDEO_POLICIES[0]
        if opts.clips_per_shot is not None:
            if opts.no_shots:
                raise ConfigError("--clips-per-shot places clips in shots: drop --no-shots")
            if opts.max_clips_per_video is not None:
                raise ConfigError("--clips-per-shot and --max-clips-per-video: give one of them")
        try:
            spec.clip_sampling(
                opts.clip_stride_s, opts.max_clips_per_video, short_video, opts.clips_per_shot
            )
        except ValueError as error:
            field, _, reason = str(error).partition(" ")
            flag = _CLIP_FLAGS.get(field, field).replace("_", "-")
            raise ConfigError(f"--{flag} {reason}") from None
        backend = _backend(opts, spec, options)
        precision = _precision(opts, spec, backend)
        if opts.calibration_clips < 1:
            raise ConfigError("--calibration-clips must be at least 1")
        if opts.top_k < 1:
            raise ConfigError("--top-k must be at least 1")
        if opts.batch_size is not None and opts.batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")
        for name in ("max_pixels_per_frame", "max_duration_s", "max_decode_s", "max_decode_ratio"):
            if getattr(opts, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive")
        if opts.commit_every_s < 0:
            raise ConfigError("--commit-every-s must be >= 0")
        if opts.compact_after_files < 0:
            raise ConfigError("--compact-after-files must be >= 0")
        return cls(
            inputs=tuple(opts.input),
            output=opts.output.rstrip("/"),
            spec=spec,
            limits=DecodeLimits(
                max_pixels_per_frame=opts.max_pixels_per_frame,
                max_duration_s=opts.max_duration_s,
                max_decode_s=opts.max_decode_s,
                max_decode_ratio=opts.max_decode_ratio,
            ),
            top_k=min(opts.top_k, spec.num_classes),
            batch_size=opts.batch_size or spec.max_batch_size,
            extensions=extensions,
            run_id=opts.run_id or new_run_id(),
            clip_stride_s=opts.clip_stride_s,
            max_clips_per_video=opts.max_clips_per_video,
            short_video=short_video,
            clips_per_shot=opts.clips_per_shot,
            reindex=bool(opts.reindex),
            retry_failed=bool(opts.retry_failed),
            commit_every_s=opts.commit_every_s,
            embeddings=spec.embedding_key is not None and not opts.no_embeddings,
            thumbnails=spec.kind == CLIP and not opts.no_thumbnails,
            shots=spec.kind == CLIP and not opts.no_shots,
            compact_after_files=opts.compact_after_files,
            backend=backend,
            precision=precision,
            backend_requested=opts.backend,
            precision_requested=opts.precision,
            calibration_clips=opts.calibration_clips,
        )


def _backend(opts: VideoIndexOptions, spec: ModelSpec, options: PipelineOptions) -> str:
    """The resolved ``--backend`` (ConfigError for an unknown one).

    ``auto``: ``openvino`` for clip and stream models when the job's workers are this
    machine (the local runners), whose CPU the launcher sees (I3D in bf16: 3.8x
    TensorFlow fp32 model-only, 2.8x end to end, the gates met: docs/openvino.md, CPU
    inference); ``tensorflow`` otherwise: frame-sequence models (not on OpenVINO), and
    remote workers (Dataflow, Flink), whose CPU or GPU the launcher cannot see (GPU
    workers run TensorFlow; pass ``--backend openvino`` for CPU workers).
    """
    if opts.backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}")
    if opts.backend != "auto":
        return opts.backend
    from beam_pipeline.runner import is_local

    return "openvino" if spec.kind in (CLIP, STREAM) and is_local(options) else "tensorflow"


def _precision(opts: VideoIndexOptions, spec: ModelSpec, backend: str) -> str:
    """The resolved ``--precision`` on ``backend`` for ``spec`` (ConfigError if none)."""
    if backend == "tensorflow":
        if opts.precision not in ("auto", "f32"):
            chose = " (--backend auto chose tensorflow)" if opts.backend == "auto" else ""
            raise ConfigError(
                f"--precision {opts.precision}: only f32 on --backend tensorflow{chose}; "
                "pass --backend openvino"
            )
        return "f32"
    if spec.kind not in (CLIP, STREAM):
        # Frame-sequence models stay on TensorFlow (docs/openvino.md).
        raise ConfigError(
            f"--backend openvino: for clip and stream models; {spec.name} is a "
            f"{spec.kind} model (use --backend tensorflow)"
        )
    try:
        return resolve_precision(opts.precision, kind=spec.kind)
    except BackendError as error:
        raise ConfigError(str(error)) from None
