"""`similar` on an index in Lance tables (video_index.clip_vectors): the clips table's
IVF_PQ index, rows committed after its build searched exactly, `--exact` read by Lance,
never a superseded or orphan clip."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from beam_pipeline import similar_cli
from tests.helpers import clip_row, video_row
from video_index import indexes
from video_index import table as tables
from video_index.clip_vectors import ClipVectors
from video_index.schemas import clips_schema

DIM = 32
CLIPS = 10


def _vectors(rng: np.random.Generator, centre: np.ndarray, count: int) -> np.ndarray:
    vectors = centre + 0.3 * rng.standard_normal((count, DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16)


def _commit(out: str, video: str, run: str, vectors: np.ndarray, row: bool = True) -> None:
    """A run's commits for one video: its clips with ``vectors``, then (``row``) its row."""
    rows = [{**clip_row(video, run, i), "embedding": v.tolist()} for i, v in enumerate(vectors)]
    schema = clips_schema(embedding_dim=DIM)
    tables.commit_rows(out, "clips", pa.Table.from_pylist(rows, schema=schema))
    if row:
        tables.commit_rows(out, "videos", pa.Table.from_pylist([video_row(video, run)]))


@pytest.fixture
def index(tmp_path):
    """40 videos of 10 clips around 8 centres, the vector index, then more commits."""
    out = str(tmp_path / "out")
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((8, DIM))
    vectors = {}
    for v in range(40):
        vectors[f"v{v:02d}"] = _vectors(rng, centres[v % 8], CLIPS)
        _commit(out, f"v{v:02d}", "r1", vectors[f"v{v:02d}"])
    assert indexes.ensure_vector_index(out, min_rows=0).startswith("IVF_PQ built")
    # After the build: a new video; a re-run of v01 (its r1 clips superseded); a killed
    # run's orphan clips of v02 (no videos row).
    vectors["late"] = _vectors(rng, centres[0], CLIPS)
    _commit(out, "late", "r2", vectors["late"])
    vectors["v01"] = _vectors(rng, centres[1], CLIPS)
    _commit(out, "v01", "r2", vectors["v01"])
    tables.supersede(out, "r2", [("v01", "/v01")])
    _commit(out, "v02", "r3", _vectors(rng, centres[2], CLIPS), row=False)
    return out, vectors


def _exact(vectors: dict, query: np.ndarray, limit: int, exclude: str) -> list[tuple]:
    """The standing clips most like ``query``, by numpy."""
    scored = []
    for video, clips in vectors.items():
        if video == exclude:
            continue
        unit = clips.astype(np.float32)
        unit /= np.linalg.norm(unit, axis=1, keepdims=True)
        q = query / np.linalg.norm(query)
        scored += [(-float(s), video, i) for i, s in enumerate(unit @ q)]
    return [(video, i) for _, video, i in sorted(scored)[:limit]]


def test_rows_committed_after_the_index_build_are_found(index):
    out, vectors = index
    source = ClipVectors(out)
    assert source.has_index
    clips = tables.open_table(out, "clips")
    assert clips.stats.index_stats("embedding_idx")["num_unindexed_rows"] >= 2 * CLIPS
    for clip in range(CLIPS):
        query = vectors["late"][clip].astype(np.float32)
        found = source.neighbours(query, 1)
        assert (found[0].video_id, found[0].clip_index) == ("late", clip)
        assert found[0].similarity == pytest.approx(1.0, abs=1e-3)


def test_superseded_and_orphan_clips_are_never_found(index):
    out, vectors = index
    source = ClipVectors(out)
    orphans = tables.open_table(out, "clips").to_table(
        columns=["embedding"], filter="video_id = 'v02' AND run_id = 'r3'"
    )
    query = np.asarray(orphans.column("embedding")[0].as_py(), np.float32)
    for exact in (False, True):
        found = source.neighbours(query, 1000, exact=exact)
        assert found[0].similarity < 0.999  # the orphan itself is not found
        keys = [(n.video_id, n.clip_index) for n in found]
        assert len(keys) == len(set(keys)) == 41 * CLIPS  # each standing clip once


def test_exact_on_lance_matches_numpy(index, capsys):
    out, vectors = index
    argv = [out, "--video", "v05", "--at", "3.5", "--exact", "--limit", "15", "--format", "json"]
    assert similar_cli.run(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    query = vectors["v05"][3].astype(np.float32)  # clip 3 spans [3, 4) s
    assert [(r["video_id"], r["clip_index"]) for r in rows] == _exact(vectors, query, 15, "v05")
    best = vectors[rows[0]["video_id"]][rows[0]["clip_index"]].astype(np.float32)
    cosine = best @ query / (np.linalg.norm(best) * np.linalg.norm(query))
    assert rows[0]["similarity"] == pytest.approx(float(cosine), abs=1e-3)


def test_the_approximate_search_agrees_with_the_exact_one(index):
    out, vectors = index
    source = ClipVectors(out)
    recalls = []
    for video in ("v00", "v03", "late", "v01"):
        query = source.query_clip(video, 2.5).embedding
        exact = {(n.video_id, n.clip_index) for n in source.neighbours(query, 10, video, True)}
        approximate = source.neighbours(query, 10, video)
        assert all(n.video_id != video for n in approximate)
        recalls.append(len(exact & {(n.video_id, n.clip_index) for n in approximate}) / 10)
    assert np.mean(recalls) >= 0.9


def test_build_index_on_lance_and_errors(tmp_path, capsys):
    out = str(tmp_path / "out")
    rng = np.random.default_rng(0)
    for v in range(30):
        _commit(out, f"v{v}", "r1", _vectors(rng, rng.standard_normal(DIM), CLIPS))
    assert not ClipVectors(out).has_index
    assert similar_cli.run([out, "--build-index"]) == 0
    assert "IVF_PQ built" in capsys.readouterr().out
    assert ClipVectors(out).has_index
    with pytest.raises(similar_cli.SimilarError, match="did you mean 'v1'"):
        ClipVectors(out).query_clip("1", 0.0)
    with pytest.raises(similar_cli.SimilarError, match="outside video 'v1'"):
        ClipVectors(out).query_clip("v1", 99.0)


def test_clips_without_embeddings_are_skipped_and_named(tmp_path):
    out = str(tmp_path / "out")
    rng = np.random.default_rng(1)
    _commit(out, "a", "r1", _vectors(rng, rng.standard_normal(DIM), 3))
    schema = clips_schema(embedding_dim=DIM)
    bare = [{**clip_row("b", "r1", i), "embedding": None} for i in range(3)]
    tables.commit_rows(out, "clips", pa.Table.from_pylist(bare, schema=schema))
    tables.commit_rows(out, "videos", pa.Table.from_pylist([video_row("b", "r1")]))
    source = ClipVectors(out)
    query = source.query_clip("a", 0.5).embedding
    for exact in (False, True):
        assert {n.video_id for n in source.neighbours(query, 10, exact=exact)} == {"a"}
    with pytest.raises(similar_cli.SimilarError, match="'b' has no embedded clips"):
        source.query_clip("b", 0.5)
