"""Review store benchmark at the release's size: import seconds, p95 ms of paging, search and detail.

Synthesises 21,171 records from the sample (new ids, varied task text and answers, some
"no" verdicts), writes them as one release JSON file, imports it into a fresh database,
records some decisions, then times the queries the Review tab makes.

    .venv/bin/python bench/review_store.py [--records N] [--sample PATH] [--keep DIR]

Last line: JSON with the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from review.store import Filters, Store  # noqa: E402

RELEASE_SIZE = 21_171
WORDS = ("budget garden river museum recipe invoice chart poster station forecast marathon violin harbor "
         "battery lantern orchard galaxy ferry canyon bakery tunnel sculpture meadow glacier festival").split()


def synthesise(templates: list[dict], count: int, rng: random.Random) -> list[dict]:
    """Release-shaped records: each a template with a new id and its own task text and answer."""
    records = []
    for n in range(count):
        record = json.loads(json.dumps(templates[n % len(templates)]))
        record["id"] = "".join(rng.choices(string.ascii_letters + string.digits + "-_", k=8))
        extra = " ".join(rng.choices(WORDS, k=4))
        task_turn = record["conversations"][1]
        task_turn["value"] = task_turn["value"].replace("Task: ", f"Task: ({extra} #{n}) ", 1)
        record["answer"] = f"{record['answer']} [{rng.choice(WORDS)} {n}]"
        if "traj_verification" in record and rng.random() < 0.15:
            record["traj_verification"] = record["traj_verification"].replace('"correct": "yes"', '"correct": "no"')
        records.append(record)
    return records


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    result = call()
    return (time.perf_counter() - start) * 1000, result


def bench_paging(store: Store) -> list[float]:
    filters = [
        Filters(),
        Filters(status="pending"),
        Filters(status="approved"),
        Filters(tools=["visualizer"]),
        Filters(tools=["ask_search_agent", "final_answer"], has_error=False),
        Filters(has_error=True, min_steps=3),
        Filters(verdict="no"),
        Filters(source="bench", max_steps=2, tools=["image_generator"]),
        Filters(status="rejected", search="garden"),
    ]
    samples = []
    for selected in filters:
        cursor = None
        while True:  # every page, to the deepest
            ms, page = timed(lambda s=selected, c=cursor: store.query(s, cursor=c, limit=50))
            samples.append(ms)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        samples.append(timed(lambda s=selected: store.counts(s))[0])
    return samples


def bench_search(store: Store, rng: random.Random) -> list[float]:
    terms = WORDS + ["calendar", "flowers", "chocolate cake", "Tesla price", "paint wall", "church", "vegan"]
    return [timed(lambda: store.query(Filters(search=rng.choice(terms)), limit=50))[0] for _ in range(300)]


def bench_detail(store: Store, ids: list[str], rng: random.Random) -> list[float]:
    return [timed(lambda: store.detail(rng.choice(ids)))[0] for _ in range(1000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=RELEASE_SIZE)
    parser.add_argument("--sample", type=Path, default=ROOT / "tests" / "fixtures" / "mmtraj_records.json",
                        help="release records to vary (default: the repository's release-shaped fixture records)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep the database")
    args = parser.parse_args()

    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        run(args, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="review-bench-") as scratch:
            run(args, Path(scratch))


def run(args: argparse.Namespace, work: Path) -> None:
    rng = random.Random(0)
    release = work / "mmtraj.json"
    release.write_text(json.dumps(synthesise(json.loads(args.sample.read_text()), args.records, rng)))
    database = work / "bench.db"
    for leftover in work.glob("bench.db*"):
        leftover.unlink()

    store = Store(database)
    start = time.perf_counter()
    report = store.import_file(release, source="bench")
    import_s = time.perf_counter() - start
    ids = report.ids
    for trajectory_id in rng.sample(ids, min(1500, len(ids))):
        decision = rng.choice(["approved", "approved", "rejected", "skipped"])
        store.decide(trajectory_id, rng.choice(["ann", "bob"]), decision,
                     ["wrong_answer"] if decision == "rejected" else [])

    page = bench_paging(store)
    search = bench_search(store, rng)
    detail = bench_detail(store, ids, rng)
    store.close()

    size_mb = database.stat().st_size / 1e6
    print(f"{'records':<28}{report.added:>10}")
    print(f"{'file MB / database MB':<28}{release.stat().st_size / 1e6:>10.0f} / {size_mb:.0f}")
    print(f"{'import s (target <= 30)':<28}{import_s:>10.2f}")
    for name, samples in (("page", page), ("search", search), ("detail", detail)):
        print(f"{name + ' p95 ms (target <= 50)':<28}{p95(samples):>10.2f}   "
              f"median {sorted(samples)[len(samples) // 2]:.2f}   n={len(samples)}")
    print(json.dumps({"records": report.added, "import_s": round(import_s, 2), "page_p95_ms": round(p95(page), 2),
                      "search_p95_ms": round(p95(search), 2), "detail_p95_ms": round(p95(detail), 2)}))


if __name__ == "__main__":
    main()
