"""The read-side commands: ``query`` (SQL over the views) and ``search`` (ranked moments).

Both read through ``video_index.query`` (DuckDB over the standing rows), stream their
results and print them as a table, JSON (a list of row objects) or CSV.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from typing import Any, Callable, Iterator, Optional, Sequence, TextIO

from beam_pipeline.terminal import escape
from video_index.class_match import describe
from video_index.query import DEFAULT_MEMORY_LIMIT
from video_index.segments import DEFAULT_MAX_GAP_CLIPS, DEFAULT_MIN_SCORE, segments_sql

FORMATS = ("table", "json", "csv")
_BATCH_ROWS = 2048


class CommandError(Exception):
    """A bad argument or query: the command prints it as one line and exits 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise CommandError(message)


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    return _Parser(prog=prog, description=description)


def index_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A command's parser whose first argument is the index it reads."""
    p = parser(prog, description)
    p.add_argument("output", help="the index folder or gs:// / s3:// URL (a run's --output)")
    return p


def add_index_flags(p: argparse.ArgumentParser) -> None:
    """Flags every read command shares: the segments thresholds and DuckDB's memory."""
    p.add_argument(
        "--segment-min-score",
        type=float,
        default=DEFAULT_MIN_SCORE,
        help=f"segments: a clip's top-1 score must be at least this (default {DEFAULT_MIN_SCORE})",
    )
    p.add_argument(
        "--segment-max-gap",
        type=int,
        default=DEFAULT_MAX_GAP_CLIPS,
        help="segments: clips that may lie between two members of one event "
        f"(default {DEFAULT_MAX_GAP_CLIPS})",
    )
    add_memory_limit(p, "bigger work spills to disk")


def add_memory_limit(p: argparse.ArgumentParser, what: str) -> None:
    """``--memory-limit SIZE``: DuckDB's memory limit; ``what`` says what it bounds."""
    p.add_argument(
        "--memory-limit",
        type=memory_size,
        default=DEFAULT_MEMORY_LIMIT,
        help=f"DuckDB's memory limit; {what} (default {DEFAULT_MEMORY_LIMIT})",
    )


def memory_size(text: str) -> str:
    """argparse type of ``--memory-limit``: a size (``video_index.query.check_memory_limit``)."""
    from video_index.query import check_memory_limit

    try:
        return check_memory_limit(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def connect_kwargs(args: argparse.Namespace) -> dict:
    return {
        "min_score": args.segment_min_score,
        "max_gap_clips": args.segment_max_gap,
        "memory_limit": args.memory_limit,
    }


def check_index_path(output: str) -> None:
    """Raises CommandError where ``output`` is a local file, or a local folder that holds
    none of an index's tables (videos.lance, clips.lance, ...), runs/ or the folders of
    an index not yet upgraded (videos/, clips/, failures/)."""
    from video_index.table import SPECS

    if "://" in output:
        return
    if os.path.isfile(output):
        raise CommandError(f"{output} is a file, not an index folder (a run's --output)")
    names = [f"{table}.lance" for table in SPECS] + ["runs", "videos", "clips", "failures"]
    if os.path.isdir(output) and not any(
        os.path.isdir(os.path.join(output, name)) for name in names
    ):
        raise CommandError(
            f"{output} is not an index: it holds no videos/, clips/, failures/ or runs/ "
            "folder, nor their .lance tables (give a run's --output)"
        )


def open_index(output: str, args: argparse.Namespace, work: Callable, **options):
    """``work(con)`` on a connection to ``output`` (``options``: more of
    ``video_index.query.connect``'s); errors become CommandError."""
    import duckdb

    from video_index.query import with_retry

    check_index_path(output)

    try:
        return with_retry(output, work, **connect_kwargs(args), **options)
    except OSError as error:  # no such index, a file where a folder should be, ...
        raise CommandError(str(error).splitlines()[0]) from None
    except ValueError as error:
        raise CommandError(str(error).splitlines()[0]) from None
    except duckdb.Error as error:
        raise CommandError(_first_line(error)) from None


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


# --- output --------------------------------------------------------------------------


def _batches(result) -> Iterator[list[tuple]]:
    while True:
        rows = result.fetchmany(_BATCH_ROWS)
        if not rows:
            return
        yield rows


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return str(value)


def _csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(_json_value(value), default=str)
    return str(value)


def write_rows(
    columns: Sequence[str],
    batches: Iterator[list[tuple]],
    fmt: str,
    out: TextIO,
    max_rows: Optional[int] = None,
    formatters: Optional[dict[str, Callable[[Any], str]]] = None,
) -> int:
    """Rows as ``fmt`` (table, json, csv) to ``out``, streamed; returns rows written.

    ``max_rows`` bounds the table format only (an aligned table needs its rows in
    memory to size its columns); json and csv stream every row. ``formatters``
    (column -> text) apply to the table format, whose text is escaped for a terminal
    (``beam_pipeline.terminal``); json and csv keep values exact.
    """
    formatters = formatters or {}
    count = 0
    if fmt == "json":
        out.write("[")
        for rows in batches:
            for row in rows:
                item = {c: _json_value(v) for c, v in zip(columns, row)}
                out.write(("\n" if count == 0 else ",\n") + json.dumps(item, default=str))
                count += 1
        out.write("\n]\n" if count else "]\n")
        return count
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for rows in batches:
            for row in rows:
                writer.writerow([_csv(v) for v in row])
                count += 1
        return count
    shown: list[list[str]] = []
    more = False
    for rows in batches:
        for row in rows:
            if max_rows is not None and len(shown) >= max_rows:
                more = True
                break
            shown.append([escape(formatters.get(c, _text)(v)) for c, v in zip(columns, row)])
        if more:
            break
    columns = [escape(c) for c in columns]  # a query's own names may hold anything
    widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip() + "\n")
    for r in shown:
        out.write("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")
    if more:
        out.write("... more rows: --format csv or json, or --output FILE, gives them all\n")
    return len(shown)


