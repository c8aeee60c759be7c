"""One run model for the long work: training, evaluation and synthesis runs are rows of one table.

A run is what a person starts and later looks back on: its kind, the config it was asked for, a
fingerprint of its inputs (so a resume can refuse other data), its status and progress, the folder its
outputs go to, and when it started and ended. Each package keeps what only it needs (a training run's
loss, an evaluation's benchmark) in its own table, keyed by the run's id.

A run started as a background job (`core.jobs`) records the job; a run still marked running whose job
has ended is settled from the job's own account, so nothing stays "running" after a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from core import jobs
from core.clock import now
from core.db import Database, Transaction, register
from core.errors import UserError
from core.files import hold_lock

STATUSES = ("running", "done", "failed", "stopped")
KINDS = ("train", "eval", "synthesis")
register("runs", [
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        config TEXT NOT NULL DEFAULT '{}',
        fingerprint TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'stopped')),
        done INTEGER NOT NULL DEFAULT 0,
        total INTEGER,
        folder TEXT,
        job_id TEXT,
        message TEXT NOT NULL DEFAULT '',
        started_at TEXT NOT NULL,
        ended_at TEXT
    );
    CREATE INDEX runs_kind ON runs(kind, started_at);
    """,
])
_COLUMNS = "id, kind, config, fingerprint, status, done, total, folder, job_id, message, started_at, ended_at"


@dataclass
class Run:
    id: str
    kind: str
    config: dict
    fingerprint: str
    status: str
    done: int
    total: int | None
    folder: str | None
    job_id: str | None
    message: str
    started_at: str
    ended_at: str | None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def progress(self) -> str:
        """`done/total` as people read it."""
        return f"{self.done}/{self.total}" if self.total is not None else str(self.done)


def fingerprint(material: Any) -> str:
    """A short content hash of what decides a run's results (data and config), stable across machines."""
    text = json.dumps(material, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differences(stored: dict, asked: dict) -> list[str]:
    """What a resume asks for that the run was not made with, as `name: stored -> asked` lines."""
    names = sorted(set(stored) | set(asked))
    return [f"{name}: {stored.get(name)!r} -> {asked.get(name)!r}" for name in names if stored.get(name) != asked.get(name)]


def start(db: Database, kind: str, config: dict, *, run_id: str, fingerprint: str = "",
          total: int | None = None, folder: str | None = None) -> Run:
    """Record a new run (status running); refused if `run_id` exists.

    Called inside the caller's own `db.transaction()`, it joins it: the package's rows commit with it.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown run kind {kind!r}")
    row = (run_id, kind, json.dumps(config, sort_keys=True, default=str), fingerprint, "running", 0, total, folder,
           os.environ.get("MAT_JOB_ID"), "", now(), None)
    with db.transaction() as tx:
        if tx.value("SELECT 1 FROM runs WHERE id = ?", (run_id,)):
            raise UserError(f"a run {run_id!r} exists already: resume it, or choose another id")
        tx.execute(f"INSERT INTO runs ({_COLUMNS}) VALUES ({', '.join('?' * 12)})", row)
    return _run(row)


def reopen(db: Database, run_id: str, *, total: int | None = None, config: dict | None = None) -> Run:
    """Mark a stopped or failed run running again (a resume), under the current job; `config` replaces the stored
    one (a resume may change limits such as a timeout)."""
    with db.transaction() as tx:
        run = _get(tx, run_id)
        stored = None if config is None else json.dumps(config, sort_keys=True, default=str)
        tx.execute("UPDATE runs SET status = 'running', message = '', ended_at = NULL, job_id = ?,"
                   " total = COALESCE(?, total), config = COALESCE(?, config) WHERE id = ?",
                   (os.environ.get("MAT_JOB_ID"), total, stored, run_id))
        return _get(tx, run.id)


def hold(db: Database, run_id: str) -> IO:
    """Hold `run_id` for this process until the returned file is closed (a lock beside the store): a resume
    started while another process still works on the run is refused in one line instead of running beside it."""
    return hold_lock(Path(db.path).parent / "locks" / f"{run_id}.lock", f"run {run_id}")


def find(db: Database, run_id: str) -> Run | None:
    row = db.read_one(f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (run_id,))
    return None if row is None else _settle(db, _run(row))


def get(db: Database, run_id: str) -> Run:
    """The run, or a refusal naming the id."""
    run = find(db, run_id)
    if run is None:
        raise UserError(f"no run {run_id!r} in {db.path}")
    return run


def list_runs(db: Database, kind: str | None = None) -> list[Run]:
    """Runs, newest first."""
    where, args = ("WHERE kind = ?", (kind,)) if kind else ("", ())
    rows = db.read(f"SELECT {_COLUMNS} FROM runs {where} ORDER BY started_at DESC, id", args)
    return [_settle(db, _run(row)) for row in rows]


def set_progress(db: Database, run_id: str, done: int, total: int | None = None,
                 message: str | None = None) -> None:
    with db.transaction() as tx:
        tx.execute("UPDATE runs SET done = ?, total = COALESCE(?, total), message = COALESCE(?, message) WHERE id = ?",
                   (done, total, message, run_id))


def finish(db: Database, run_id: str, status: str, message: str = "") -> None:
    """Record how the run ended; a run already ended keeps its first account (a stop beats a late failure)."""
    if status not in STATUSES[1:]:
        raise ValueError(f"a run ends done, failed or stopped, not {status!r}")
    with db.transaction() as tx:
        tx.execute("UPDATE runs SET status = ?, message = ?, ended_at = ? WHERE id = ? AND status = 'running'",
                   (status, message, now(), run_id))


def _settle(db: Database, run: Run) -> Run:
    """A run still marked running whose job has ended takes the job's ending."""
    if not run.running or not run.job_id:
        return run
    try:
        job = jobs.get(db, run.job_id)
    except UserError:
        return run
    if job.running:
        return run
    finish(db, run.id, "done" if job.status == "done" else job.status, job.message)
    row = db.read_one(f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (run.id,))
    return _run(row)


def _get(tx: Transaction, run_id: str) -> Run:
    row = tx.read_one(f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (run_id,))
    if row is None:
        raise UserError(f"no run {run_id!r}")
    return _run(row)


def _run(row: tuple) -> Run:
    values = list(row)
    values[2] = json.loads(values[2])
    return Run(*values)
