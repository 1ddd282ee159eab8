"""Clip embeddings, thumbnails and ``video-index similar`` on a real I3D index.

The acceptance case: ``mmaction2/test.mp4``, three re-encodings of it written here
(MPEG-4 in Matroska, VP9 at 170x128, grayscale H.264) and three other clips from
``../shared/media`` are indexed with the real I3D; the clips most like the original's
moment at 5 s, from other videos, are the three re-encodings' clips of that moment.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import av
import cv2
import lance
import numpy as np
import pyarrow as pa
import pytest

from tests.helpers import run_cli
from tests.media import write_video
from transforms.thumbnails import MAX_SIDE, encode_thumbnail
from video_index import nearest

ORIGINAL = "mmaction2/test.mp4"
OTHERS = (
    "kinetics-i3d/v_CricketShot_g04_c01_rgb.gif",
    "tf-examples/carving_ice_rpi.mp4",
    "moviepy/chaplin.mp4",
)
REENCODED = ("reencoded/mpeg4.mkv", "reencoded/vp9_170x128.webm", "reencoded/gray_h264.mp4")


def _frames(path: Path) -> tuple[list[np.ndarray], int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = round(float(stream.average_rate))
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)], fps


@pytest.fixture(scope="module")
def archive(tmp_path_factory, media_dir) -> Path:
    root = tmp_path_factory.mktemp("archive")
    for name in (ORIGINAL, *OTHERS):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(media_dir / name, root / name)
    frames, fps = _frames(media_dir / ORIGINAL)
    (root / "reencoded").mkdir()
    write_video(root / REENCODED[0], frames, fps, "mpeg4", "yuv420p", {"qscale": "4"})
    small = [cv2.resize(f, (170, 128), interpolation=cv2.INTER_AREA) for f in frames]
    write_video(root / REENCODED[1], small, fps, "libvpx-vp9", "yuv420p", {"crf": "40", "b": "0"})
    # This libx264 has no "gray" input: grey pictures (R = G = B) in yuv420p, whose
    # chroma planes are flat, are what a grayscale H.264 file holds.
    grey = [np.repeat(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2) for f in frames]
    write_video(root / REENCODED[2], grey, fps, "libx264", "yuv420p", {"preset": "ultrafast"})
    with av.open(str(root / REENCODED[2])) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="yuv420p")
        height = container.streams.video[0].codec_context.height
        assert np.abs(frame[height:].astype(int) - 128).max() <= 1  # no colour
    return root


@pytest.fixture(scope="module")
def index(archive, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("index") / "out"
    done = run_cli("index", "--input", str(archive), "--output", str(out), timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _similar(index: Path, *args: str) -> list[dict]:
    done = run_cli("similar", str(index), *args, "--format", "json")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _first_videos(rows: list[dict]) -> list[str]:
    """The distinct video_ids of ``rows``, in the order they first appear."""
    return list(dict.fromkeys(row["video_id"] for row in rows))


@pytest.mark.slow
def test_reencodings_of_a_moment_are_its_nearest_clips(index: Path) -> None:
    rows = _similar(index, "--video", ORIGINAL, "--at", "5", "--limit", "20")
    assert set(rows[0]) >= {"video_id", "uri", "start_s", "end_s", "similarity"}
    assert ORIGINAL not in {row["video_id"] for row in rows}
    # Every clip of the three re-encodings comes before any clip of another video...
    reencoded = [row["video_id"] in REENCODED for row in rows]
    first_other = reencoded.index(False)
    assert not any(reencoded[first_other:])
    assert set(_first_videos(rows)[:3]) == set(REENCODED)
    # ... and each re-encoding's best clip is the same moment: the clip that holds 5 s.
    for video in REENCODED:
        best = next(row for row in rows if row["video_id"] == video)
        assert best["start_s"] <= 5 < best["end_s"]
    similarities = [row["similarity"] for row in rows]
    assert similarities == sorted(similarities, reverse=True)

    with_self = _similar(index, "--video", ORIGINAL, "--at", "5", "--include-same-video")
    assert with_self[0]["video_id"] == ORIGINAL and with_self[0]["similarity"] == pytest.approx(1)
    assert with_self[0]["start_s"] <= 5 < with_self[0]["end_s"]

    # Without --at: the video's mean embedding; its re-encodings are still closest.
    whole = _similar(index, "--video", ORIGINAL, "--limit", "20")
    assert set(_first_videos(whole)[:3]) == set(REENCODED)

    as_csv = run_cli("similar", str(index), "--video", ORIGINAL, "--at", "5", "--format", "csv")
    assert as_csv.stdout.splitlines()[0] == "video_id,uri,clip_index,start_s,end_s,similarity"
    assert len(as_csv.stdout.splitlines()) == 11  # header + the default --limit 10


@pytest.mark.slow
def test_similar_says_which_clip_it_started_from(index: Path) -> None:
    clip = nearest.query_clip(nearest.connect(str(index)), ORIGINAL, 5.0)
    assert clip.start_s <= 5 < clip.end_s
    said = f"clip {clip.clip_index} of video {ORIGINAL} ({clip.start_s:.2f}-{clip.end_s:.2f} s"
    table = run_cli("similar", str(index), "--video", ORIGINAL, "--at", "5", "--limit", "3")
    lines = table.stdout.splitlines()
    assert said in lines[0] and lines[1].split() == list(similar_columns())
    assert len(lines) == 5  # what was asked, the header, 3 clips
    # json: rows only on stdout, one object a line as `search` writes them; the query
    # clip on stderr.
    as_json = run_cli("similar", str(index), "--video", ORIGINAL, "--at", "5", "--format", "json")
    assert as_json.returncode == 0 and said in as_json.stderr
    lines = as_json.stdout.splitlines()
    assert lines[0] == "[" and lines[-1] == "]" and len(lines) == 12
    assert all(json.loads(line.rstrip(","))["video_id"] != ORIGINAL for line in lines[1:-1])
    whole = run_cli("similar", str(index), "--video", ORIGINAL, "--format", "csv")
    assert f"the mean embedding of video {ORIGINAL}" in whole.stderr


@pytest.mark.slow
def test_at_outside_the_video_is_a_one_line_error(index: Path) -> None:
    last_end = max(
        row["end_s"]
        for row in _similar(index, "--video", ORIGINAL, "--at", "0", "--include-same-video",
                            "--limit", "1000")
        if row["video_id"] == ORIGINAL
    )  # fmt: skip
    for at in (f"{last_end:g}", "3600", "-1"):
        done = run_cli("similar", str(index), "--video", ORIGINAL, "--at", at)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.strip().count("\n") == 0
        assert f"is outside video {ORIGINAL!r}: its clips cover 0 to {last_end:g} s" in done.stderr
    assert run_cli("similar", str(index), "--video", ORIGINAL, "--at", "0").returncode == 0


def test_an_unknown_video_id_names_the_ids_it_may_mean(index: Path) -> None:
    con = nearest.connect(str(index))
    with pytest.raises(nearest.SimilarError, match=f"did you mean .*{re.escape(repr(ORIGINAL))}"):
        nearest.query_embedding(con, "test.mp4")  # the end of an id: the id it ends
    with pytest.raises(nearest.SimilarError, match="as `video-index show` lists them"):
        nearest.query_clip(con, "no/such.mp4", 0.0)
    done = run_cli("similar", str(index), "--video", "test.mp4")
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr


def similar_columns() -> tuple[str, ...]:
    from beam_pipeline.similar_cli import _COLUMNS

    return _COLUMNS


@pytest.mark.slow
def test_clip_table_holds_embeddings_and_thumbnails(index: Path) -> None:
    table = lance.dataset(str(index / "clips.lance")).to_table()
    embedding = table.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(embedding) and embedding.list_size == 1024
    assert embedding.value_type == pa.float16()
    vectors = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    assert vectors.shape == (table.num_rows, 1024) and (vectors >= 0).all()
    assert (np.linalg.norm(vectors, axis=1) > 0).all()
    for jpeg in table.column("thumbnail").to_pylist():
        picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and max(picture.shape[:2]) <= MAX_SIDE


@pytest.mark.slow
def _parquet_layout(index: Path, out: Path) -> None:
    """The index's rows as Parquet run files: the layout before the Lance tables."""
    import pyarrow.parquet as pq

    for table in ("videos", "clips", "failures"):
        dataset = lance.dataset(str(index / f"{table}.lance"))
        (out / table).mkdir(parents=True)
        pq.write_table(dataset.to_table(), out / table / "20260101T000000Z-old-00000.parquet")


