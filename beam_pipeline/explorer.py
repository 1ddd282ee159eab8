"""The explorer: a static site of an index that opens from disk (no server, no network).

``write_site(OUT, DIR)`` reads the standing rows and events through the query layer
(``video_index.query``: views ``videos``, ``clips``, ``failures``, ``segments``) and writes:

- ``DIR/index.html``: counts, the archive's label histogram (clips by top-1 label)
  with a search box that filters it, links to the label pages, the first video page
  and the failures;
- ``DIR/videos/NNNNN.html``: ``videos_per_page`` videos each (sorted by video_id):
  per video a player (where the URI is one a browser can play: a local file or
  http(s); other URIs as text), its top labels, its shot strip (the ``shots`` view:
  each shot's middle frame, times and the kind of boundary that starts it; clicking
  a shot seeks the player to its start), and a timeline of its clips with
  thumbnails, top label and score, events highlighted (the ``segments`` view: runs of
  clips with the same confident top label) and each clip's nearest clips from
  other videos, linked. Clicking a clip seeks the player to the clip's start. A search
  box filters the page's videos and clips by label;
- ``DIR/labels/NNNN.html``: per label, its best ``clips_per_label`` clips;
- ``DIR/failures/NNNNN.html``: the failures with their stage and reason;
- ``DIR/thumbs/NNNNN/*.jpg``: the thumbnails of page NNNNN's clips and shots (files, so a page
  stays small).

Every page is bounded (``videos_per_page`` videos, ``failures_per_page`` failures, a
histogram of at most ``MAX_HISTOGRAM`` labels), whatever the size of the archive; rows
stream from DuckDB in order, so memory does not grow with it either. Styles and
scripts are inline.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import zlib
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from video_index import query
from video_index.schemas import EMBEDDING, THUMBNAIL

__all__ = ["write_site", "playable_url"]

SEARCH_MIN_SCORE = 0.1  # a clip matches a search for its top label or any label this likely
MAX_HISTOGRAM = 1000
NEIGHBOURS = 3
# Longest id or URI drawn on a page: an index written before ids were capped
# (transforms.manifest.MAX_VIDEO_ID_CHARS) may hold megabytes in one.
SHOWN_CHARS = 300
# Containers Chromium, Firefox and Safari play in <video> (with their usual codecs);
# an AVI, MPEG-TS, FLV, WMV ... gets the clips' thumbnails instead of a dead player.
BROWSER_PLAYS = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".ogv", ".ogg")

_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
a{color:#0645ad}nav{margin:.5em 0 1em}nav a,nav span{margin-right:1em}
input#search{font-size:15px;padding:4px 8px;width:22em}
table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}
.bar{display:inline-block;height:10px;background:#4a7bd0}
section.video{border-top:2px solid #ccc;padding:.6em 0}
video,img.player{max-width:480px;max-height:270px;background:#000;display:block;margin:.4em 0}
ol.timeline{display:flex;flex-wrap:wrap;gap:6px;list-style:none;padding:0;margin:.4em 0}
li.clip{width:168px;overflow-wrap:anywhere;border:2px solid #ddd;border-radius:4px;padding:3px;cursor:pointer;font-size:12px}
li.clip.event{border-color:#e07b00;background:#fff4e5}
li.clip img{display:block;width:160px;height:auto;min-height:40px;background:#eee}
li.clip .near{font-size:11px;color:#555}
ol.shots{display:flex;gap:3px;list-style:none;padding:0;margin:.4em 0;overflow-x:auto}
li.shot{flex:0 0 auto;width:96px;border:1px solid #bbb;border-radius:3px;padding:2px;cursor:pointer;font-size:11px;color:#444}
li.shot img{display:block;width:96px;height:auto;min-height:24px;background:#eee}
li.shot[data-kind=cut]{border-left:3px solid #333}li.shot[data-kind=fade]{border-left:3px solid #777}
li.shot[data-kind=dissolve]{border-left:3px dashed #777}
.hidden{display:none!important}code{font-size:12px}
"""

