"""Hostile inputs: what a user, a file name or a manifest line can make the tool do.

Nothing a user types or a file holds becomes SQL, reaches the terminal as a control
sequence, or grows without bound; every test here was seen failing before its fix.
"""

from __future__ import annotations

import pytest

from tests.helpers import clip_row, run_cli, video_row
from transforms.sink import write_rows


@pytest.fixture
def small_index(tmp_path):
    out = tmp_path / "out"
    write_rows(str(out), "clips", [clip_row("x", "r1", i) for i in range(3)], "r1-a")
    write_rows(str(out), "videos", [video_row("x", "r1")], "r1-b")
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
    from transforms.query import connect

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
    write_rows(str(out), "clips", [clip_row(name, "r1", i) for i in range(2)], "r1-a")
    write_rows(str(out), "videos", [video_row(name, "r1")], "r1-b")
    page = tmp_path / "report.html"
    done = run_cli("show", str(out), "--html", str(page))
    assert done.returncode == 0, done.stderr
    assert page.read_text().count("class=seg ") == 2
