"""DoFns driven directly (tier 2): setup, process, finish_bundle, no pipeline."""

from __future__ import annotations

import numpy as np
from apache_beam import pvalue

from tests.helpers import RUN
from tests.media import COLOURS, write_colour_video
from transforms.context import RunContext
from transforms.decode import _DecodeClipsFn
from transforms.inference import _ToOutcomeFn
from transforms.manifest import _SkipUnchangedFn
from transforms.postprocess import _SummariseFn
from transforms.preprocess import FrameSpec
from transforms.records import ClipKey, ClipPrediction, DecodeResult, Failure, VideoRef
from transforms.sampling import ClipSampling
from transforms.sink import commit
from transforms.video_io import DecodeLimits


def decode_fn() -> _DecodeClipsFn:
    fn = _DecodeClipsFn(ClipSampling(8, 10.0), FrameSpec(16), DecodeLimits(), RUN)
    fn.setup()
    return fn


def test_decode_fn_puts_the_result_on_the_last_clip(tmp_path):
    video = write_colour_video(tmp_path / "v.mkv", COLOURS["red"], 2.0)
    out = list(decode_fn().process(VideoRef("v", str(video), 1, "1")))
    keys = [key for key, _ in out]
    assert [k.clip_index for k in keys] == [0, 1, 2]
    assert [k.decode_result is None for k in keys] == [True, True, False]
    result = keys[-1].decode_result
    assert result.num_clips == 3 and result.failure is None
    assert result.info.num_frames == 20 and (result.info.width, result.info.height) == (48, 32)
    frames = out[0][1]
    assert frames.dtype == np.uint8 and frames.shape == (8, 16, 16, 3)


def test_decode_fn_sends_a_clipless_failure_to_its_own_output(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    (tagged,) = list(decode_fn().process(VideoRef("bad", str(bad))))
    assert isinstance(tagged, pvalue.TaggedOutput) and tagged.tag == "failed"
    assert tagged.value.failure.stage == "decode" and tagged.value.num_clips == 0


def test_outcome_fn_turns_errors_into_failures_and_ends_the_video():
    from apache_beam.ml.inference.base import PredictionResult

    fn = _ToOutcomeFn(RUN)
    fn.setup()
    done = DecodeResult(VideoRef("v", "/v"), 2)
    good = list(fn.process((ClipKey("v", "/v", 0, 0, 1), PredictionResult(None, np.ones(3)))))
    bad = list(
        fn.process((ClipKey("v", "/v", 1, 1, 2, done), PredictionResult(None, MemoryError("oom"))))
    )
    assert good[0].key.decode_result is None and len(good) == 1
    assert isinstance(bad[0], Failure) and bad[0].error_type == "MemoryError"
    assert bad[1] is done


def test_summarise_fn_hands_unfinished_videos_to_the_fallback():
    fn = _SummariseFn(("a", "b"), 1, RUN)
    fn.setup()
    fn.start_bundle()
    key = ClipKey("v", "/v", 0, 0.0, 1.0)
    assert list(fn.process(ClipPrediction(key, np.array([1.0, 0.0])))) == []
    (partial,) = list(fn.finish_bundle())
    assert partial.tag == "partial" and partial.value.value[0] == ("v", "/v")


def test_skip_fn_skips_only_unchanged_videos(tmp_path):
    row = {"video_id": "v", "uri": "/v.mp4", "stage": "decode", "error_type": "E", "message": "m",
           "size": 10, "version": "7", "model": "m", "run_id": "r1"}  # fmt: skip
    commit(str(tmp_path), "failures", [row])
    fn = _SkipUnchangedFn(str(tmp_path), RunContext("r2", "m"))
    fn.setup()
    assert list(fn.process(VideoRef("v", "/v.mp4", 10, "7"))) == []
    assert len(list(fn.process(VideoRef("v", "/v.mp4", 10, "8")))) == 1  # changed
    other = _SkipUnchangedFn(str(tmp_path), RunContext("r2", "another-model"))
    other.setup()
    assert len(list(other.process(VideoRef("v", "/v.mp4", 10, "7")))) == 1