_SCRIPT = """
const box = document.getElementById('search');
function filter() {
  const q = box.value.trim().toLowerCase();
  document.querySelectorAll('[data-labels]').forEach(el => {
    el.classList.toggle('hidden', q !== '' && !el.dataset.labels.toLowerCase().includes(q));
  });
  document.querySelectorAll('section.video').forEach(s => {
    const shown = s.querySelectorAll('li.clip:not(.hidden)').length;
    s.classList.toggle('hidden', q !== '' && shown === 0);
  });
}
if (box) box.addEventListener('input', filter);  // label and failure pages have none
document.querySelectorAll('li.clip, li.shot').forEach(li => li.addEventListener('click', ev => {
  if (ev.target.tagName === 'A') return;
  const player = li.closest('section').querySelector('video');
  if (!player) return;
  // Seek only: a playing player plays on from there, a paused one waits for play.
  player.currentTime = parseFloat(li.dataset.start);
}));
const jump = document.getElementById('jump');
if (jump) jump.addEventListener('change', () => {
  const n = parseInt(jump.value, 10);
  if (n >= 1 && n <= parseInt(jump.max, 10)) location.href = String(n).padStart(5, '0') + '.html';
});
"""


def _shown(text: str) -> str:
    """``text`` HTML-escaped, cut to SHOWN_CHARS characters (an ellipsis where cut)."""
    if len(text) > SHOWN_CHARS:
        text = text[: SHOWN_CHARS - 1] + "…"
    return html.escape(text, True)


def player_html(uri: str) -> str:
    """The page's player for ``uri``: a ``<video>``, an ``<img>`` for a GIF (browsers
    animate GIFs in ``<img>`` and play none in ``<video>``; clip clicks then do not seek),
    a note for a container no browser plays (``BROWSER_PLAYS``), or one where the browser
    cannot reach it (or the URI is too long to be one)."""
    url = playable_url(uri) if len(uri) <= 4 * SHOWN_CHARS else None
    if not url:
        return f"<p>not playable in a browser: <code>{_shown(uri)}</code></p>"
    extension = os.path.splitext(uri.split("?")[0].lower())[1]
    if extension == ".gif":
        return f"<img class=player src='{html.escape(url, True)}' alt='{_shown(uri)}'>"
    if extension not in BROWSER_PLAYS:
        return (
            f"<p>browsers do not play {html.escape(extension or 'this file')}: the clips' "
            f"thumbnails below show it. <a href='{html.escape(url, True)}'>the file</a></p>"
        )
    return f"<video controls preload=metadata src='{html.escape(url, True)}'></video>"


def playable_url(uri: str) -> Optional[str]:
    """A URL a browser's ``<video>`` can load for ``uri``: ``file://`` for a local path,
    the URI itself for http(s); None for other schemes (``gs://``, ``s3://``, ...)."""
    if uri.startswith(("https://", "http://", "file://")):
        return uri
    if "://" in uri:
        return None
    return Path(os.path.abspath(uri)).as_uri()


def _page(title: str, body: list[str], root: str) -> str:
    return "".join(
        [
            "<!doctype html><html lang=en><meta charset=utf-8>",
            # No network: a CSP that forbids every remote fetch makes a slip visible.
            "<meta http-equiv=Content-Security-Policy content=\"default-src 'self' file: "
            "'unsafe-inline'; img-src 'self' file: data:; media-src * file: data: blob:\">",
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style>",
            f"<nav><a href='{root}index.html'>archive</a></nav>",
            *body,
            f"<script>{_SCRIPT}</script></html>",
        ]
    )


def _hue(label: str) -> int:
    return zlib.crc32(label.encode()) % 360


