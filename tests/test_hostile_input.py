"""Hostile inputs: what a user, a file name or a manifest line can make the tool do.

Nothing a user types or a file holds becomes SQL, reaches the terminal as a control
sequence, or grows without bound; every test here was seen failing before its fix.
"""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.helpers import clip_row, run_cli, video_row
from transforms.sink import commit


@pytest.fixture
def small_index(tmp_path):
    out = tmp_path / "out"
    commit(str(out), "clips", [clip_row("x", "r1", i) for i in range(3)])
    commit(str(out), "videos", [video_row("x", "r1")])
    return out


# --- SQL through a flag ------------------------------------------------------------------


def _injection(target) -> str:
    return f"1GB'; COPY (SELECT 'owned') TO '{target}'; SET memory_limit='1GB"


@pytest.mark.parametrize(
    "command",
    [
        ["query", "{out}", "SELECT 1"],
        ["search", "{out}", "a"],
        ["compact", "{out}"],
    ],
)
def test_memory_limit_is_a_size_never_sql(small_index, tmp_path, command):
    target = tmp_path / "owned.csv"
    args = [a.format(out=small_index) for a in command]
    done = run_cli(*args, "--memory-limit", _injection(target))
    assert not target.exists(), "a flag's value ran as SQL"
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--memory-limit" in lines[0], done.stderr
    ok = run_cli(*args, "--memory-limit", "512MiB")
    assert ok.returncode == 0, ok.stderr


def test_connect_refuses_a_memory_limit_that_is_not_a_size(small_index, tmp_path):
    from video_index.query import connect

    target = tmp_path / "owned.csv"
    with pytest.raises(ValueError, match="memory limit"):
        connect(str(small_index), memory_limit=_injection(target))
    assert not target.exists()
    assert connect(str(small_index), memory_limit="1.5 GB").execute(
        "SELECT current_setting('memory_limit')"
    ).fetchone()[0]


def test_report_of_ids_with_quotes_binds_them(tmp_path):
    out = tmp_path / "out"
    name = "it's'); DROP VIEW clips; --"
    commit(str(out), "clips", [clip_row(name, "r1", i) for i in range(2)])
    commit(str(out), "videos", [video_row(name, "r1")])
    page = tmp_path / "report.html"
    done = run_cli("show", str(out), "--html", str(page))
    assert done.returncode == 0, done.stderr
    assert page.read_text().count("class=seg ") == 2


# --- terminal escapes --------------------------------------------------------------------

# A file name that retitles the terminal, recolours it, and fakes a table row.
HOSTILE_ID = "\x1b]0;owned\x07clip\x1b[31m-red\r\nfake  0:00:00-0:00:01  row\x9b2J.mp4"
HOSTILE_LABEL = "label\x1b[2J"
CONTROL = set(map(chr, [*range(0, 9), *range(11, 32), 127, *range(0x80, 0xA0)]))


def _hostile_index(tmp_path):
    import numpy as np

    from transforms.records import ClipScores, VideoInfo, VideoOutcome, VideoRef
    from transforms.rows import outcome_rows
    from transforms.context import RunContext
    from video_index.schemas import clips_schema

    out = tmp_path / "out"
    tables: dict = {"videos": [], "clips": []}
    for n, video_id in enumerate([HOSTILE_ID, "plain"]):
        embedding = np.full(4, n + 1, np.float16)
        clips = tuple(
            ClipScores(i, float(i), i + 1.0, (HOSTILE_LABEL,), (0.9,), embedding) for i in range(2)
        )
        info = VideoInfo(video_id, f"/{video_id}", 2.0, 25.0, 4, 4, 2, 50, codec="ffv1")
        ref = VideoRef(video_id, f"/{video_id}", size=1, version="v")
        outcome = VideoOutcome(ref, info, clips, (HOSTILE_LABEL,), (0.9,))
        for table, row in outcome_rows(outcome, RunContext("r1", "m")):
            tables[table].append(row)
    commit(str(out), "clips", tables["clips"], clips_schema(4))
    commit(str(out), "videos", tables["videos"])
    return str(out)


def _assert_escaped(done) -> None:
    assert done.returncode == 0, done.stderr
    for stream in (done.stdout, done.stderr):
        assert not CONTROL & set(stream), repr(stream)
    assert "\\r\\nfake" in done.stdout and "row\\x9b2J.mp4" in done.stdout, done.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["show", "{out}"],
        ["query", "{out}", "SELECT video_id, uri, labels FROM videos"],
        ["search", "{out}", "label"],
        ["search", "{out}", "label", "--clips"],
        ["similar", "{out}", "--video", "plain", "--exact"],
    ],
)
def test_human_output_shows_control_characters_escaped(tmp_path, command):
    out = _hostile_index(tmp_path)
    args = [a.format(out=out) for a in command]
    table = run_cli(*args)
    _assert_escaped(table)
    assert "\nfake" not in table.stdout  # no row made up by a CR/LF in a name
    if command[0] == "show":
        return
    as_json = run_cli(*args, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    ids = {row.get("video_id", row.get("video")) for row in json.loads(as_json.stdout)}
    assert HOSTILE_ID in ids  # exact
    as_csv = run_cli(*args, "--format", "csv", text=False)  # bytes: CR LF as written
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout.decode(), newline="")))
    assert HOSTILE_ID in {row["video_id"] for row in rows}


