"""`python -m eval contamination`: how much of a benchmark a training set already holds.

The overlap itself is computed in `review.contamination` (training needs the same check and may not
import `eval`); this module reads the two sides and prints what was found:

    python -m eval contamination --db data/mat.db --benchmark gta --benchmark-data ~/gta_dataset
    python -m eval contamination --data train.json --images release_images/ --benchmark gaia \\
        --benchmark-data ~/GAIA/2023/validation --json overlap.json

The training set is the store's approved trajectories (`--status` picks others; evaluation runs' trajectories
stored there are never counted as training data) or a release file. The benchmark is read as `python -m eval gta`
and `gaia` read it. A file that cannot be read is counted as not found, never hashed as something else.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from core.files import atomic_write
from eval.errors import EvalError
from review.contamination import NEAR, NGRAM, Overlap, Query, content_hash, overlap

if TYPE_CHECKING:
    from eval.benchmarks import BenchTask
    from review.store import Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    train = parser.add_argument_group("the training set (one of)")
    train.add_argument("--db", type=Path, help="the store: its approved trajectories (default: MAT_DB or data/mat.db)")
    train.add_argument("--status", default="approved",
                       help="with --db: trajectories with this review status, or 'any' (default: approved)")
    train.add_argument("--data", type=Path, help="a release file (JSON, JSONL, parquet) instead of the store")
    train.add_argument("--images", type=Path, help="with --data: the folder or zip of its images")
    bench = parser.add_argument_group("the benchmark")
    bench.add_argument("--benchmark", required=True, choices=("gta", "gaia"))
    bench.add_argument("--benchmark-data", type=Path,
                       help="GTA: the folder of dataset.json (or the file); GAIA: the folder of metadata.jsonl "
                            "(or the file; omit it for the Hub dataset)")
    bench.add_argument("--split", default="validation", choices=("validation", "test"), help="GAIA's split")
    parser.add_argument("--n", type=int, default=NGRAM, help=f"words in a shared n-gram (default {NGRAM})")
    parser.add_argument("--near", type=float, default=NEAR,
                        help=f"character 5-gram Jaccard similarity for a near duplicate (default {NEAR})")
    parser.add_argument("--show", type=int, default=20, help="overlapping pairs to print (default 20)")
    parser.add_argument("--json", type=Path, help="write the summary and every pair here")


def run_check(args: argparse.Namespace) -> int:
    from agent.config import Settings
    from eval.report import aligned
    from review.store import Store

    if args.n < 1 or not 0 < args.near <= 1:
        raise EvalError("--n must be at least 1 and --near between 0 and 1")
    if args.data is not None:
        result = check(file_queries(args.data, args.images), args.benchmark, args.benchmark_data, args.split,
                       n=args.n, near=args.near)
    else:
        db = args.db or Settings().db
        if not Path(db).is_file():
            raise EvalError(f"{db}: no such database (give --db, or --data for a release file)")
        with Store(db) as store:
            result = check(store_queries(store, None if args.status == "any" else args.status), args.benchmark,
                           args.benchmark_data, args.split, n=args.n, near=args.near)
    print(result.summary())
    if result.pairs:
        rows = [[p.benchmark_id, p.train_id, ", ".join(p.kinds), f"{p.similarity:.2f}", p.evidence[:70]]
                for p in result.pairs[: args.show]]
        print("\n".join(aligned([["benchmark query", "training query", "overlap", "similarity", "evidence"], *rows])))
        if len(result.pairs) > args.show:
            print(f"... and {len(result.pairs) - args.show} more pair(s) (--show, --json)")
    if args.json:
        with atomic_write(args.json) as out:
            out.write(json.dumps(asdict(result), indent=1, ensure_ascii=False))
        print(f"wrote {args.json}")
    return 0


def check(train: Iterator[Query], benchmark: str, data: Path | str | None, split: str = "validation", *,
          n: int = NGRAM, near: float = NEAR) -> Overlap:
    """Overlap of `train` with a benchmark read from `data` (as the eval commands read it)."""
    from eval.benchmarks import load

    loaded = load(benchmark, data, split)
    return overlap(train, [task_query(task) for task in loaded.tasks], name=benchmark_name(benchmark, split), n=n,
                   near=near)


def benchmark_name(benchmark: str, split: str | None) -> str:
    """How a report names the benchmark: GTA, or GAIA with its split."""
    return benchmark.upper() + (f" {split or 'validation'}" if benchmark == "gaia" else "")


def task_query(task: BenchTask) -> Query:
    """A benchmark task as a query: its question and the content hashes of those of its files that exist."""
    return _query(task.id, task.question, list(task.files))


def store_queries(store: Store, status: str | None = "approved") -> Iterator[Query]:
    """The store's curated trajectories (with reviewers' edits) as queries, with the content hashes of their images.

    Evaluation runs' trajectories are never among them: the store keeps them out of curation."""
    for detail in store.iter_details(status=status):
        refs = {ref.name: ref for ref in detail.images}
        paths = [refs[name].path if name in refs and not refs[name].missing else None
                 for name in detail.trajectory.task.images]
        yield _query(detail.id, detail.trajectory.task.text, paths)


def file_queries(path: Path, images: Path | None = None) -> Iterator[Query]:
    """A release file's records as queries; their images read from `images` (or the archive beside the file)."""
    from review.formats import check_record, image_reader, load

    loaded = load(path)
    reader = image_reader(images) if images is not None else loaded.images
    for index, record in enumerate(loaded.records):
        item = check_record(record, index)
        blobs = [reader.read(name) if reader is not None else None for name in item.trajectory.task.images]
        yield Query(item.record_id, item.trajectory.task.text, tuple(content_hash(b) for b in blobs if b is not None),
                    sum(b is None for b in blobs))


def _query(query_id: str, text: str, paths: list[Path | None]) -> Query:
    hashes, missing = [], 0
    for path in paths:
        try:
            hashes.append(content_hash(Path(path).read_bytes()))
        except (OSError, TypeError):
            missing += 1
    return Query(query_id, text, tuple(hashes), missing)
