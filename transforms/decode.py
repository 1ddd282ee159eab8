"""DecodeClips: VideoRef → model-ready clips; the last one carries the DecodeResult.

Takes ``VideoRef`` records and gives ``(ClipKey, uint8 [T, S, S, 3] RGB)`` pairs
ready for RunInference, streamed as they are decoded (a video's frames are never
all in memory, one clip is held back to know which is last). The last clip's key
carries the video's ``DecodeResult``: its ``VideoInfo``, or the ``Failure`` that
stopped it, with the number of clips emitted; a failure after some clips still
ends the video in ``failures`` (Summarise drops those clips). A video that fails
before its first clip gives its DecodeResult on the ``failed`` output.

Decoding runs in a child process per DoFn instance (``transforms.decode_worker``): a
decoder that crashes or hangs in native code fails its video (``DecoderCrashed``,
``DecoderTimedOut``, stage ``decode``) and the next video gets a fresh child.
"""

from __future__ import annotations

import time
from typing import Optional

import apache_beam as beam
from apache_beam import pvalue

from transforms.clips import read_clips
from transforms.decode_worker import IsolatedDecoder
from transforms.metrics import StageMetrics
from transforms.preprocess import FrameSpec
from transforms.records import ClipKey, DecodeResult, Failure, VideoInfo, VideoRef, seconds
from transforms.sampling import ClipSampling
from transforms.video_io import DecodeLimits, stream_facts

STAGE = "decode"


class NoFrames(Exception):
    """A video whose container opened but gave no decodable frame."""


class _DecodeClipsFn(beam.DoFn):
    def __init__(
        self,
        sampling: ClipSampling,
        frame_spec: FrameSpec,
        limits: DecodeLimits,
        progress_path: Optional[str],
        isolate: bool = True,
    ):
        self._sampling = sampling
        self._frame_spec = frame_spec
        self._limits = limits
        self._progress_path = progress_path
        self._isolate = isolate

    def setup(self):
        self._metrics = StageMetrics(STAGE, self._progress_path)
        self._decoder = IsolatedDecoder() if self._isolate else None
        self._read_clips = self._decoder.read_clips if self._decoder else read_clips

    def teardown(self):
        if self._decoder is not None:
            self._decoder.close()

    def process(self, ref: VideoRef):
        started = time.monotonic()
        num_clips = 0
        held = None  # the latest clip, held back until we know whether it is the last
        try:
            with self._read_clips(
                ref.uri, self._sampling, self._frame_spec, self._limits
            ) as reader:
                source = reader.info
                for clip in reader:
                    if held is not None:
                        yield held
                    key = ClipKey(
                        ref.video_id,
                        ref.uri,
                        clip.index,
                        seconds(clip.start_s),
                        seconds(clip.end_s),
                    )
                    num_clips += 1
                    self._metrics.clips()
                    held = (key, clip.frames)
                if num_clips == 0:
                    raise NoFrames("no decodable video frames")
                info = VideoInfo(
                    video_id=ref.video_id,
                    uri=ref.uri,
                    duration_s=_duration(reader, source),
                    fps=float(source.fps) if source.fps else 0.0,
                    width=reader.display_size[0],
                    height=reader.display_size[1],
                    num_clips=num_clips,
                    num_frames=reader.num_frames,
                    decode_errors=reader.decode_errors,
                    discontinuities=reader.discontinuities,
                    **stream_facts(source),
                )
            result = DecodeResult(ref, num_clips, info=info)
            self._metrics.decoded(num_clips, int((time.monotonic() - started) * 1000))
        except Exception as error:  # noqa: BLE001 - a bad video is data, not a crash
            self._metrics.failure(final=False)  # Summarise writes and counts the row
            failure = Failure.from_exception(ref.video_id, ref.uri, STAGE, error)
            result = DecodeResult(ref, num_clips, failure=failure)
        if held is None:
            # Nothing to ride with: the failure goes straight to its row.
            yield pvalue.TaggedOutput("failed", result)
            return
        key, frames = held
        yield key._replace(done=result), frames


def _duration(reader, source) -> float:
    # What was decoded is the truth; container metadata of a truncated file lies.
    decoded = reader.duration_s
    if decoded:
        return float(decoded)
    return float(source.duration_s or 0.0)


class DecodeClips(beam.PTransform):
    """VideoRefs → ``{'clips', 'failed'}`` (see the module docstring)."""

    def __init__(
        self,
        sampling: ClipSampling,
        frame_spec: FrameSpec,
        limits: DecodeLimits = DecodeLimits(),
        progress_path: Optional[str] = None,
        isolate: bool = True,
    ):
        super().__init__()
        self._fn = _DecodeClipsFn(sampling, frame_spec, limits, progress_path, isolate)

    def expand(self, refs: pvalue.PCollection) -> dict[str, pvalue.PCollection]:
        decoded = refs | "Decode" >> beam.ParDo(self._fn).with_outputs("failed", main="clips")
        return {"clips": decoded.clips, "failed": decoded.failed}
