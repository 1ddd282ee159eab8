"""Summarise: outcomes in any order → one VideoOutcome → exactly one of videos/failures."""

from __future__ import annotations

import itertools

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.helpers import RUN
from transforms.postprocess import Summarise, VideoSummary
from transforms.records import ClipKey, ClipPrediction, DecodeResult, Failure, VideoInfo, VideoRef
from transforms.rows import outcome_rows
from transforms.scores import softmax, top_k

LABELS = ("a", "b", "c")
REF = VideoRef("v", "/v.mp4", 100, "123")


def info(num_clips: int) -> VideoInfo:
    return VideoInfo("v", "/v.mp4", 4.0, 25.0, 320, 240, num_clips, 100)


def prediction(index: int, logits) -> ClipPrediction:
    return ClipPrediction(
        ClipKey("v", "/v.mp4", index, index * 2.0, index * 2.0 + 2), np.array(logits, np.float32)
    )


def test_softmax_and_top_k():
    probs = softmax(np.array([1000.0, 1000.0, -1000.0]))
    assert np.allclose(probs, [0.5, 0.5, 0.0])
    assert top_k(np.array([0.1, 0.7, 0.2]), LABELS, 2) == (["b", "c"], [0.7, 0.2])


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_video_completes_in_any_order(order):
    outcomes = [
        DecodeResult(REF, 2, info=info(2)),
        prediction(1, [0, 5, 0]),
        prediction(0, [5, 0, 0]),
    ]
    summary = VideoSummary(LABELS, 2)
    for position in order:
        assert not summary.complete
        summary.add(outcomes[position])
    assert summary.complete
    rows = list(outcome_rows(summary.outcome(), RUN))
    assert [t for t, _ in rows] == ["clips", "clips", "videos"]
    video = rows[2][1]
    # Mean of the two clips' probabilities: a and b tie, c is far behind.
    assert video["labels"] == ["a", "b"] and video["scores"][0] == pytest.approx(video["scores"][1])
    assert (video["size"], video["version"], video["num_clips"]) == (100, "123", 2)
    assert [r["clip_index"] for _, r in rows[:2]] == [0, 1]
    assert rows[1][1]["labels"][0] == "b"


def test_decode_failure_after_clips_drops_the_clips():
    failure = Failure("v", "/v.mp4", "decode", "DecodeLimitExceeded", "too long")
    summary = VideoSummary(LABELS, 2)
    summary.add(prediction(0, [1, 0, 0]))
    summary.add(DecodeResult(REF, 2, failure=failure))
    assert not summary.complete  # one clip still on its way
    summary.add(prediction(1, [1, 0, 0]))
    (row,) = outcome_rows(summary.outcome(), RUN)
    assert row[0] == "failures"
    assert row[1]["stage"] == "decode" and row[1]["size"] == 100


def test_an_inference_failure_fails_the_video():
    summary = VideoSummary(LABELS, 2)
    summary.add(DecodeResult(REF, 2, info=info(2)))
    summary.add(prediction(0, [1, 0, 0]))
    summary.add(Failure("v", "/v.mp4", "inference", "ValueError", "bad batch"))
    (row,) = outcome_rows(summary.outcome(), RUN)
    assert row[0] == "failures" and row[1]["stage"] == "inference"


def test_summarise_fallback_path_finishes_videos_split_across_bundles():
    """Outcomes of one video reach different bundles: the GroupByKey path finishes it."""
    outcomes = [
        prediction(0, [0, 0, 9]),
        prediction(1, [0, 0, 9]),
        DecodeResult(REF, 2, info=info(2)),
    ]
    failed = [
        DecodeResult(
            VideoRef("w", "/w.mp4"),
            0,
            failure=Failure("w", "/w.mp4", "decode", "UnreadableVideo", "x"),
        )
    ]
    with TestPipeline() as p:
        # Reshuffle splits the elements over bundles as the runner likes.
        spread = p | "Outcomes" >> beam.Create(outcomes) | beam.Reshuffle()
        rows = {"Clips": spread, "Failed": p | "Failed" >> beam.Create(failed)} | Summarise(
            LABELS, 1, RUN
        )
        all_rows = list(rows.values()) | beam.Flatten()
        assert_that(
            all_rows | beam.Map(lambda tr: (tr[0], tr[1]["video_id"], tr[1].get("clip_index"))),
            equal_to(
                [
                    ("clips", "v", 0),
                    ("clips", "v", 1),
                    ("videos", "v", None),
                    ("failures", "w", None),
                ]
            ),
        )
