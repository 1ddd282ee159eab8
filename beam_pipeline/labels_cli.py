"""``video-index labels "QUERY"``: the classes a query means, nearest in meaning first.

The class names are a registered model's (``--model``, the default model's if not
given); similarity is the sentence encoder's cosine (``video_index.text_encoder``).
"""

from __future__ import annotations

import sys

from beam_pipeline.query_cli import CommandError, parser, write_rows


def labels_command(argv: list[str], prog: str) -> int:
    from beam_pipeline.models.registry import DEFAULT_MODEL, registered

    p = parser(
        f"{prog} labels",
        "The model's classes nearest in meaning to your words, with their cosine "
        "similarity (-1..1): what `search` takes when no class name holds your words.",
    )
    p.add_argument("query", help="what to find, in your words: 'someone kicking a ball'")
    p.add_argument("--limit", type=int, default=5, help="classes shown (default 5)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"a registered model (default {DEFAULT_MODEL})"
    )
    args = p.parse_args(argv)
    if args.limit < 1:
        raise CommandError("--limit must be at least 1")
    if not args.query.strip():
        raise CommandError("give words of what to find")
    specs = registered()
    if args.model not in specs:
        raise CommandError(f"unknown model {args.model!r} (video-index models lists them)")
    from video_index.text_encoder import EncoderMissing, nearest_labels

    try:
        found = nearest_labels(args.query, specs[args.model].labels, limit=args.limit)
    except EncoderMissing as error:
        raise CommandError(str(error)) from None
    rows = [(label, round(similarity, 4)) for label, similarity in found]
    write_rows(("label", "similarity"), iter([rows]), args.format, sys.stdout)
    return 0