def test_index_summary_escapes_file_names(tmp_path, colour_spec_file):
    from tests.media import COLOURS, write_colour_video

    archive = tmp_path / "in"
    archive.mkdir()
    write_colour_video(archive / "\x1b]0;owned\x07\x1b[31mred\r\nfake.mkv", COLOURS["red"], 1.0)
    done = run_cli(
        "index", "--input", str(archive), "--output", str(tmp_path / "out"),
        "--model", str(colour_spec_file),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    for stream in (done.stdout, done.stderr):
        assert not CONTROL & set(stream), repr(stream[-2000:])
    assert "\\x1b]0;owned\\x07\\x1b[31mred\\r\\nfake.mkv" in done.stdout


# --- manifests saved by spreadsheets -----------------------------------------------------


@pytest.mark.parametrize(
    "name, text",
    [
        ("m.csv", "uri,video_id\r\nclip.mp4,first\r\n"),
        ("m.csv", "video_id,uri\r\nfirst,clip.mp4\r\n"),
        ("m.jsonl", '{"uri": "clip.mp4", "video_id": "first"}\n'),
        ("m.txt", "clip.mp4\n"),
    ],
)
def test_a_manifest_that_starts_with_a_bom(tmp_path, name, text):
    from transforms.manifest import list_input
    from transforms.records import VideoRef

    (tmp_path / "clip.mp4").write_bytes(b"x")
    manifest = tmp_path / name
    manifest.write_bytes(b"\xef\xbb\xbf" + text.encode())  # Excel's "CSV UTF-8"
    (ref,) = list_input(str(manifest))
    assert isinstance(ref, VideoRef), ref
    assert ref.uri == str(tmp_path / "clip.mp4")
    assert ref.video_id == ("clip.mp4" if name.endswith(".txt") else "first")


# --- one file, one URI -------------------------------------------------------------------


def test_a_local_file_has_one_absolute_uri_however_it_is_named(tmp_path, monkeypatch):
    from transforms.manifest import list_input

    (tmp_path / "videos").mkdir()
    clip = tmp_path / "videos" / "clip.mp4"
    clip.write_bytes(b"x")
    (tmp_path / "videos" / "m.txt").write_text("clip.mp4\n./clip.mp4\n")
    (tmp_path / "m.csv").write_text(f"uri\n{tmp_path}/videos//clip.mp4\nfile://{clip}\n")
    (tmp_path / "elsewhere").mkdir()
    uris = set()
    for cwd, inputs in [
        (tmp_path / "videos", ["clip.mp4", "./clip.mp4", str(clip), "m.txt", "."]),
        (tmp_path, ["videos/clip.mp4", "videos/m.txt", "m.csv", "videos", "videos/*.mp4"]),
        (tmp_path / "elsewhere", ["../videos/clip.mp4", "../videos/m.txt", "../videos/"]),
    ]:
        monkeypatch.chdir(cwd)
        for given in inputs:
            refs = [r for r in list_input(given) if r.uri.endswith(".mp4")]
            assert refs, given
            uris.update(r.uri for r in refs)
    assert uris == {str(clip)}


# --- unbounded strings -------------------------------------------------------------------

HUGE = 5_000_000


@pytest.mark.parametrize(
    "name, row",
    [
        ("m.txt", "{long}.mp4\n"),
        ("m.csv", "uri,video_id\n{long}.mp4,x\n"),
        ("m.csv", "uri,video_id\nclip.mp4,{long}\n"),
        ("m.jsonl", '{{"uri": "{long}.mp4"}}\n'),
        ("m.jsonl", '{{"uri": "clip.mp4", "video_id": "{long}"}}\n'),
    ],
)
def test_a_huge_manifest_row_is_one_bounded_failure(tmp_path, name, row):
    from transforms.manifest import list_input
    from transforms.records import Failure, VideoRef

    (tmp_path / "clip.mp4").write_bytes(b"x")
    manifest = tmp_path / name
    header, _, line = row.rpartition("\n")[0].rpartition("\n")
    good = {"m.txt": "clip.mp4\n", "m.csv": "clip.mp4,good\n", "m.jsonl": '{"uri": "clip.mp4"}\n'}
    manifest.write_text((header + "\n" if header else "") + line.format(long="a" * HUGE) + "\n"
                        + good[name])  # fmt: skip
    items = list(list_input(str(manifest)))
    failures = [i for i in items if isinstance(i, Failure)]
    refs = [i for i in items if isinstance(i, VideoRef)]
    assert len(failures) == 1 and len(refs) == 1, [str(i)[:200] for i in items]
    (failure,) = failures
    assert failure.stage == "manifest" and "characters" in failure.message, failure.message[:300]
    assert max(len(failure.video_id), len(failure.uri), len(failure.message)) < 1000


def test_pages_of_an_index_holding_a_huge_id_stay_bounded(tmp_path):
    from beam_pipeline.explorer import write_site

    out = tmp_path / "out"
    huge = "v" * HUGE
    commit(str(out), "clips", [clip_row(huge, "r1", i) for i in range(2)])
    commit(str(out), "videos", [video_row(huge, "r1"), video_row("small", "r1")])
    written = write_site(str(out), str(tmp_path / "site"))
    assert written["largest_page_bytes"] < 200_000
    shown = run_cli("show", str(out))
    assert shown.returncode == 0 and len(shown.stdout) < 10_000
