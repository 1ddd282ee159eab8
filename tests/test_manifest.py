"""Manifest parsing and input listing (Beam-free), and ReadManifest on a TestPipeline."""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.helpers import RUN
from transforms.manifest import InputError, ReadManifest, input_kind, list_input, stat
from transforms.records import Failure, VideoRef


@pytest.fixture
def archive(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.mp4").write_bytes(b"x" * 10)
    (tmp_path / "a" / "two.MKV").write_bytes(b"y" * 20)
    (tmp_path / "notes.txt").write_text("not a video")
    (tmp_path / "three.gif").write_bytes(b"z")
    return tmp_path


def test_directory_lists_video_extensions_with_relative_ids(archive):
    refs = list(list_input(str(archive)))
    assert [r.video_id for r in refs] == ["a/one.mp4", "a/two.MKV", "three.gif"]
    assert all(isinstance(r, VideoRef) and r.size is not None and r.version for r in refs)
    assert refs[0].uri == str(archive / "a" / "one.mp4")


def test_glob_takes_what_it_matches(archive):
    refs = list(list_input(str(archive / "**" / "*.mp4")))
    assert [r.uri for r in refs] == [str(archive / "a" / "one.mp4")]


def test_single_file_input(archive):
    (ref,) = list_input(str(archive / "three.gif"))
    assert ref.video_id == "three.gif" and ref.size == 1


def test_txt_manifest_resolves_relative_paths(archive):
    manifest = archive / "list.txt"
    manifest.write_text("# comment\n\na/one.mp4\n/abs/path.mp4\ngs://bucket/x.mp4\n")
    refs = list(list_input(str(manifest)))
    assert [r.uri for r in refs] == [
        str(archive / "a" / "one.mp4"),
        "/abs/path.mp4",
        "gs://bucket/x.mp4",
    ]
    assert refs[0].video_id == "a/one.mp4"


def test_csv_manifest_with_header_ids_and_bad_rows(archive):
    manifest = archive / "m.csv"
    manifest.write_text("id,path\nfirst,a/one.mp4\n,a/two.MKV\nbroken,\n")
    items = list(list_input(str(manifest)))
    assert items[0] == VideoRef("first", str(archive / "a" / "one.mp4"))
    assert items[1].video_id == "a/two.MKV"
    assert isinstance(items[2], Failure)
    assert items[2].stage == "manifest" and "no uri" in items[2].message
    assert items[2].video_id.endswith("m.csv:4")


def test_csv_manifest_without_header(archive):
    manifest = archive / "m.csv"
    manifest.write_text("a/one.mp4,clip-1\na/two.MKV\n")
    items = list(list_input(str(manifest)))
    assert [(r.video_id, r.uri.rsplit("/", 1)[-1]) for r in items] == [
        ("clip-1", "one.mp4"),
        ("a/two.MKV", "two.MKV"),
    ]


def test_jsonl_manifest_bad_rows_are_failures(archive):
    manifest = archive / "m.jsonl"
    rows = [
        json.dumps({"uri": "a/one.mp4", "video_id": 7}),
        "{not json",
        json.dumps([1]),
        json.dumps({"x": 1}),
    ]
    manifest.write_text("\n".join(rows) + "\n")
    items = list(list_input(str(manifest)))
    assert items[0] == VideoRef("7", str(archive / "a" / "one.mp4"))
    assert [type(i).__name__ for i in items[1:]] == ["Failure"] * 3
    assert {i.error_type for i in items[1:]} == {"ManifestError"}


def test_unreadable_input_root_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        input_kind(str(tmp_path / "missing"))


def test_stat_fills_size_and_fails_for_missing(archive):
    ref = stat(VideoRef("x", str(archive / "a" / "one.mp4")))
    assert ref.size == 10 and ref.version
    with pytest.raises(FileNotFoundError, match="gone.mp4"):
        stat(VideoRef("y", str(archive / "gone.mp4")))


def test_read_manifest_dedupes_and_accounts_every_row(archive):
    one = str(archive / "a" / "one.mp4")
    two = str(archive / "a" / "two.MKV")
    manifest = archive / "m.csv"
    # one.mp4 twice (indexed once); id 'dup' names two different files (second
    # fails); a missing file fails at stat; a row without uri fails at parse.
    manifest.write_text(
        f"uri,video_id\n{one},v1\n{one},v1\n{two},dup\n{archive / 'three.gif'},dup\n"
        f"{archive / 'gone.mp4'},gone\n,empty\n"
    )
    with TestPipeline() as p:
        out = p | ReadManifest(str(manifest), RUN)
        assert_that(
            out["refs"] | beam.Map(lambda r: (r.video_id, r.uri, r.size)),
            equal_to([("v1", one, 10), ("dup", two, 20)]),
            label="Refs",
        )
        assert_that(
            out["failures"]
            | beam.Map(lambda f: (f.video_id.rsplit(":", 1)[-1], f.stage, f.error_type)),
            equal_to(
                [
                    ("dup", "manifest", "DuplicateVideoId"),
                    ("gone", "manifest", "FileNotFoundError"),
                    ("7", "manifest", "ManifestError"),
                ]
            ),
            label="Failures",
        )
