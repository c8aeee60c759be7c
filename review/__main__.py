"""`python -m review import|export|stats|pairs`: the store from the command line.

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

    pairs = commands.add_parser("pairs", help="preference pairs the review events give, by source")
    pairs.add_argument("--db", required=True, type=Path)
    pairs.add_argument("--bleu", type=float, default=None,
                       help="drop pairs whose sides reach this BLEU (default SPORT's 0.3), unless the rejected failed")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from review import formats
    from review.store import Store

    if args.command != "import" and not args.db.exists():
        raise StoreError(f"{args.db}: no such database")
    with Store(args.db) as store:
        if args.command == "import":
            report = store.import_file(args.file, source=args.source, images=args.images, progress=sys.stderr.isatty())
            print(f"{args.file}: {report.summary()}")
        elif args.command == "export" and args.format in PREFERENCE_FORMATS:
            _export_pairs(store, args)
        elif args.command == "pairs":
            _print_pairs(store, args.bleu)
        elif args.command == "export":
            if not store.files_dir.is_dir() and args.format == "messages":
                print(f"warning: {store.files_dir} is missing: images stored with the database are gone",
                      file=sys.stderr)
            report = formats.export(store, args.format, args.out, args.status)
            print(f"{args.out}: {report.summary()}")
        else:
            print(json.dumps(store.stats(), indent=2))
    return 0


def _export_pairs(store, args: argparse.Namespace) -> None:
    from review.preferences_export import export_pairs

    if args.status:
        raise StoreError("--status chooses trajectories; preference pairs come from every reviewed one")
    print(f"{args.out}: {export_pairs(store, args.format, args.out).summary()}")


def _print_pairs(store, threshold: float | None) -> None:
    from review.pairs import BLEU_THRESHOLD, describe_counts, pair_counts

    threshold = BLEU_THRESHOLD if threshold is None else threshold
    print("\n".join(describe_counts(pair_counts(store, threshold), threshold)))


if __name__ == "__main__":
    sys.exit(main())
