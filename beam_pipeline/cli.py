"""The ``video-index`` command: ``index``, ``models``, ``show``, ``query``, ``search``, ``compact``.

``video-index index --input X --output DIR [flags] [Beam flags]`` runs the job;
flags it does not know are an error, not silently dropped. Local runs show live
progress on stderr; every run ends with the counts and a table of top labels.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import threading
import time
from typing import Optional, Sequence

from beam_pipeline.terminal import escape

PROG = "video-index"


class UsageError(Exception):
    """Printed as one line, exit status 2."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    commands = {
        "index": _index,
        "models": _models,
        "show": _show,
        "query": _query,
        "search": _search,
        "labels": _labels,
        "similar": _similar,
        "shots": _shots,
        "compact": _compact,
        "upgrade": _upgrade,
        "repair": _repair,
    }
    if command not in commands:
        print(
            f"{PROG}: error: unknown command {command!r} ({', '.join(commands)})", file=sys.stderr
        )
        return 2
    from beam_pipeline.query_cli import CommandError

    try:
        return commands[command](rest)
    except (UsageError, CommandError) as error:
        line = _damaged_index_line(command, rest, error)
        print(escape(f"{PROG} {command}: error: {line or error}"), file=sys.stderr)
        return 1 if line else 2
    except JobFailed as error:
        print(escape(f"{PROG} {command}: error: {error}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`video-index show OUT | head`): stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:
        line = _damaged_index_line(command, rest, error)
        if line is None:
            raise
        print(escape(f"{PROG} {command}: error: {line}"), file=sys.stderr)
        return 1


# The commands that read an index named by their first argument.
_READERS = ("show", "query", "search", "similar", "shots", "compact")


def _damaged_index_line(command: str, rest: list[str], error: BaseException) -> Optional[str]:
    """For a reader that failed on a data file Lance cannot read: one line naming the
    file and the repair (``query_cli.damaged_line``); None for any other error."""
    from video_index.table import TableDamaged

    if isinstance(error, TableDamaged):  # its versions lost: never read as empty
        return f"{str(error).splitlines()[0]}; the other tables are untouched"
    if command not in _READERS or not rest or rest[0].startswith("-"):
        return None
    if "LanceError" not in str(error) and "lance" not in type(error).__module__:
        return None
    from beam_pipeline.query_cli import damaged_line

    return damaged_line(rest[0])


_USAGE = f"""usage: {PROG} COMMAND [flags]

commands:
  index   --input X --output DIR [--model M] [...]  index a folder, glob, manifest or video
  models                                          list the registered models
  show    DIR [--html FILE] [--export DIR]        summarise an index; draw it; export it
  query   DIR "SQL" [--format table|json|csv]    SQL over the views videos, clips,
                                                  shots, cues, failures, segments
  search  DIR WORDS [--label L] [--clips]         ranked moments of what the words mean
  labels  "WORDS" [--limit N] [--format json]     the classes nearest in meaning to WORDS
  similar DIR --video ID [--at S] [--limit N]     the clips most like a moment (embeddings)
  shots   DIR --video ID [--format csv|edl|json]  a video's shot list (CMX 3600 EDL for editors)
  compact DIR                                     fold small files into few; clean old versions
  upgrade DIR                                     convert an index of the old layout
  repair  DIR                                     remove unreadable data files (then re-run)

'{PROG} index --help' lists the index flags; Beam flags (--runner, ...) pass through."""


def _index(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        _print_index_help()
        return 0
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # Beam and TF talk a lot at WARNING about things a user cannot act on.
        # 3, not 2: TF logs cuInit failing as an ERROR on every machine without a GPU.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # gRPC (Beam's multi_processing workers) logs each fork() at INFO.
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        # ERROR too: a failed job is summarised in one line (run_index); --verbose shows all.
        logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
        # FFmpeg's complaints about a corrupt packet: the row's decode_errors counts them.
        logging.getLogger("libav").setLevel(logging.CRITICAL)
        for handler in logging.getLogger().handlers:
            handler.addFilter(_drop_beam_noise)

    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipeline.options import ConfigError, IndexConfig

    _reject_unknown_flags(argv)
    options = PipelineOptions(_escape_paths(argv))
    from beam_pipeline.runner import unreachable_by_workers

    problem = unreachable_by_workers(options)
    if problem:  # before anything reaches for storage (a staging bucket, the input)
        raise UsageError(problem)
    try:
        config = IndexConfig.from_options(options)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    from beam_pipeline.runner import is_local

    return run_index(config, options, local=is_local(options))


def _escape_paths(argv: list[str]) -> list[str]:
    """Arguments with local names that are not UTF-8 as escaped ``file://`` URIs.

    The shell hands such bytes over as they are (Python holds them as surrogates);
    Beam encodes its options as UTF-8 and would fail on them.
    """
    from video_index.storage import escape_local_path, is_utf8

    def escape(arg: str) -> str:
        if is_utf8(arg):
            return arg
        if arg.startswith("--") and "=" in arg:
            flag, value = arg.split("=", 1)
            return f"{flag}={escape_local_path(value)}"
        return escape_local_path(arg)

    return [escape(arg) for arg in argv]


_BEAM_NOISE = (
    # RunInference logs this from the root logger on every bundle where the `resource`
    # module lacks what it wants; it says nothing about the job.
    "Resource module is not available",
    # Beam's BigQuery client package, imported on the way to its GCS filesystem, logs
    # this from the root logger where google-apitools is not installed (no BigQuery here).
    "apitools not found, and bigquery client libraries",
)


def _drop_beam_noise(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(noise in message for noise in _BEAM_NOISE)


def _reject_unknown_flags(argv: list[str]) -> None:
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    import beam_pipeline.options  # noqa: F401 - registers VideoIndexOptions

    class Parser(_BeamArgumentParser):
        def error(self, message):  # one line, not argparse's usage block
            raise UsageError(message)

    parser = Parser(allow_abbrev=False)
    seen = {}
    for cls in PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(argv)
    if unknown:
        raise UsageError(f"unknown argument {unknown[0]!r} (see 'video-index index --help')")


def _print_index_help() -> None:
    from beam_pipeline.options import VideoIndexOptions

    parser = argparse.ArgumentParser(prog=f"{PROG} index", add_help=False)
    VideoIndexOptions._add_argparse_args(parser)
    parser.add_argument("--verbose", action="store_true", help="log Beam and TF at INFO")
    text = parser.format_help()
    print(text + "\nAny Beam flag also works, e.g. --runner, --direct_num_workers.")


def run_index(config, options, local: bool = True) -> int:
    """Run the job for ``config``; print progress (local) and the summary."""
    import apache_beam as beam

    from beam_pipeline import interrupt, report
    from beam_pipeline.models.prepare import PrepareError, prepare
    from beam_pipeline.pipeline import build_pipeline
    from beam_pipeline.runner import runner_for

    started = time.time()  # the run's time includes building, converting, calibrating
    spec = config.spec
    try:
        prepared = prepare(config, local=local, say=_say)
    except PrepareError as error:
        raise UsageError(str(error)) from None
    config = config.prepared(prepared)
    from apache_beam.options.pipeline_options import TestOptions

    dry_run = options.view_as(TestOptions).dry_run
    if not dry_run:
        _prepare_tables(config)
    progress = progress_path = None
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="video-index-") as tmp:
        if local:
            progress_path = os.path.join(tmp, "progress")
            progress = threading.Thread(
                target=_show_progress, args=(progress_path, stop), daemon=True
            )
            progress.start()
        try:
            with interrupt.watch():
                p = beam.Pipeline(runner=runner_for(options), options=options)
                build_pipeline(p, config, progress_path)
                result = p.run()
                result.wait_until_finish()
        except Exception as error:  # noqa: BLE001 - one line; the trace with --verbose
            if interrupt.was_interrupted():  # Ctrl-C inside a step: Beam wrapped it
                raise KeyboardInterrupt from None
            if logging.getLogger().isEnabledFor(logging.INFO):
                raise
            raise JobFailed(_failure_line(error, spec)) from None
        finally:
            stop.set()
            if progress is not None:
                progress.join()
        elapsed = time.time() - started
    if dry_run:
        print(f"{PROG}: dry run: the job was built and translated, not run")
        return 0
    skipped = _counter(result, "manifest_skipped")
    left_out = (
        _counter(result, "manifest_filtered"),
        _string_set(result, "manifest_filtered_names"),
    )
    from video_index import table as tables

    # The standing rule, in the tables: a changed video's older rows and the orphans of
    # this and every ended run go, so any engine reads exactly the standing rows.
    tables.settle(config.output, config.run_id, report.ended_runs(config.output))
    summary = report.load_summary(config.output, run_id=config.run_id)
    record = report.write_run_record(config, summary, elapsed, skipped=skipped, left_out=left_out)
    print(report.format_summary(summary, config.output, record), file=sys.stdout)
    if config.compact_after_files:
        from beam_pipeline.query_cli import compact_if_many_files

        compact_if_many_files(config.output, config.compact_after_files, PROG)
    if config.embeddings:
        # After the compaction: it changes the file list, which would leave the
        # approximate index stale (never wrong, but `similar` would scan exactly).
        from beam_pipeline.query_cli import refresh_similar_index

        refresh_similar_index(config.output, PROG)
    return 0


def _prepare_tables(config) -> None:
    """Before the workers commit: an index in the old Parquet layout becomes Lance
    tables (``video_index.table.upgrade``), and every table exists with the columns
    this run writes. Raises UsageError on a table of another model or a damaged one."""
    from beam_pipeline.pipeline import table_schemas
    from video_index import table as tables
    from video_index.upgrade import upgrade_if_old

    try:
        written = upgrade_if_old(config.output)
        tables.ensure_tables(config.output, table_schemas(config))
    except (tables.TableMismatch, tables.TableDamaged) as error:
        raise UsageError(str(error)) from None
    if written is not None:
        rows = ", ".join(f"{n} {t}" for t, n in written.items())
        _say(f"upgraded {config.output} to {tables.format_version()} tables: {rows}")


class JobFailed(RuntimeError):
    """The pipeline itself failed (not one video: those become failure rows)."""


def _failure_line(error: BaseException, spec) -> str:
    """One line for a failed job: the step, the error's last line and, for the model's
    step, where the model came from."""
    from beam_pipeline.models.prepare import MODEL_PATH_HINT, last_line

    reason = last_line(error)
    match = re.match(r"^(.*?)\s*\[while running '([^']+)'\]$", reason)
    step = ""
    if match:
        reason, step = match.group(1), match.group(2)
    text = f"the job failed{f' in {step}' if step else ''}: {type(error).__name__}: {reason}"
    if "RunInference" in step:
        text += f" (loading or running model {spec.name} from {spec.source}: {MODEL_PATH_HINT})"
    return text + "; --verbose shows the full trace"


def _say(line: str) -> None:
    """A step of the job's preparation, on stderr, as one line of printable text."""
    print(f"{PROG}: {escape(line)}", file=sys.stderr, flush=True)


def _counter(result, name: str) -> int:
    """A Beam counter's committed total (attempted where the runner has no committed)."""
    from apache_beam.metrics.metric import MetricsFilter

    try:
        found = result.metrics().query(MetricsFilter().with_name(name))["counters"]
    except Exception:  # noqa: BLE001 - a runner without metrics: say nothing
        return 0
    total = 0
    for counter in found:
        value = counter.committed if counter.committed is not None else counter.attempted
        total += value or 0
    return total


def _string_set(result, name: str) -> list[str]:
    """A Beam string-set metric's values, sorted (empty where the runner has none)."""
    from apache_beam.metrics.metric import MetricsFilter

    try:
        found = result.metrics().query(MetricsFilter().with_name(name))["string_sets"]
    except Exception:  # noqa: BLE001 - a runner without metrics: say nothing
        return []
    values: set[str] = set()
    for metric in found:
        value = metric.committed if metric.committed is not None else metric.attempted
        values.update(value or ())
    return sorted(values)


def _show_progress(path: str, stop: threading.Event) -> None:
    from transforms import metrics as m

    tty = sys.stderr.isatty()
    started = time.monotonic()
    last_line = 0.0
    while True:
        done = stop.wait(0.5)
        totals = m.read_progress(path)
        elapsed = max(time.monotonic() - started, 1e-6)
        line = (
            f"listed {totals[m.LISTED]} | decoded {totals[m.DECODED]} | "
            f"indexed {totals[m.INDEXED]} | failed {totals[m.FAILED]} | "
            f"clips {totals[m.CLASSIFIED]}/{totals[m.CLIPS]} "
            f"({totals[m.CLASSIFIED] / elapsed:.2f} clips/s) | {elapsed:.0f}s"
        )
        if tty:
            print(f"\r{line}\033[K", end="" if not done else "\n", file=sys.stderr, flush=True)
        elif done or time.monotonic() - last_line >= 15:
            print(line, file=sys.stderr, flush=True)
            last_line = time.monotonic()
        if done:
            return


def _models(argv: list[str]) -> int:
    from beam_pipeline.models.registry import registered

    as_json = "--json" in argv
    rows = [spec.summary() for spec in registered().values()]
    if as_json:
        print(json.dumps(rows, indent=1))
        return 0
    header = f"{'name':<22} {'kind':<7} {'px':>4} {'fps':>5} {'frames':>6} {'clip_s':>6} {'classes':>7}  source"
    print(header)
    for spec in registered().values():
        print(
            f"{spec.name:<22} {spec.kind:<7} {spec.size:>4} {spec.fps:>5g} "
            f"{spec.frames_per_clip:>6} {spec.clip_seconds:>6.2f} {spec.num_classes:>7}  {spec.source}"
        )
    return 0


def _show(argv: list[str]) -> int:
    from beam_pipeline import report

    parser = argparse.ArgumentParser(prog=f"{PROG} show")
    parser.add_argument("output", help="the index folder (the --output of a run)")
    parser.add_argument(
        "--html",
        help="a FOLDER: write the explorer site there (beam_pipeline.explorer); "
        "a path ending in .html: the one-page report",
    )
    parser.add_argument("--top", type=int, default=50, help="videos shown in the table")
    parser.add_argument(
        "--html-videos", type=int, default=500, help="videos drawn in the HTML report"
    )
    parser.add_argument(
        "--export",
        metavar="DIR",
        help="write the standing rows as DIR/{videos,clips,shots,cues,failures}.parquet",
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    for flag, value in (("--top", args.top), ("--html-videos", args.html_videos)):
        if value < 0:
            raise UsageError(f"{flag} must be at least 0")
    from beam_pipeline.query_cli import check_index_path

    check_index_path(args.output)
    try:
        summary = report.load_summary(args.output)
    except (FileNotFoundError, NotADirectoryError) as error:
        raise UsageError(str(error)) from None
    print(report.format_summary(summary, args.output, None, limit=args.top))
    try:
        if args.html and args.html.endswith(".html"):
            report.write_html(summary, args.output, args.html, html_videos=args.html_videos)
            print(f"report: {args.html}")
        elif args.html:
            from beam_pipeline.explorer import write_site

            written = write_site(args.output, args.html)
            print(
                f"explorer: {os.path.join(args.html, 'index.html')} ({written['video_pages']} "
                f"video pages, largest page {written['largest_page_bytes']} bytes)"
            )
        if args.export:
            for path in report.export_tables(summary, args.export):
                print(f"exported: {path}")
    except OSError as error:  # where the page or tables were to go: not writable, a file
        raise UsageError(f"cannot write {error.filename or ''}: {error.strerror}") from None
    return 0


def _query(argv: list[str]) -> int:
    from beam_pipeline.query_cli import query_command

    return query_command(argv, PROG)


def _search(argv: list[str]) -> int:
    from beam_pipeline.query_cli import search_command

    return search_command(argv, PROG)


def _labels(argv: list[str]) -> int:
    from beam_pipeline.labels_cli import labels_command

    return labels_command(argv, PROG)


def _similar(argv: list[str]) -> int:
    from beam_pipeline import similar_cli

    try:
        return similar_cli.run(argv, prog=f"{PROG} similar")
    except similar_cli.SimilarError as error:
        raise UsageError(str(error)) from None


def _upgrade(argv: list[str]) -> int:
    from beam_pipeline.query_cli import upgrade_command

    return upgrade_command(argv, PROG)


def _repair(argv: list[str]) -> int:
    from beam_pipeline.query_cli import repair_command

    return repair_command(argv, PROG)


def _shots(argv: list[str]) -> int:
    from beam_pipeline.shots_cli import shots_command

    return shots_command(argv, PROG)


def _compact(argv: list[str]) -> int:
    from beam_pipeline.query_cli import compact_command

    return compact_command(argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
