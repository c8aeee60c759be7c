"""Training runs in the database: the shared run record (`core.runs`) plus training's own columns.

A run is keyed by its output folder, so resuming a run (same `--out`) updates the same record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import runs
from core.db import Database

_OWN = ("base_model", "data", "examples", "adapter_dir", "merged_dir", "metrics_path", "last_loss")


@dataclass
class TrainRun:
    run: runs.Run
    base_model: str
    data: str
    examples: int | None
    adapter_dir: str | None
    merged_dir: str | None
    metrics_path: str
    last_loss: float | None


def run_id(out_dir: str | Path) -> str:
    """A stable id for the run writing into `out_dir`."""
    return hashlib.sha1(str(Path(out_dir).resolve()).encode()).hexdigest()[:12]


def record_start(db: str | Path, *, out_dir: Path, base_model: str, data: str, examples: int, steps_total: int,
                 config: dict, fingerprint: str = "") -> str:
    """Record the run (or, on resume, reopen its record); returns its id."""
    rid = run_id(out_dir)
    own = {"base_model": base_model, "data": data, "examples": examples,
           "metrics_path": str(Path(out_dir) / "metrics.jsonl")}
    with Database(db) as database, database.transaction() as tx:
        if runs.find(database, rid) is None:
            runs.start(database, "train", config, run_id=rid, fingerprint=fingerprint, total=steps_total,
                       folder=str(out_dir))
        else:
            runs.reopen(database, rid, total=steps_total)
        tx.execute("INSERT INTO train_runs (id, base_model, data, examples, metrics_path)"
                   " VALUES (:id, :base_model, :data, :examples, :metrics_path) ON CONFLICT (id) DO UPDATE SET"
                   " base_model = excluded.base_model, data = excluded.data, examples = excluded.examples,"
                   " metrics_path = excluded.metrics_path", {"id": rid, **own})
    return rid


def record_update(db: str | Path, rid: str, *, status: str | None = None, message: str = "",
                  steps_done: int | None = None, **own: Any) -> None:
    """Progress, training's own columns (adapter_dir, last_loss, ...), and at the end how the run ended."""
    unknown = set(own) - set(_OWN)
    if unknown:
        raise ValueError(f"not a training run column: {', '.join(sorted(unknown))}")
    with Database(db) as database, database.transaction() as tx:
        if steps_done is not None:
            runs.set_progress(database, rid, steps_done)
        if own:
            tx.execute(f"UPDATE train_runs SET {', '.join(f'{name} = :{name}' for name in own)} WHERE id = :id",
                       {**own, "id": rid})
        if status is not None:
            runs.finish(database, rid, status, message)


def list_runs(db: str | Path) -> list[TrainRun]:
    """Every training run, newest first."""
    with Database(db) as database:
        own = {row[0]: row[1:] for row in database.read(f"SELECT id, {', '.join(_OWN)} FROM train_runs")}
        return [TrainRun(run, *own[run.id]) for run in runs.list_runs(database, "train") if run.id in own]


def get_run(db: str | Path, rid: str) -> TrainRun | None:
    return next((run for run in list_runs(db) if run.run.id == rid), None)
