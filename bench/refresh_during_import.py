"""The Train tab's refresh while another process imports thousands of records: reads must not wait for writes.

    python bench/refresh_during_import.py                  # 6,000 records, refresh every 50 ms
    python bench/refresh_during_import.py --records 20000 --every 2   # the tab's own 2 s timer

The store holds what a user's Train tab shows: 20 finished runs (200 steps of metrics each) and a finished job
whose run it follows. `python -m review import` of release-shaped records (the repository's fixtures, or
`--sample`'s, under new ids and texts) runs in its own process while this one calls `train.ui.refresh`, the
function the tab's timer calls, over and over: the runs table, the job, its events and the run's curve. Latency
is measured alone first, then during the import. Last line: JSON (ms).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

RUNS, STEPS = 20, 200
JOB = """import sys
from core.jobs import progress
for step in range(1, 201):
    progress(stage="train", step=step, steps=200, loss=2.0 / step, tokens_per_s=900.0)
"""


def setup(work: Path, database) -> str:
    """Finished runs with their metrics, and a finished job following the last of them; returns the job's id."""
    from core import jobs
    from train import runs

    for number in range(RUNS):
        out = work / f"run-{number}"
        out.mkdir()
        (out / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 2.0 / s, "tokens_per_s": 900.0})
                                                   + "\n" for s in range(1, STEPS + 1)))
        rid = runs.record_start(database, out_dir=out, base_model="/models/Qwen2-VL-7B-Instruct", data="bench",
                                examples=1000, steps_total=STEPS, config={"preset": "mat-paper", "lora_r": 64})
        runs.record_update(database, rid, status="done", steps_done=STEPS, last_loss=0.01,
                           adapter_dir=str(out / "adapter"))
    job = jobs.start(database, "train", ["-c", JOB, "--out", str(work / f"run-{RUNS - 1}")], cwd=ROOT,
                     env={"PYTHONPATH": str(ROOT)})
    while jobs.get(database, job.id).running:
        time.sleep(0.1)
    return job.id


def release(work: Path, count: int, sample: Path | None) -> Path:
    from review_store import synthesise

    from tests.support.train_records import sample_records

    path = work / "import.json"
    path.write_text(json.dumps(synthesise(sample_records(sample), count, random.Random(0))))
    return path


def timings(call, until, every: float) -> list[float]:
    """Milliseconds per call of `call`, one every `every` seconds, until `until()` is true."""
    samples = []
    while not until():
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
        time.sleep(max(0.0, every - (time.perf_counter() - started)))
    return samples


def figures(samples: list[float]) -> dict:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731
    return {"n": len(ordered), "p50_ms": round(pick(0.5), 2), "p95_ms": round(pick(0.95), 2),
            "max_ms": round(ordered[-1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=6000)
    parser.add_argument("--every", type=float, default=0.05, help="seconds between refreshes (the tab: 2)")
    parser.add_argument("--sample", type=Path, help="release records to repeat (default: the fixtures)")
    args = parser.parse_args()

    from core.db import Database
    from train.ui import refresh

    with tempfile.TemporaryDirectory(prefix="bench-refresh-") as folder:
        work = Path(folder)
        database = Database(work / "mat.db")
        job = setup(work, database)
        data = release(work, args.records, args.sample)
        refresh(database, job)  # imports gradio and pandas once, as the page's first load does
        deadline = time.monotonic() + 5
        alone = timings(lambda: refresh(database, job), lambda: time.monotonic() > deadline, args.every)
        started = time.monotonic()
        importer = subprocess.Popen([sys.executable, "-m", "review", "import", str(data), "--db",
                                     str(work / "mat.db"), "--source", "bench"], cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        during = timings(lambda: refresh(database, job), lambda: importer.poll() is not None, args.every)
        import_s = time.monotonic() - started
        _, errors = importer.communicate()
        if importer.returncode:
            raise SystemExit(f"the import failed: {errors[-2000:]}")
        view = refresh(database, job)
        assert len(view[3]) == RUNS and len(view[1]) == STEPS, "the refresh must show every run and the whole curve"
        database.close()
    result = {"records": args.records, "import_s": round(import_s, 1), "every_s": args.every,
              "load_average": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
              "alone": figures(alone), "during_import": figures(during), "target_p95_ms": 20}
    print(f"refresh alone:          {result['alone']}")
    print(f"refresh during import:  {result['during_import']} ({args.records:,} records in {import_s:.1f} s)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
