"""Query de-duplication at scale: `--queries` candidate queries through the query stage's `accept` (the
near-duplicate check, then the tasks written to a real SQLite store), five per request as a run asks.

    python bench/synthesis_dedup.py [--queries 20000] [--dim 384]

The vectors are shaped like MiniLM embeddings of a run's queries (tests/support/query_vectors.py: topic
clusters, every seventh a near-copy of an earlier query), so no model is loaded and only the check and the
store are timed. It prints the seconds for all queries, for the first and the last thousand (a check that
grows with the run would make the last thousand much slower), and how long writers were kept waiting: the
write lock is taken only for the inserts. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=384, help="embedding size (all-MiniLM-L6-v2: 384)")
    parser.add_argument("--per-request", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=0.9)
    args = parser.parse_args()

    from review.store import Store
    from synthesis.context import Context
    from synthesis.queries import QueryStage
    from synthesis.tasks import SynthesisConfig, new_run
    from tests.support.query_vectors import queries_like

    vectors = queries_like(args.queries, args.dim)
    with tempfile.TemporaryDirectory(prefix="mat-dedup-") as folder:
        store = Store(Path(folder) / "mat.db")
        config = SynthesisConfig(tasks=args.queries, dedup=args.threshold, embedder="hash")
        run_id = new_run(store, config)
        stage = QueryStage(Context(store, run_id, config, llm=None), hand_on=lambda task: None)
        checking = _timed(stage.index, "novel")
        writing = _timed(store.db, "transaction", context=True)
        stamps = []
        started = time.perf_counter()
        for n, first in enumerate(range(0, args.queries, args.per_request)):
            batch = vectors[first:first + args.per_request]
            stage.accept(n, [(f"query {first + i}", ["csv"]) for i in range(len(batch))], batch)
            stamps.append((first + len(batch), time.perf_counter() - started))
        seconds = time.perf_counter() - started
        kept = store.db.value("SELECT COUNT(*) FROM synthesis_tasks")

    def span(low: int, high: int) -> float:
        inside = [t for done, t in stamps if low < done <= high]
        before = [t for done, t in stamps if done <= low]
        return (inside[-1] - (before[-1] if before else 0.0)) if inside else 0.0

    first_k, last_k = span(0, 1000), span(args.queries - 1000, args.queries)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.queries} queries ({args.dim}-d, {args.per_request} per request, threshold {args.threshold}): "
          f"{seconds:.1f} s, {kept} kept, {args.queries - kept} dropped as near-duplicates")
    print(f"the check {checking['seconds']:.1f} s, the write transactions {writing['seconds']:.1f} s "
          f"(longest {writing['longest'] * 1000:.1f} ms: writers wait at most that long)")
    print(f"first 1000 queries {first_k:.2f} s, last 1000 {last_k:.2f} s; peak RSS {peak_mb:.0f} MB; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(json.dumps({"queries": args.queries, "dim": args.dim, "seconds": round(seconds, 2), "kept": kept,
                      "check_s": round(checking["seconds"], 2), "write_s": round(writing["seconds"], 2),
                      "longest_write_ms": round(writing["longest"] * 1000, 1), "first_1000_s": round(first_k, 3),
                      "last_1000_s": round(last_k, 3), "peak_rss_mb": round(peak_mb)}))


def _timed(owner: object, name: str, *, context: bool = False) -> dict:
    """Wrap `owner.name` to add up the seconds spent in it (in its `with` block, for a context manager)."""
    import contextlib

    original, totals = getattr(owner, name), {"seconds": 0.0, "longest": 0.0}

    def note(since: float) -> None:
        spent = time.perf_counter() - since
        totals["seconds"] += spent
        totals["longest"] = max(totals["longest"], spent)

    if context:
        @contextlib.contextmanager
        def wrapped(*args, **kwargs):
            since = time.perf_counter()
            with original(*args, **kwargs) as value:
                yield value
            note(since)
    else:
        def wrapped(*args, **kwargs):
            since = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                note(since)
    setattr(owner, name, wrapped)
    return totals


if __name__ == "__main__":
    main()