# --- query -----------------------------------------------------------------------------


def query_command(argv: list[str], prog: str) -> int:
    """Run SQL against the views videos, clips, failures and segments (the rows that
    stand) and raw_videos, raw_clips, raw_failures (every row on disk)."""
    p = index_parser(f"{prog} query", query_command.__doc__)
    p.add_argument("sql", help='the query, e.g. "SELECT count(*) FROM videos"')
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--output", dest="to", metavar="FILE", help="write the result to FILE "
                   "(.parquet or .csv; local or a bucket) instead of printing it")  # fmt: skip
    p.add_argument("--max-rows", type=int, default=100, help="rows shown by --format table")
    add_index_flags(p)
    args = p.parse_args(argv)
    if args.to and not args.to.lower().endswith((".parquet", ".csv")):
        raise CommandError(f"--output must end in .parquet or .csv: {args.to}")

    def work(con):
        if args.to:
            relation = con.sql(args.sql)
            if relation is None:
                raise CommandError("the query gives no rows to write")
            _write_file(con, relation, args.to)
            print(f"wrote {args.to}")
            return 0
        result = con.execute(args.sql)
        if result.description is None:
            return 0  # a statement without a result (SET, CREATE VIEW, ...)
        columns = [d[0] for d in result.description]
        write_rows(columns, _batches(result), args.format, sys.stdout, args.max_rows)
        return 0

    return open_index(args.output, args, work)


def _write_file(con, relation, dest: str) -> None:
    import fsspec

    fs, _ = fsspec.core.url_to_fs(dest)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol not in ("file", "local") and not con.filesystem_is_registered(protocol):
        con.register_filesystem(fs)
    if dest.lower().endswith(".parquet"):
        relation.write_parquet(dest, compression="zstd")
    else:
        relation.write_csv(dest, header=True)


# --- search ----------------------------------------------------------------------------


def hms(seconds: float, up: bool = False) -> str:
    """Seconds as H:MM:SS (rounded down, or up with ``up``: a span stays covered)."""
    whole = math.ceil(seconds - 1e-9) if up else math.floor(seconds + 1e-9)
    whole = max(whole, 0)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _sql_list(values: Sequence[str]) -> str:
    from video_index.table import sql_string

    return "(" + ", ".join(sql_string(v) for v in values) + ")"