def test_approximate_index_agrees_and_goes_stale(index: Path, tmp_path: Path) -> None:
    """The faiss side index of an index not yet upgraded (``video_index.nearest``)."""
    out = tmp_path / "out"
    _parquet_layout(index, out)
    assert nearest.ann_state(str(out)) == "no approximate index"
    done = run_cli("similar", str(out), "--build-index")
    assert done.returncode == 0, done.stderr[-2000:]
    assert nearest.ann_state(str(out)) is None
    con = nearest.connect(str(out))
    query = nearest.query_embedding(con, ORIGINAL, 5.0)
    exact = nearest.exact_neighbours(con, query, 8, ORIGINAL)
    approximate = nearest.ann_neighbours(str(out), query, 8, ORIGINAL)
    assert [(n.video_id, n.clip_index) for n in approximate] == [
        (n.video_id, n.clip_index) for n in exact
    ]
    # Candidates are re-ranked on the stored float16 vectors: the same similarities.
    np.testing.assert_allclose(
        [n.similarity for n in approximate], [n.similarity for n in exact], atol=1e-3
    )
    # The same answer as the Lance path on the tables the run wrote.
    lance_rows = _similar(index, "--video", ORIGINAL, "--at", "5", "--limit", "8", "--exact")
    assert [(r["video_id"], r["clip_index"]) for r in lance_rows] == [
        (n.video_id, n.clip_index) for n in exact
    ]
    # A new clips file (a re-run) makes the index stale: it is not used any more...
    clips = sorted((out / "clips").glob("*.parquet"))
    shutil.copy(clips[0], out / "clips" / "20991231T000000Z-rerun-00000.parquet")
    assert "older than the tables" in nearest.ann_state(str(out))
    # ... until the end of the next run rebuilds it (what refresh_ann_index does).
    standing = len(nearest.exact_neighbours(con, query, 1000))  # the copy adds no clip
    assert nearest.refresh_ann_index(str(out)) == standing
    assert nearest.ann_state(str(out)) is None


def test_thumbnail_is_the_middle_frame_shrunk() -> None:
    frames = np.zeros((9, 224, 300, 3), np.uint8)
    frames[4] = (250, 10, 10)  # only the middle frame is red
    jpeg = encode_thumbnail(frames)
    picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (119, 160, 3)
    b, g, r = picture.reshape(-1, 3).mean(axis=0)
    assert r > 230 and g < 30 and b < 30
    small = encode_thumbnail(np.full((1, 40, 30, 3), 128, np.uint8))
    assert cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_COLOR).shape == (40, 30, 3)
    with pytest.raises(ValueError):
        encode_thumbnail(np.zeros((0, 8, 8, 3), np.uint8))


def test_similar_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    done = run_cli("similar", str(tmp_path), "--video", "x")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "holds no indexed clips" in done.stderr
    done = run_cli("similar", str(tmp_path), "--video", "x", "--format", "xml")
    assert done.returncode == 2 and "invalid choice" in done.stderr