def write_site(
    output: str,
    site_dir: str,
    videos_per_page: int = 50,
    failures_per_page: int = 500,
    clips_per_label: int = 100,
    neighbours_max_clips: int = 50_000,
) -> dict:
    """Write the explorer of index ``output`` into the local folder ``site_dir``.

    Returns counts (``videos``, ``clips``, ``failures``, ``video_pages``,
    ``largest_page_bytes``). Nearest clips are precomputed (exact cosine, numpy) when
    the index holds at most ``neighbours_max_clips`` clips with embeddings; above that
    they are left out and the index page says so.
    """
    site = Path(site_dir)
    for sub in ("videos", "labels", "failures", "thumbs"):
        shutil.rmtree(site / sub, ignore_errors=True)
        (site / sub).mkdir(parents=True, exist_ok=True)
    con = query.connect(output)
    columns = {row[0] for row in con.execute("DESCRIBE raw_clips").fetchall()}
    con.execute(
        "CREATE TABLE video_rank AS SELECT video_id, uri, "
        "row_number() OVER (ORDER BY video_id, uri) - 1 AS rank FROM videos"
    )
    num_videos = con.execute("SELECT count(*) FROM video_rank").fetchall()[0][0]
    num_clips = con.execute("SELECT count(*) FROM clips").fetchall()[0][0]
    num_failures = con.execute("SELECT count(*) FROM failures").fetchall()[0][0]
    pages = max(1, -(-num_videos // videos_per_page))
    neighbours, neighbour_note = (
        _neighbours(con, neighbours_max_clips, videos_per_page)
        if EMBEDDING in columns
        else ({}, "no clip embeddings in this index: no nearest clips")
    )
    largest = 0
    for page, videos in _video_pages(output, videos_per_page, THUMBNAIL in columns):
        text = _video_page(site, page, pages, videos, neighbours)
        largest = max(largest, _write(site / "videos" / f"{page:05d}.html", text))
    if num_videos == 0:
        _write(site / "videos" / "00001.html", _page("videos", ["<p>No videos.</p>"], "../"))
    largest = max(largest, _label_pages(con, site, clips_per_label, videos_per_page))
    failure_pages = max(1, -(-num_failures // failures_per_page))
    largest = max(largest, _failure_pages(con, site, failures_per_page, failure_pages))
    largest = max(
        largest,
        _index_page(con, site, output, num_videos, num_clips, num_failures, pages, neighbour_note),
    )
    return {
        "videos": num_videos,
        "clips": num_clips,
        "failures": num_failures,
        "video_pages": pages,
        "largest_page_bytes": largest,
    }


def _write(path: Path, text: str) -> int:
    data = text.encode()
    path.write_bytes(data)
    return len(data)


def _neighbours(con, max_clips: int, per_page: int) -> tuple[dict, str]:
    """``(video_id, uri, clip_index) -> [(video_id, clip_index, start_s, page, similarity)]``."""
    count = con.execute(f"SELECT count(*) FROM clips WHERE {EMBEDDING} IS NOT NULL").fetchall()[0][
        0
    ]
    if count == 0:
        return {}, "no clip embeddings in this index: no nearest clips"
    if count > max_clips:
        return {}, (
            f"{count} clips with embeddings: nearest clips are not precomputed above "
            f"{max_clips} (use video-index similar)"
        )
    rows = con.execute(
        "SELECT c.video_id, c.uri, c.clip_index, c.start_s, r.rank, c.embedding FROM clips c "
        "JOIN video_rank r USING (video_id, uri) WHERE c.embedding IS NOT NULL"
    ).fetchall()
    vectors = np.asarray([row[5] for row in rows], dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    video_of = np.asarray([row[4] for row in rows])
    found: dict = {}
    for start in range(0, len(rows), 1024):
        sims = vectors[start : start + 1024] @ vectors.T
        sims[video_of[start : start + 1024, None] == video_of[None, :]] = -np.inf
        top = np.argsort(-sims, axis=1, kind="stable")[:, :NEIGHBOURS]
        for i, order in enumerate(top, start):
            found[rows[i][:3]] = [
                (
                    rows[j][0],
                    rows[j][2],
                    rows[j][3],
                    rows[j][4] // per_page + 1,
                    float(sims[i - start, j]),
                )
                for j in order
                if np.isfinite(sims[i - start, j])
            ]
    return found, f"nearest clips from other videos: exact cosine over {count} clip embeddings"


def _video_pages(output: str, per_page: int, thumbnails: bool) -> Iterator[tuple[int, list]]:
    """(page number from 1, [(video row, [clip rows], [event rows], [shot rows])]) in
    video_id order.

    Four ordered streams (videos, clips, segments, shots) merged by (video_id, uri), each on
    a connection of its own (DuckDB runs one result at a time per connection).
    """
    videos = query.connect(output).execute(
        "SELECT video_id, uri, duration_s, labels, scores, num_clips FROM videos "
        "ORDER BY video_id, uri"
    )
    thumbnail = THUMBNAIL if thumbnails else "NULL::BLOB"
    clips = _merged(
        query.connect(output)
        .sql(
            f"SELECT video_id, uri, clip_index, start_s, end_s, labels, scores, {thumbnail} "
            "FROM clips ORDER BY video_id, uri, clip_index"
        )
        .to_arrow_reader(4096)
    )
    events = _merged(
        query.connect(output)
        .sql(
            "SELECT video_id, uri, label, start_s, end_s, max_score FROM segments "
            "ORDER BY video_id, uri, start_s, label"
        )
        .to_arrow_reader(4096)
    )
    shots = _merged(
        query.connect(output)
        .sql(
            "SELECT video_id, uri, shot_index, start_s, end_s, kind, thumbnail FROM shots "
            "ORDER BY video_id, uri, shot_index"
        )
        .to_arrow_reader(1024)
    )
    page, batch = 1, []
    while True:
        chunk = videos.fetchmany(per_page - len(batch))
        if not chunk:
            break
        for video in chunk:
            key = (video[0], video[1])
            batch.append((video, clips.take(key), events.take(key), shots.take(key)))
        if len(batch) == per_page:
            yield page, batch
            page, batch = page + 1, []
    if batch:
        yield page, batch


class _merged:
    """Rows ordered by (video_id, uri), taken a video at a time in the same order."""

    def __init__(self, reader):
        self._rows = _rows(reader)
        self._head = next(self._rows, None)

    def take(self, key: tuple[str, str]) -> list[tuple]:
        # DuckDB orders VARCHAR by bytes, which for UTF-8 is Python's code point order.
        while self._head is not None and (self._head[0], self._head[1]) < key:
            self._head = next(self._rows, None)  # rows of a video with no standing row
        taken = []
        while self._head is not None and (self._head[0], self._head[1]) == key:
            taken.append(self._head)
            self._head = next(self._rows, None)
        return taken


def _rows(reader) -> Iterator[tuple]:
    for record_batch in reader:
        columns = [record_batch.column(i).to_pylist() for i in range(record_batch.num_columns)]
        yield from zip(*columns)


def _video_page(site: Path, page: int, pages: int, videos: list, neighbours: dict) -> str:
    thumbs = site / "thumbs" / f"{page:05d}"
    body = [
        f"<h1>videos, page {page} of {pages}</h1>",
        "<nav>",
        f"<a href='{page - 1:05d}.html'>previous</a>" if page > 1 else "<span>previous</span>",
        f"<a href='{page + 1:05d}.html'>next</a>" if page < pages else "<span>next</span>",
        f"<label>page <input id=jump type=number min=1 max={pages} value={page}></label>",
        "</nav>",
        "<p><input id=search type=search placeholder='filter by label' autocomplete=off></p>",
    ]
    for number, (video, clips, events, shots) in enumerate(videos):
        video_id, uri, duration, labels, scores, _ = video
        labels, scores = labels or [], scores or []
        top = ", ".join(f"{html.escape(name)} {p:.2f}" for name, p in zip(labels[:3], scores[:3]))
        all_labels = {label for clip in clips for label in (clip[5] or [])[:3]} | set(labels[:3])
        body.append(
            f"<section class=video id='v{number}' data-video='{_shown(video_id)}'>"
            f"<h2>{_shown(video_id)}</h2><p>{top}"
            f"{f' &middot; {duration:.1f} s' if duration is not None else ''}</p>"
        )
        body.append(player_html(uri))
        if shots:
            body.append(_shot_strip(shots, thumbs, page, number))
        if events:
            body.append(
                "<p class=events>events: "
                + ", ".join(
                    f"<span style='color:hsl({_hue(e[2])},55%,35%)'>{html.escape(e[2])}</span> "
                    f"{e[3]:.1f}–{e[4]:.1f} s ({e[5]:.2f})"
                    for e in events
                )
                + "</p>"
            )
        body.append("<ol class=timeline>")
        for clip in clips:
            _, _, clip_index, start_s, end_s, clip_labels, clip_scores, thumbnail = clip
            clip_labels, clip_scores = clip_labels or [], clip_scores or []
            label = clip_labels[0] if clip_labels else ""
            # What the search box matches: the top label, and any other likely one.
            searched = [n for i, (n, p) in enumerate(zip(clip_labels, clip_scores))
                        if i == 0 or p >= SEARCH_MIN_SCORE]  # fmt: skip
            # In an event: its top label is that of an event that spans the clip.
            event = any(e[2] == label and e[3] <= start_s and end_s <= e[4] for e in events)
            starts_event = any(e[2] == label and e[3] == start_s for e in events)
            img = ""
            if thumbnail:
                name = f"{number}-{clip_index}.jpg"
                (thumbs / name).parent.mkdir(exist_ok=True)
                (thumbs / name).write_bytes(thumbnail)
                img = f"<img src='../thumbs/{page:05d}/{name}' alt=''>"
            near = neighbours.get((video_id, uri, clip_index), [])
            near_html = "".join(
                f"<br><a href='{target_page:05d}.html#c-{_anchor(other, other_clip)}'>"
                f"{_shown(other)} @{other_start:.1f}s</a> {sim:.2f}"
                for other, other_clip, other_start, target_page, sim in near
            )
            body.append(
                f"<li class='clip{' event' if event else ''}' id='c-{_anchor(video_id, clip_index)}'"
                f" data-start='{start_s:.3f}' data-labels='{html.escape(' | '.join(searched), True)}'"
                f" style='border-top:4px solid hsl({_hue(label)},55%,45%)'>{img}"
                f"{start_s:.1f}–{end_s:.1f} s<br><b>{html.escape(label)}</b>"
                f" {clip_scores[0] if clip_scores else 0:.2f}"
                f"{' <i>event</i>' if starts_event else ''}"
                f"{f'<div class=near>like:{near_html}</div>' if near else ''}</li>"
            )
        body.append("</ol>")
        if not clips:
            body.append(
                f"<p data-labels='{html.escape(' | '.join(all_labels), True)}'>no clips</p>"
            )
        body.append("</section>")
    return _page(f"videos {page}", body, "../")


def _shot_strip(shots: list[tuple], thumbs: Path, page: int, number: int) -> str:
    """A video's shots in order: middle frame, start-end seconds, the starting boundary."""
    items = []
    for _, _, shot_index, start_s, end_s, kind, thumbnail in shots:
        img = ""
        if thumbnail:
            name = f"{number}-s{shot_index}.jpg"
            thumbs.mkdir(parents=True, exist_ok=True)
            (thumbs / name).write_bytes(thumbnail)
            img = f"<img src='../thumbs/{page:05d}/{name}' alt=''>"
        kind = html.escape(kind or "", True)
        items.append(
            f"<li class=shot data-start='{start_s:.3f}' data-kind='{kind}' "
            f"title='shot {shot_index}: {kind} at {start_s:.2f} s'>{img}"
            f"{start_s:.1f}–{end_s:.1f} s<br>{kind}</li>"
        )
    return f"<p class=shots-title>shots ({len(shots)})</p><ol class=shots>{''.join(items)}</ol>"


def _anchor(video_id: str, clip_index: int) -> str:
    return f"{zlib.crc32(video_id.encode()):08x}-{clip_index}"


def _label_pages(con, site: Path, per_label: int, per_page: int) -> int:
    rows = con.sql(f"""
        SELECT c.labels[1] AS label, c.video_id, c.clip_index, c.start_s, c.end_s, c.scores[1],
               r.rank
        FROM clips c JOIN video_rank r USING (video_id, uri)
        WHERE c.labels[1] IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY label ORDER BY c.scores[1] DESC) <= {per_label}
        ORDER BY label, c.scores[1] DESC
        """).to_arrow_reader(4096)
    largest, current, lines = 0, None, []
    number = 0

    def flush() -> int:
        text = _page(
            current,
            [
                f"<h1>{html.escape(current)}</h1><p>best clips with this top label</p><table>",
                *lines,
                "</table>",
            ],
            "../",
        )
        return _write(site / "labels" / f"{_label_file(current)}", text)

    for label, video_id, clip_index, start_s, end_s, score, rank in _rows(rows):
        if label != current:
            if current is not None:
                largest = max(largest, flush())
            current, lines, number = label, [], number + 1
        page = rank // per_page + 1
        lines.append(
            f"<tr><td>{score:.2f}</td><td><a href='../videos/{page:05d}.html#c-"
            f"{_anchor(video_id, clip_index)}'>{_shown(video_id)}</a></td>"
            f"<td>{start_s:.1f}–{end_s:.1f} s</td></tr>"
        )
    if current is not None:
        largest = max(largest, flush())
    return largest


def _label_file(label: str) -> str:
    return f"{zlib.crc32(label.encode()):08x}.html"


def _failure_pages(con, site: Path, per_page: int, pages: int) -> int:
    reader = con.sql(
        "SELECT video_id, uri, stage, error_type, message FROM failures ORDER BY video_id, uri"
    ).to_arrow_reader(per_page)
    largest, page, rows = 0, 0, []

    def flush(page: int) -> int:
        body = [
            f"<h1>failures, page {page} of {pages}</h1><nav>",
            f"<a href='{page - 1:05d}.html'>previous</a>" if page > 1 else "",
            f"<a href='{page + 1:05d}.html'>next</a>" if page < pages else "",
            "</nav><table><tr><th>video</th><th>stage</th><th>error</th><th>reason</th></tr>",
            *rows,
            "</table>",
        ]
        return _write(site / "failures" / f"{page:05d}.html", _page("failures", body, "../"))

    for video_id, uri, stage, error_type, message in _rows(reader):
        rows.append(
            f"<tr><td title='{_shown(uri)}'>{_shown(video_id)}</td>"
            f"<td>{html.escape(stage or '')}</td><td>{html.escape(error_type or '')}</td>"
            f"<td>{html.escape((message or '')[:500])}</td></tr>"
        )
        if len(rows) == per_page:
            page += 1
            largest = max(largest, flush(page))
            rows = []
    if rows or page == 0:
        page += 1
        largest = max(largest, flush(page))
    return largest


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _index_page(con, site, output, videos, clips, failures, pages, neighbour_note) -> int:
    histogram = con.execute(
        f"SELECT labels[1] AS label, count(*) AS n FROM clips WHERE labels[1] IS NOT NULL "
        f"GROUP BY label ORDER BY n DESC, label LIMIT {MAX_HISTOGRAM}"
    ).fetchall()
    most = histogram[0][1] if histogram else 1
    rows = [
        f"<tr data-labels='{html.escape(label, True)}'><td><a href='labels/{_label_file(label)}'>"
        f"{html.escape(label)}</a></td><td>{n}</td><td><span class=bar style='width:"
        f"{300 * n / most:.0f}px'></span></td></tr>"
        for label, n in histogram
    ]
    body = [
        f"<h1>video-index: {html.escape(output)}</h1>",
        f"<p>{_count(videos, 'video')}, {_count(clips, 'clip')}, "
        f"{_count(failures, 'failure')}. "
        f"<a href='videos/00001.html'>videos</a> ({_count(pages, 'page')}) &middot; "
        f"<a href='failures/00001.html'>failures</a></p>",
        f"<p>{html.escape(neighbour_note)}</p>",
        "<h2>labels (clips by top-1 label)</h2>",
        "<p><input id=search type=search placeholder='filter by label' autocomplete=off></p>",
        "<table id=histogram><tr><th>label</th><th>clips</th><th></th></tr>",
        *rows,
        "</table>",
    ]
    return _write(site / "index.html", _page("video-index", body, ""))


def main_json(result: dict) -> str:
    return json.dumps(result)
