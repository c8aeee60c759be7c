"""Where a run stands, read from the store: tasks per stage, failures with reasons, tokens and cost.

The CLI's progress bars, its job progress lines and the Synthesize tab all read this one function,
so they agree with each other and with what a resumed run will do.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable

from core import runs
from synthesis import costs
from synthesis.tasks import ALL_STAGES, STAGES

if TYPE_CHECKING:
    from review.store import Store


def run_status(store: Store, run_id: str) -> dict:
    """{"stages": {stage: {"done", "failed", "active"}}, "failures": [...], "spend": ..., "tasks": n}."""
    rows = store.db.read("SELECT stage, status, COUNT(*) FROM synthesis_tasks WHERE run_id = ? GROUP BY stage, status",
                         (run_id,))
    total = sum(n for _, _, n in rows)
    stages = {name: {"done": 0, "failed": 0, "active": 0} for name in ALL_STAGES}
    stages["queries"]["done"] = total
    for stage, status, n in rows:
        reached = len(STAGES) if stage == "done" else STAGES.index(stage)
        for earlier in STAGES[:reached]:
            stages[earlier]["done"] += n
        if stage in STAGES:
            stages[stage]["failed" if status == "failed" else "active"] += n
    failures = [{"task": t, "reason": e, "query": q} for t, e, q in store.db.read(
        "SELECT id, error, query FROM synthesis_tasks WHERE run_id = ? AND status = 'failed' ORDER BY n", (run_id,))]
    run = runs.find(store.db, run_id)
    return {"run": run_id, "status": run.status if run else "unknown", "message": run.message if run else "",
            "tasks": total, "stages": stages, "failures": failures, "spend": costs.summary(store, run_id)}


def status_lines(status: dict) -> list[str]:
    """The status as lines of text for the terminal."""
    lines = [f"run {status['run']}: {status['status']}  {status['message']}".rstrip(), f"tasks: {status['tasks']}"]
    for stage, counts in status["stages"].items():
        lines.append(f"  {stage:<9} done {counts['done']:>5}  active {counts['active']:>4}  failed {counts['failed']:>4}")
    spend = status["spend"]
    total = spend["total"]
    lines.append(f"requests {total['requests']}, tokens in {total['input_tokens']} out {total['output_tokens']}, "
                 f"cost {costs.dollars(total['cost'])} (per task {costs.dollars(spend['per_task_cost'])}; "
                 f"approved {spend['approved']}" + (f", per approved {costs.dollars(spend['per_approved_cost'])})"
                                                    if spend["per_approved_cost"] is not None else ")"))
    for stage, s in spend["stages"].items():
        lines.append(f"  {stage:<9} {s['requests']:>5} requests  {s['input_tokens']:>8} in  "
                     f"{s['output_tokens']:>7} out  {costs.dollars(s['cost'])}")
    for failure in status["failures"][:20]:
        lines.append(f"  failed {failure['task']}: {failure['reason']}")
    return lines


class Monitor:
    """From its start and then every `every` seconds: terminal progress bars (tqdm) and a job progress line
    for the tab, with what only the running process knows (`live()`: requests in flight, the embedder)."""

    def __init__(self, store: Store, run_id: str, target: int, live: Callable[[], dict], every: float = 1.0) -> None:
        self.store, self.run_id, self.target, self.live, self.every = store, run_id, target, live, every
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="monitor", daemon=True)

    def __enter__(self) -> Monitor:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    def _loop(self) -> None:
        import sys

        from tqdm import tqdm

        from core.jobs import progress

        quiet = not sys.stderr.isatty()  # a job's log gets the JSON progress lines instead
        bars = {s: tqdm(total=self.target, desc=f"{s:<9}", position=i, leave=True, dynamic_ncols=True, disable=quiet)
                for i, s in enumerate(ALL_STAGES)}
        try:
            stopping = False
            while True:
                status, live = run_status(self.store, self.run_id), self.live()
                for stage, bar in bars.items():
                    counts = status["stages"][stage]
                    bar.n = counts["done"]
                    bar.set_postfix(failed=counts["failed"], **(live if stage == "queries" else {}), refresh=False)
                    bar.refresh()
                progress(stage="synthesis", run=self.run_id, tasks=status["tasks"], target=self.target,
                         stages=status["stages"], cost=status["spend"]["total"]["cost"],
                         requests=status["spend"]["total"]["requests"], **live)
                if stopping:
                    break
                stopping = self.done.wait(self.every)
        finally:
            for bar in bars.values():
                bar.close()

