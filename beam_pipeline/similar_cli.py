"""``video-index similar OUT --video ID [--at SECONDS]``: the clips most like a moment.

Prints the nearest standing clips across the archive by cosine similarity of their
embeddings to the clip of ``ID`` at ``SECONDS`` (or to the video's mean embedding),
the query's own video left out unless ``--include-same-video``. An index in Lance
tables is searched by Lance (``video_index.clip_vectors``) through the clips table's
vector index, rows committed since its build exactly; ``--exact`` compares every
embedding; ``--build-index`` builds or updates the vector index. An index not yet
upgraded (``video-index upgrade``) keeps the faiss side index (``video_index.nearest``)
where it is in step with the files, else an exact DuckDB scan.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from typing import Optional, Sequence

from beam_pipeline.query_cli import write_rows
from beam_pipeline.terminal import escape
from video_index.clip_vectors import ClipVectors
from video_index.indexes import ensure_vector_index
from video_index.nearest import (
    SimilarError,
    ann_neighbours,
    ann_state,
    build_ann_index,
    connect,
    exact_neighbours,
    query_clip,
    query_embedding,
)
from video_index.table import has_tables

FORMATS = ("table", "json", "csv")
_COLUMNS = ("video_id", "uri", "clip_index", "start_s", "end_s", "similarity")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, not argparse's usage block
        raise SimilarError(message)


def run(argv: Sequence[str], prog: str = "video-index similar") -> int:
    """The command; returns the exit status. Raises ``SimilarError`` on bad input."""
    parser = _Parser(prog=prog)
    parser.add_argument("output", help="the index folder (the --output of a run)")
    parser.add_argument("--video", help="video_id of the query clip's video")
    parser.add_argument("--at", type=float, help="seconds into the video (default: whole video)")
    parser.add_argument("--limit", type=int, default=10, help="clips returned (default 10)")
    parser.add_argument("--format", default="table", choices=FORMATS)
    parser.add_argument("--include-same-video", action="store_true")
    parser.add_argument("--exact", action="store_true", help="exact scan, even with an index")
    parser.add_argument(
        "--build-index", action="store_true", help="build or update the vector index and exit"
    )
    args = parser.parse_args(argv)
    lance = has_tables(args.output)
    if args.build_index:
        if lance:
            done = ensure_vector_index(args.output, min_rows=0)
            done = done or "nothing to build (up to date, or too few embedded clips to train)"
            print(f"vector index of {args.output}/clips.lance: {done}")
            return 0
        count = build_ann_index(args.output)
        print(f"approximate index of {count} clips written under {args.output}/_similar/")
        return 0
    if not args.video:
        raise SimilarError("--video is required")
    if args.limit < 1:
        raise SimilarError("--limit must be at least 1")
    # An index in Lance tables: Lance reads the embeddings and keeps the vector index
    # (rows since its build searched exactly). The layout before it: DuckDB and faiss.
    source = ClipVectors(args.output) if lance else connect(args.output)
    if args.at is None:
        query = (source.query_embedding if lance else partial(query_embedding, source))(
            args.video
        )
        described = f"the mean embedding of video {args.video}"
    else:
        clip = (source.query_clip if lance else partial(query_clip, source))(args.video, args.at)
        query = clip.embedding
        described = (
            f"clip {clip.clip_index} of video {args.video} "
            f"({clip.start_s:.2f}-{clip.end_s:.2f} s, holding --at {args.at:g})"
        )
    exclude = None if args.include_same_video else args.video
    if lance:
        found = source.neighbours(query, args.limit, exclude, exact=args.exact)
    elif not args.exact and ann_state(args.output) is None:
        found = ann_neighbours(args.output, query, args.limit, exclude)
    else:
        found = exact_neighbours(source, query, args.limit, exclude)
    # What the query is: in the table's first line; on stderr beside json and csv, whose
    # stdout stays rows only, as query and search write them.
    header = f"clips most like {described}:"
    print(escape(header), file=sys.stdout if args.format == "table" else sys.stderr)
    rows = [tuple(getattr(n, name) for name in _COLUMNS) for n in found]
    write_rows(_COLUMNS, iter([rows]), args.format, sys.stdout, formatters=_FORMATTERS)
    return 0


_FORMATTERS = {
    "similarity": "{:.4f}".format,
    "start_s": "{:.2f}".format,
    "end_s": "{:.2f}".format,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except SimilarError as error:
        print(f"video-index similar: error: {error}", file=sys.stderr)
        return 2
