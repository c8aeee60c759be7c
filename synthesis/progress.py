"""Where a run stands, as the Synthesize tab shows it: a state line, tables, and two charts.

Counts per stage, tokens and cost come from the store (`run_status`, as the CLI prints them); what only
the running process knows (its phase before the run is recorded, the embedder loading, requests in
flight) comes from the job's latest progress line. So the page says something true from the first
second of a job, and a reloaded page or a resumed run shows exactly where things stand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core import jobs
from review.store import Store
from synthesis.costs import dollars
from synthesis.launch import job_for
from synthesis.status import run_status
from synthesis.tasks import ALL_STAGES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STAGE_HEADERS = ["stage", "done", "active", "failed"]
SPEND_HEADERS = ["stage", "requests", "input tokens", "output tokens", "cost $"]
FAILURE_HEADERS = ["task", "reason", "query"]
NO_RUN = "No run yet: fill in the form and press Start."
NO_STAGES = "Tasks per stage show here once a run starts."
NO_SPEND = "Tokens and cost per stage show here with the run's first answers."
COLOURS = {"done": "#2da44e", "active": "#0969da", "failed": "#cf222e"}


@dataclass
class Snapshot:
    """One look at a run: the state line, the tables, and what the charts are drawn from."""

    line: str
    stages: list[list] = field(default_factory=list)  # stage, done, active, failed
    spend: list[list] = field(default_factory=list)  # stage, requests, input tokens, output tokens, cost (None: unpriced)
    failures: list[list] = field(default_factory=list)
    target: int = 0  # tasks asked for; 0 while the run is not recorded yet

    @property
    def stage_counts(self) -> dict[str, list[int]]:
        return {row[0]: row[1:] for row in self.stages}

    @property
    def spend_table(self) -> list[list]:
        """The spend rows as the table shows them: an unknown cost reads "unpriced"."""
        return [[*row[:4], "unpriced" if row[4] is None else round(row[4], 6)] for row in self.spend]


def snapshot(store: Store, run_id: str | None) -> Snapshot:
    if not run_id:
        return Snapshot(NO_RUN)
    status = run_status(store, run_id)
    job = job_for(store, run_id)
    event = jobs.last_event(job) if job is not None and job.running else None
    if status["status"] == "unknown":
        asked = _asked(job) if job is not None and job.running else 0
        return Snapshot(_not_recorded(run_id, job, event), [[s, 0, 0, 0] for s in ALL_STAGES] if asked else [],
                        target=asked)
    stages = [[s, c["done"], c["active"], c["failed"]] for s, c in status["stages"].items()]
    spend = [[s, v["requests"], v["input_tokens"], v["output_tokens"], v["cost"]]
             for s, v in status["spend"]["stages"].items()]
    failures = [[f["task"], f["reason"], f["query"][:120]] for f in status["failures"]]
    target = (event or {}).get("target") or _target(store, run_id)
    return Snapshot(_state_line(run_id, status, job, event), stages, spend, failures, target)


def stage_figure(shot: Snapshot) -> Figure:
    """Tasks per stage, done / active / failed, against the number asked for."""
    from matplotlib.figure import Figure

    counts = shot.stage_counts
    names = list(reversed(ALL_STAGES))
    figure = Figure(figsize=(7, 2.6), dpi=100)
    axes = figure.subplots()
    left = [0] * len(names)
    for column, kind in enumerate(("done", "active", "failed")):
        widths = [counts.get(name, [0, 0, 0])[column] for name in names]
        axes.barh(names, widths, left=left, color=COLOURS[kind], label=kind)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    axes.set_xlim(0, max(shot.target, max(left), 1))
    axes.set_title(f"Tasks per stage (of {shot.target} asked for)", fontsize=10)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return figure


def spend_figure(shot: Snapshot) -> Figure:
    """Tokens and cost per stage, side by side (cost only where the model has a price)."""
    from matplotlib.figure import Figure

    rows = {row[0]: row for row in shot.spend}
    names = [s for s in ALL_STAGES if s in rows]
    figure = Figure(figsize=(7, 2.8), dpi=100)
    tokens, cost = figure.subplots(1, 2)
    tokens.bar(names, [rows[s][2] for s in names], color="#0969da", label="input")
    tokens.bar(names, [rows[s][3] for s in names], color="#8250df", label="output",
               bottom=[rows[s][2] for s in names])
    tokens.set_title("Tokens per stage", fontsize=10)
    tokens.legend(fontsize=8)
    priced = [s for s in names if rows[s][4] is not None]
    if priced:
        cost.bar(priced, [rows[s][4] for s in priced], color="#2da44e")
        cost.set_title("Cost per stage ($)", fontsize=10)
    else:
        cost.set_axis_off()
        cost.text(0.5, 0.5, "unpriced model:\nno cost to show", ha="center", va="center", color="#57606a")
    for axes in (tokens, cost):
        axes.tick_params(axis="x", labelrotation=45)
    figure.tight_layout()
    return figure


def _state_line(run_id: str, status: dict, job: jobs.Job | None, event: dict | None) -> str:
    shown = status["status"]
    if shown == "running" and (job is None or not job.running):
        shown = "interrupted (resume to continue)"
    job_note = ""
    if job is not None:
        job_note = f" · job {job.status}" + (f": {job.message}" if job.message else "")
        if job.status == "failed" and not job.message:
            job_note += f" ({jobs.output_tail(job, 1)})"
    live = ""
    if event is not None and "in_flight" in event:
        live = f" · embedder {event['embedder']} · {_count(event['in_flight'], 'request')} in flight"
    spend = status["spend"]
    total = spend["total"]
    per_approved = (f", {dollars(spend['per_approved_cost'])} per approved trajectory"
                    if spend["per_approved_cost"] is not None else "")
    return (f"**Run {run_id}**: {shown}{job_note}{live}. {_count(status['tasks'], 'task')}; "
            f"{_count(total['requests'], 'request')} answered, {total['input_tokens'] + total['output_tokens']} tokens, "
            f"{dollars(total['cost'])} ({dollars(spend['per_task_cost'])} per task{per_approved}). "
            f"{status['message']}\n\nIts trajectories are in Review as source `synthesis:{run_id}`: "
            "**Open in Review** shows them there.")


def _not_recorded(run_id: str, job: jobs.Job | None, event: dict | None) -> str:
    """A run whose job has not recorded it yet (it checks its endpoint first), or that was refused."""
    if job is None:
        return f"**Run {run_id}**: not in this database."
    if job.running:
        phase = (event or {}).get("phase") or "the job is loading"
        return f"**Run {run_id}**: starting ({time.time() - job.started_at:.0f} s): {phase}."
    reason = job.message or jobs.output_tail(job, 1) or job.status
    return f"**Run {run_id}** did not start: {reason}"


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def _asked(job: jobs.Job) -> int:
    """The number of tasks a starting job was asked for (its `--tasks`)."""
    argv = job.argv
    return int(argv[argv.index("--tasks") + 1]) if "--tasks" in argv[:-1] else 0


def _target(store: Store, run_id: str) -> int:
    from core import runs

    run = runs.find(store.db, run_id)
    return int(run.total or 0) if run else 0
