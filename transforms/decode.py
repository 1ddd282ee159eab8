"""DecodeClips: VideoRef → model-ready clips, then one DecodeResult per video.

Takes ``VideoRef`` records and gives ``(ClipKey, uint8 [T, S, S, 3] RGB)`` pairs
ready for RunInference, streamed as they are decoded (a video's frames are never
all in memory), and on the ``done`` output one ``DecodeResult`` per video: its
``VideoInfo``, or the ``Failure`` that stopped it, with the number of clips
emitted. A failure after some clips were emitted still ends the video in
``failures``: Summarise drops those clips.
"""

from __future__ import annotations

import time
from typing import Optional

import apache_beam as beam
from apache_beam import pvalue

from transforms.clips import read_clips
from transforms.metrics import StageMetrics
from transforms.preprocess import FrameSpec
from transforms.records import ClipKey, DecodeResult, Failure, VideoInfo, VideoRef, seconds
from transforms.sampling import ClipSampling
from transforms.video_io import DecodeLimits

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
    ):
        self._sampling = sampling
        self._frame_spec = frame_spec
        self._limits = limits
        self._progress_path = progress_path

    def setup(self):
        self._metrics = StageMetrics(STAGE, self._progress_path)

    def process(self, ref: VideoRef):
        started = time.monotonic()
        num_clips = 0
        try:
            with read_clips(ref.uri, self._sampling, self._frame_spec, self._limits) as reader:
                source = reader.info
                for clip in reader:
                    key = ClipKey(
                        ref.video_id,
                        ref.uri,
                        clip.index,
                        seconds(clip.start_s),
                        seconds(clip.end_s),
                    )
                    num_clips += 1
                    self._metrics.clips()
                    yield key, clip.frames
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
                    num_frames=reader.num_frames_decoded,
                    decode_errors=reader.decode_errors,
                )
        except Exception as error:  # noqa: BLE001 - a bad video is data, not a crash
            self._metrics.failure(final=False)  # Summarise writes and counts the row
            failure = Failure.from_exception(ref.video_id, ref.uri, STAGE, error)
            yield pvalue.TaggedOutput("done", DecodeResult(ref, num_clips, failure=failure))
            return
        self._metrics.decoded(num_clips, int((time.monotonic() - started) * 1000))
        yield pvalue.TaggedOutput("done", DecodeResult(ref, num_clips, info=info))


def _duration(reader, source) -> float:
    # What was decoded is the truth; container metadata of a truncated file lies.
    decoded = reader.duration_s
    if decoded:
        return float(decoded)
    return float(source.duration_s or 0.0)


class DecodeClips(beam.PTransform):
    """VideoRefs → ``{'clips', 'done'}`` (see the module docstring)."""

    def __init__(
        self,
        sampling: ClipSampling,
        frame_spec: FrameSpec,
        limits: DecodeLimits = DecodeLimits(),
        progress_path: Optional[str] = None,
    ):
        super().__init__()
        self._fn = _DecodeClipsFn(sampling, frame_spec, limits, progress_path)

    def expand(self, refs: pvalue.PCollection) -> dict[str, pvalue.PCollection]:
        decoded = refs | "Decode" >> beam.ParDo(self._fn).with_outputs("done", main="clips")
        return {"clips": decoded.clips, "done": decoded.done}
