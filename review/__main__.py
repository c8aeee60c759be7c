"""`python -m review import|export|stats`: the store from the command line.

Bad input ends with one line on stderr and exit status 2; nothing is half-done.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.cli import run_main
from review.errors import StoreError


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
    exporting.add_argument("--format", required=True, choices=("mmtraj", "messages", "hf"))
    exporting.add_argument("--out", required=True, type=Path)
    exporting.add_argument("--status", choices=("approved", "rejected", "pending", "skipped"))

    stats = commands.add_parser("stats", help="counts, tool usage and decisions as JSON")
    stats.add_argument("--db", required=True, type=Path)
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
        elif args.command == "export":
            if not store.files_dir.is_dir() and args.format == "messages":
                print(f"warning: {store.files_dir} is missing: images stored with the database are gone",
                      file=sys.stderr)
            report = formats.export(store, args.format, args.out, args.status)
            print(f"{args.out}: {report.summary()}")
        else:
            print(json.dumps(store.stats(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
