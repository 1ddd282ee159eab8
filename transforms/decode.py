"""DecodeClips: VideoRef → model-ready clips; the last one carries the DecodeResult.

Takes ``VideoRef`` records and gives ``(ClipKey, uint8 [T, S, S, 3] RGB)`` pairs
ready for RunInference, streamed as they are decoded (a video's frames are never
all in memory, one clip is held back to know which is last). The last clip's key
carries the video's ``DecodeResult``: its ``VideoInfo`` (with its shots, where
``shots=True``: ``transforms.shots`` on the frames this decode makes), or the ``Failure`` that
stopped it, with the number of clips emitted; a failure after some clips still
ends the video in ``failures`` (Summarise drops those clips). A video that fails
before its first clip gives its DecodeResult on the ``failed`` output.

Decoding runs in a child process per DoFn instance (``transforms.decode_worker``): a
decoder that crashes or hangs in native code fails its video (``DecoderCrashed``,
``DecoderTimedOut``, stage ``decode``) and the next video gets a fresh child.
"""

from __future__ import annotations

import time

import apache_beam as beam
from apache_beam import pvalue

from transforms.context import RunContext
from transforms.decode_worker import IsolatedDecoder
from transforms.preprocess import FrameSpec
from transforms.reading import NoFrames, read_clips, video_info
from transforms.records import ClipKey, DecodeResult, Failure, VideoRef
from transforms.sampling import ClipSampling
from transforms.video_io import DecodeLimits

STAGE = "decode"


class _DecodeClipsFn(beam.DoFn):
    def __init__(
        self,
        sampling: ClipSampling,
        frame_spec: FrameSpec,
        limits: DecodeLimits,
        run: RunContext,
        isolate: bool = True,
        shots: bool = False,
    ):
        self._sampling = sampling
        self._shots = shots
        self._frame_spec = frame_spec
        self._limits = limits
        self._run = run
        self._isolate = isolate

    def setup(self):
        self._metrics = self._run.metrics(STAGE)
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
                ref.uri, self._sampling, self._frame_spec, self._limits, shots=self._shots
            ) as reader:
                for clip in reader:
                    if held is not None:
                        yield held
                    key = ClipKey(
                        ref.video_id, ref.uri, clip.index, float(clip.start_s), float(clip.end_s)
                    )
                    num_clips += 1
                    self._metrics.clips()
                    held = (key, clip.frames)
                if num_clips == 0:
                    raise NoFrames("no decodable video frames")
                info = video_info(ref, reader, num_clips)
            result = DecodeResult(ref, num_clips, info=info)
            self._metrics.decoded(int((time.monotonic() - started) * 1000))
        except Exception as error:  # noqa: BLE001 - a bad video is data, not a crash
            self._metrics.failure(final=False)  # Summarise writes and counts the row
            failure = Failure.from_exception(ref.video_id, ref.uri, STAGE, error)
            result = DecodeResult(ref, num_clips, failure=failure)
        if held is None:
            # Nothing to ride with: the failure goes straight to its row.
            yield pvalue.TaggedOutput("failed", result)
            return
        key, frames = held
        yield key._replace(decode_result=result), frames


class DecodeClips(beam.PTransform):
    """VideoRefs → ``{'clips', 'failed'}`` (see the module docstring)."""

    def __init__(
        self,
        sampling: ClipSampling,
        frame_spec: FrameSpec,
        run: RunContext,
        limits: DecodeLimits = DecodeLimits(),
        isolate: bool = True,
        shots: bool = False,
    ):
        super().__init__()
        self._fn = _DecodeClipsFn(sampling, frame_spec, limits, run, isolate, shots)

    def expand(self, refs: pvalue.PCollection) -> dict[str, pvalue.PCollection]:
        decoded = refs | "Decode" >> beam.ParDo(self._fn).with_outputs("failed", main="clips")
        return {"clips": decoded.clips, "failed": decoded.failed}