def _registered_classes(con) -> tuple[set[str], bool]:
    """The class names of the index's registered models, and whether every model of the
    index is a registered one (then those are all the classes its rows can hold)."""
    from beam_pipeline.models.registry import registered

    models = {m for (m,) in con.execute("SELECT DISTINCT model FROM raw_videos").fetchall()}
    specs = registered()
    classes = {label for name in models & set(specs) for label in specs[name].labels}
    return classes, bool(models) and models <= set(specs)


def _check_labels(labels: Sequence[str], registered: tuple[set[str], bool]) -> None:
    """Raises CommandError for a ``--label`` that no model of the index has (a typo or
    another case would otherwise read as "no moments"); checked only where every model
    of the index is a registered one (``registered``: ``_registered_classes``), whose
    classes are known without a scan."""
    if not labels:
        return
    import difflib

    known, complete = registered
    if not complete:
        return
    classes = sorted(known)
    for label in labels:
        if label not in classes:
            close = difflib.get_close_matches(label.lower(), classes, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CommandError(
                f"--label {label!r} is not a class of this index's model{hint}; "
                "`video-index labels WORDS` lists classes by meaning"
            )


def index_classes(con, registered: Optional[tuple[set[str], bool]] = None) -> set[str]:
    """Class names the index knows: its registered models' label lists and, where a
    model of one's own made some of it, every label in the videos' top-k (a registered
    model's top-k holds only its own classes: no scan of the videos then).
    ``registered``: ``_registered_classes(con)`` where the caller has it already."""
    classes, complete = registered or _registered_classes(con)
    classes = set(classes)
    if complete:
        return classes
    found = con.execute(
        "SELECT DISTINCT label FROM (SELECT unnest(labels) AS label FROM raw_videos)"
    ).fetchall()
    classes.update(label for (label,) in found if label is not None)
    return classes


def search_sql(labels: Sequence[str], moment: str = "events", shots: bool = False) -> str:
    """Ranked moments of these classes, best first: ``moment`` is ``events`` (segments),
    ``clips`` (single clips) or ``shots`` (a shot, ranked by its best clip of a class).

    ``shots``: the index's clips carry ``shot_index`` and ``cue`` (a run with shots); then,
    as in the ``segments`` view, events stay inside their shot and clips in a technical
    cue are no moment of any kind. ``moment="shots"`` needs it. Parameters:
    ``$min_score``, ``$limit``. The label filter is applied to the raw clips first
    (``standing_sql``); an event's members all carry its label, so the events of these
    labels are exactly the segments view's rows for them.
    """
    from video_index.query import standing_sql

    where = f"labels[1] IN {_sql_list(labels)}" + (" AND cue IS NULL" if shots else "")
    clip_rows = standing_sql("clips", where)
    columns = "video_id, uri, label, start_s, end_s, score"
    if moment == "clips":
        moments = f"""
            SELECT video_id, uri, labels[1] AS label, start_s, end_s, scores[1]::DOUBLE AS score
            FROM ({clip_rows}) WHERE scores[1] >= $min_score"""
    elif moment == "shots":
        if not shots:
            raise ValueError("shots need clips with shot_index")
        # A shot's moment is its whole span; its label and score are its best clip's.
        columns = "video_id, uri, shot_index, kind, label, start_s, end_s, score"
        moments = f"""
            SELECT b.video_id, b.uri, b.shot_index, s.kind, b.label, s.start_s, s.end_s, b.score
            FROM (
                SELECT video_id, uri, run_id, shot_index,
                       arg_max(labels[1], scores[1]) AS label, max(scores[1])::DOUBLE AS score
                FROM ({clip_rows})
                WHERE scores[1] >= $min_score AND shot_index IS NOT NULL
                GROUP BY video_id, uri, run_id, shot_index
            ) AS b
            JOIN shots AS s ON s.video_id = b.video_id AND s.uri = b.uri
                AND s.shot_index = b.shot_index AND s.run_id = b.run_id"""
    else:
        moments = f"""
            SELECT video_id, uri, label, start_s, end_s, max_score AS score
            FROM ({segments_sql('(' + clip_rows + ')', 'shots' if shots else None)})"""
    return f"""
        SELECT {columns} FROM ({moments})
        WHERE score >= $min_score ORDER BY score DESC, video_id, start_s LIMIT $limit"""


def _choose(query: str, known: set[str]):
    from video_index.class_match import UnknownClass, choose_classes
    from video_index.text_encoder import EncoderMissing

    try:
        return choose_classes(query, known)
    except (UnknownClass, EncoderMissing) as error:
        raise CommandError(str(error)) from None


def search_command(argv: list[str], prog: str) -> int:
    """Moments of a class, best first: events (runs of clips with that top label),
    single clips, or shots. Only rows that stand are searched; clips in a technical
    cue (black, colour bars, a still picture) are skipped."""
    p = index_parser(f"{prog} search", search_command.__doc__)
    p.add_argument(
        "query",
        nargs="?",
        default="",
        help="what to find in your words (e.g. 'someone kicking a ball'), words of a class "
        "name (cricket), or a class name in double quotes",
    )
    p.add_argument("--label", action="append", default=[], help="an exact class name (repeatable)")
    p.add_argument("--clips", action="store_true", help="rank single clips, not events")
    p.add_argument(
        "--shots",
        action="store_true",
        help="rank shots (camera takes) by their best clip of the class; a shot's whole span "
        "is the moment (an index made with shots)",
    )
    p.add_argument(
        "--min-score",
        type=float,
        default=DEFAULT_MIN_SCORE,
        help="a clip's top-1 score must be at least this; events are made of such clips "
        f"(default {DEFAULT_MIN_SCORE})",
    )
    p.add_argument("--limit", type=int, default=20, help="moments shown (default 20)")
    p.add_argument("--format", choices=FORMATS, default="table")
    add_index_flags(p)
    args = p.parse_args(argv)
    if not args.query.strip() and not args.label:
        raise CommandError("give words of what to find, or --label CLASS")
    if args.limit < 1:
        raise CommandError("--limit must be at least 1")
    if args.clips and args.shots:
        raise CommandError("give --clips or --shots, not both")
    if any(a.split("=", 1)[0] == "--segment-min-score" for a in argv):
        # Refused, not ignored: search builds its events from the clips that pass.
        raise CommandError(
            "--segment-min-score: search builds events from the clips at or above "
            "--min-score; give --min-score"
        )
    args.segment_min_score = args.min_score  # events are built from the clips that pass

    def work(con):
        registered = _registered_classes(con)
        _check_labels(args.label, registered)
        # The classes the index knows only matter to words; --label names them exactly.
        known = index_classes(con, registered) if args.query.strip() else set()
        choice = _choose(args.query, known)
        labels = sorted(set(args.label) | set(choice.labels))
        note = sys.stderr if args.format != "table" else sys.stdout
        if not labels:
            print(f"no class matches {args.query!r} ({len(known)} classes known)", file=note)
            return 1
        kind = "clips" if args.clips else "shots" if args.shots else "events"
        with_shots = {"shot_index", "cue"} <= {
            row[0] for row in con.execute("DESCRIBE raw_clips").fetchall()
        }
        if args.shots and not with_shots:
            raise CommandError(
                "this index has no shots (indexed with --no-shots, by a whole-video model, or "
                "before shots were detected); search its events or --clips"
            )
        if choice.how == "meaning":
            print(escape(describe(choice)), file=note)
        named = sorted(set(args.label)) if choice.how == "meaning" else labels
        if named:
            print(escape(f"classes matched: {', '.join(named)}"), file=note)
        print(f"{kind}, best first (top-1 score >= {args.min_score:g}):", file=note)
        from video_index.indexes import label_candidates
        from video_index.table import has_tables

        if has_tables(args.output):
            # Lance finds the clips of these labels through the table's label index, and
            # their videos' rows by video_id; the SQL below applies the exact rules to
            # those rows, not to a scan of every clip and video.
            def kth_score(narrowed: dict):
                # The score of the limit-th best moment in these rows (the last column).
                from video_index.query import connect_tables

                con = connect_tables(narrowed, **connect_kwargs(args))
                params = {"min_score": args.min_score, "limit": args.limit}
                rows = con.execute(search_sql(labels, kind, with_shots), params).fetchall()
                return rows[-1][-1] if len(rows) >= args.limit else None

            return open_index(
                args.output,
                args,
                lambda con: rank(con, labels, kind, with_shots),
                narrow=lambda tables_at: label_candidates(
                    tables_at, labels, args.min_score, args.limit, kth_score
                ),
            )
        return rank(con, labels, kind, with_shots)

    def rank(con, labels: list[str], kind: str, with_shots: bool) -> int:
        note = sys.stderr if args.format != "table" else sys.stdout
        result = con.execute(
            search_sql(labels, kind, with_shots),
            {"min_score": args.min_score, "limit": args.limit},
        )
        columns = [d[0] for d in result.description]
        if args.format == "table" and args.shots:
            rows = (
                [(v, str(shot), f"{hms(s)}-{hms(e, up=True)}", how, lab, f"{score:.3f}")
                 for v, _, shot, how, lab, s, e, score in batch]  # fmt: skip
                for batch in _batches(result)
            )
            header = ("video", "shot", "time", "kind", "label", "score")
            shown = write_rows(header, rows, "table", sys.stdout)
        elif args.format == "table":
            rows = (
                [(v, f"{hms(s)}-{hms(e, up=True)}", lab, f"{score:.3f}")
                 for v, _, lab, s, e, score in batch]  # fmt: skip
                for batch in _batches(result)
            )
            shown = write_rows(("video", "time", "label", "score"), rows, "table", sys.stdout)
        else:
            shown = write_rows(columns, _batches(result), args.format, sys.stdout)
        if not shown:
            print(f"no {kind} at or above {args.min_score:g}", file=note)
        return 0

    return open_index(args.output, args, work)


# --- compact -----------------------------------------------------------------------------


def compact_command(argv: list[str], prog: str) -> int:
    """Fold the index's small data files into few, update its search indexes, and
    remove the files of versions older than the retention window; readers keep their
    snapshot and runs may go on meanwhile. An index in the old layout is upgraded first."""
    p = index_parser(f"{prog} compact", compact_command.__doc__)
    p.add_argument(
        "--retention-days",
        type=float,
        default=7.0,
        help="keep versions this many days for time travel and readers (default 7)",
    )
    add_memory_limit(p, "used while an index of the old layout is upgraded")
    args = p.parse_args(argv)
    if args.retention_days < 0:
        raise CommandError("--retention-days must be at least 0")
    check_index_path(args.output)
    before = _tables_or_upgrade(args.output, f"{prog} compact", args.memory_limit)
    from video_index import table as tables

    try:
        files = tables.compact(args.output, retention_s=args.retention_days * 86400)
    except (OSError, tables.TableDamaged) as error:
        raise CommandError(str(error).splitlines()[0]) from None
    print(
        f"compacted {before} files into {sum(files.values())}: "
        + ", ".join(f"{t} {n}" for t, n in files.items())
    )
    refresh_similar_index(args.output, f"{prog} compact")
    return 0


def _tables_or_upgrade(output: str, prog: str, memory_limit: str = DEFAULT_MEMORY_LIMIT) -> int:
    """The index's data files; an index in the old Parquet layout is upgraded to the
    tables first (one line says so). Raises CommandError where there is no index."""
    from video_index import table as tables
    from video_index.upgrade import upgrade_if_old

    try:
        written = upgrade_if_old(output, memory_limit=memory_limit)
    except (OSError, tables.TableDamaged) as error:
        raise CommandError(str(error).splitlines()[0]) from None
    if written is not None:
        rows = ", ".join(f"{n} {t}" for t, n in written.items())
        print(f"{prog}: upgraded {output} to {tables.format_version()} tables: {rows}")
    if not tables.has_tables(output):
        raise CommandError(f"no index at {output}")
    _add_first_columns(output, prog)
    return tables.file_count(output)


def _add_first_columns(output: str, prog: str) -> list[str]:
    """``video_index.table.add_first_columns`` for a command, saying what it added;
    errors become CommandError."""
    from video_index import table as tables

    try:
        added = tables.add_first_columns(output)
    except (OSError, tables.TableDamaged) as error:
        raise CommandError(str(error).splitlines()[0]) from None
    if added:
        print(f"{prog}: added {', '.join(added)} to {output} (the top-1 of each row's lists)")
    return added


def compact_if_many_files(output: str, threshold: int, prog: str) -> None:
    """The job's end: compact when the index has more than ``threshold`` data files."""
    from video_index import table as tables

    count = tables.file_count(output)
    if count > threshold:
        files = tables.compact(output)
        print(
            f"compacted {count} small files into {sum(files.values())} "
            f"(over --compact-after-files {threshold})"
        )


def refresh_similar_index(output: str, prog: str) -> None:
    """Keep the search indexes in step after a run or a compaction. An index in Lance
    tables: build the missing label, lookup and vector indexes and fold new rows into
    the others (``video_index.indexes.ensure_indexes``); the layout before it: rebuild
    `similar`'s approximate side index where stale. A failure only warns: searches
    then scan the rows no index covers."""
    from video_index.nearest import refresh_ann_index
    from video_index.table import has_tables

    if has_tables(output):
        from video_index.indexes import ensure_indexes

        try:
            done = ensure_indexes(output)
        except Exception as error:  # noqa: BLE001 - the index's rows stand either way
            print(f"{prog}: warning: search indexes not updated: {error}", file=sys.stderr)
            return
        if done:
            print("search indexes: " + ", ".join(f"{k} {v}" for k, v in done.items()))
        return
    try:
        count = refresh_ann_index(output)
    except Exception as error:  # noqa: BLE001 - the index's rows stand either way
        print(f"{prog}: warning: approximate index not rebuilt: {error}", file=sys.stderr)
        return
    if count is not None:
        print(f"approximate index of {count} clips: {output.rstrip('/')}/_similar/")


def upgrade_command(argv: list[str], prog: str) -> int:
    """Convert an index in the old layout (Parquet run files per table) into the
    index's tables, with the same standing rows; the Parquet files are left in place.
    An index in tables gets the columns this version adds (the clips' top-1 label and
    score, which search by label reads)."""
    p = index_parser(f"{prog} upgrade", upgrade_command.__doc__)
    add_memory_limit(p, "used while the standing rows are read")
    args = p.parse_args(argv)
    check_index_path(args.output)
    from video_index import table as tables

    if tables.has_tables(args.output):
        if not _add_first_columns(args.output, f"{prog} upgrade"):
            print(f"{args.output} is already in {tables.format_version()} tables: nothing to do")
        return 0
    _tables_or_upgrade(args.output, f"{prog} upgrade", args.memory_limit)
    return 0


def repair_command(argv: list[str], prog: str) -> int:
    """Remove the data files that cannot be read, with the rows that depended on them,
    so every command works again; the next run indexes those videos again. Run it
    while no run writes to the index."""
    p = index_parser(f"{prog} repair", repair_command.__doc__)
    args = p.parse_args(argv)
    check_index_path(args.output)
    from video_index import table as tables

    if not tables.has_tables(args.output):
        raise CommandError(f"no index at {args.output} (or one of the old layout: upgrade it)")

    try:
        result = tables.repair(args.output)
    except tables.TableDamaged as error:
        raise CommandError(str(error).splitlines()[0]) from None
    if not result["removed"]:
        print(f"no damaged data files in {args.output}: nothing to do")
        return 0
    for item in result["removed"]:
        print(escape(f"removed {item.path} ({item.table}: {item.error})"))
    print(f"{result['videos_to_redo']} videos lost rows: the next run indexes them again")
    return 0


def damaged_line(output: str) -> str | None:
    """One line naming the index's first unreadable data file and the command that
    repairs it, or None where every data file reads (the error was something else)."""
    from video_index import table as tables

    try:
        found = tables.damaged(output)
    except Exception:  # noqa: BLE001 - the caller reports its own error then
        return None
    if not found:
        return None
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return (
        f"{found[0].path} cannot be read ({found[0].error}){more}: "
        f"`video-index repair {output}` removes it, and the next run indexes its videos again"
    )
