"""`python -m review import|export|stats|decide|pairs`: the store from the command line.

Bad input ends with one line on stderr and exit status 2; nothing is half-done.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.cli import run_main
from review.errors import StoreError
from review.preferences_export import PREFERENCE_FORMATS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m review", description="MM-Traj review store")
    commands = parser.add_subparsers(dest="command", required=True)

    importing = commands.add_parser("import", help="import MM-Traj records (JSON, JSONL, parquet, dataset folder, Hub id)")
    importing.add_argument("file", help="file, folder or Hugging Face dataset id")
    importing.add_argument("--db", required=True, type=Path)
    importing.add_argument("--images", type=Path, help="image folder or the release's files.zip")
    importing.add_argument("--source", help="source label (default: the file name)")

    exporting = commands.add_parser("export", help="export trajectories with edits applied")
    exporting.add_argument("--db", required=True, type=Path)
    exporting.add_argument("--format", required=True, choices=("mmtraj", "messages", "hf", *PREFERENCE_FORMATS),
                           help="trajectories (mmtraj, messages, hf) or the preference pairs review events give "
                                f"({', '.join(PREFERENCE_FORMATS)}; --out is then a folder)")
    exporting.add_argument("--out", required=True, type=Path)
    exporting.add_argument("--status", choices=("approved", "rejected", "pending", "skipped"))

    stats = commands.add_parser("stats", help="counts, tool usage and decisions as JSON")
    stats.add_argument("--db", required=True, type=Path)
    _decide_parser(commands)

    pairs = commands.add_parser("pairs", help="preference pairs the review events give, by source")
    pairs.add_argument("--db", required=True, type=Path)
    pairs.add_argument("--bleu", type=float, default=None,
                       help="drop sampler pairs whose sides reach this character BLEU (default SPORT's 0.3), unless "
                            "the rejected step failed")
    pairs.add_argument("--same", type=float, default=None,
                       help="drop people's pairs (edits, rejected vs approved) whose sides, whitespace normalized, "
                            "reach this BLEU (default 1.0: only identical ones)")
    return parser


def _decide_parser(commands) -> None:
    deciding = commands.add_parser(
        "decide", help="approve, reject or skip trajectories by id, or every pending one a filter matches",
        description="With ids, decide those. Without, decide every pending trajectory the filters match: the first "
                    "run only counts them (a dry run); add --yes to record. Each decision is a review event, "
                    "as on the page.")
    deciding.add_argument("ids", nargs="*", help="trajectory ids (none: use the filters)")
    deciding.add_argument("--db", required=True, type=Path)
    deciding.add_argument("--reviewer", required=True, help="who decides (recorded with each decision)")
    what = deciding.add_mutually_exclusive_group(required=True)
    what.add_argument("--approve", action="store_true")
    what.add_argument("--reject", nargs="+", metavar="REASON",
                      help="reason codes: irrelevant, tool_mismatch, bad_arguments, unresolved_error, wrong_answer, "
                           "hallucination, unsafe, other")
    what.add_argument("--skip", action="store_true")
    deciding.add_argument("--note", default="", help="kept with the decision")
    deciding.add_argument("--request-id", help="your id for this decision: running it again records nothing new")
    deciding.add_argument("--take-over", action="store_true",
                          help="with ids: take them over from whoever holds them first (recorded)")
    where = deciding.add_argument_group("filters, for a bulk decision of pending trajectories")
    where.add_argument("--verdict", help="the trajectory verifier's verdict (yes / no)")
    where.add_argument("--replay", choices=("reproduced", "differs", "not replayed"), help="what its replay found")
    where.add_argument("--source")
    where.add_argument("--tool", action="append", default=[], help="calls this tool (repeatable)")
    where.add_argument("--has-error", choices=("yes", "no"))
    where.add_argument("--min-steps", type=int)
    where.add_argument("--max-steps", type=int)
    where.add_argument("--search", default="", help="words in the task or answer")
    where.add_argument("--yes", action="store_true", help="record the bulk decision (without it: count only)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from review import formats
    from review.store import Store

    if args.command != "import" and not args.db.exists():
        raise StoreError(f"{args.db}: no such database")
    with Store(args.db) as store:
        if args.command == "decide":
            return _decide(store, args)
        if args.command == "import":
            report = store.import_file(args.file, source=args.source, images=args.images, progress=sys.stderr.isatty())
            print(f"{args.file}: {report.summary()}")
        elif args.command == "export" and args.format in PREFERENCE_FORMATS:
            _export_pairs(store, args)
        elif args.command == "pairs":
            _print_pairs(store, args.bleu, args.same)
        elif args.command == "export":
            if not store.files_dir.is_dir() and args.format == "messages":
                print(f"warning: {store.files_dir} is missing: images stored with the database are gone",
                      file=sys.stderr)
            report = formats.export(store, args.format, args.out, args.status)
            print(f"{args.out}: {report.summary()}")
        else:
            print(json.dumps(store.stats(), indent=2))
    return 0


def _decide(store, args: argparse.Namespace) -> int:
    from review.store import Filters

    decision = "approved" if args.approve else "skipped" if args.skip else "rejected"
    reasons = args.reject or []
    filters = Filters(verdict=args.verdict, replay=args.replay, source=args.source, tools=tuple(args.tool),
                      has_error=None if args.has_error is None else args.has_error == "yes",
                      min_steps=args.min_steps, max_steps=args.max_steps, search=args.search)
    if args.ids:
        if filters != Filters() or args.yes:
            raise StoreError("give trajectory ids or filters, not both")
        if args.request_id and len(args.ids) > 1:
            raise StoreError("--request-id names one decision: give one trajectory id with it")
        for trajectory_id in args.ids:
            if args.take_over:
                store.take_over(trajectory_id, args.reviewer)
            event = store.decide(trajectory_id, args.reviewer, decision, reasons, args.note,
                                 request_id=args.request_id)
            print(f"{trajectory_id}: {event.decision} by {event.reviewer} (event {event.id})")
        return 0
    matching = store.pending_ids(filters)
    if not args.yes:
        print(f"{len(matching)} pending trajectories match: they would be {decision}. "
              "Nothing was recorded (a dry run): add --yes to record.")
        return 0
    report = store.decide_many(matching, args.reviewer, decision, reasons, args.note)
    print(f"bulk decision: {report.summary(decision)}")
    return 0


def _export_pairs(store, args: argparse.Namespace) -> None:
    from review.preferences_export import export_pairs

    if args.status:
        raise StoreError("--status chooses trajectories; preference pairs come from every reviewed one")
    print(f"{args.out}: {export_pairs(store, args.format, args.out).summary()}")


def _print_pairs(store, threshold: float | None, same: float | None) -> None:
    from review.pairs import BLEU_THRESHOLD, SAME_THRESHOLD, describe_counts, pair_counts

    threshold = BLEU_THRESHOLD if threshold is None else threshold
    same = SAME_THRESHOLD if same is None else same
    print("\n".join(describe_counts(pair_counts(store, threshold, same), threshold, same)))


if __name__ == "__main__":
    sys.exit(main())
