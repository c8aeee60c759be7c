"""Background jobs: training, synthesis and evaluation run as subprocesses the page only watches.

A job is `python ARGV...` in its own process group, recorded in the store, so it outlives a
page reload and even an app restart. It reports progress by appending JSON lines to the file
named by `MAT_JOB_LOG` (`progress(...)`); the page reads them back with `events`. The job's
own stdout and stderr go to a file beside it, whose last line explains a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from review.errors import StoreError
from review.schema import migrate
from review.store import Store

STOP_GRACE_SECONDS = 5.0
MIGRATIONS = [
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        argv TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'stopped')),
        pid INTEGER,
        log_path TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL,
        message TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX jobs_kind ON jobs(kind, started_at);
    """,
]
_children: dict[str, subprocess.Popen] = {}
_children_lock = threading.Lock()


@dataclass
class Job:
    id: str
    kind: str
    argv: list[str]
    status: str
    pid: int | None
    log_path: Path
    started_at: float
    finished_at: float | None = None
    message: str = ""

    @property
    def output_path(self) -> Path:
        """The job's stdout and stderr."""
        return self.log_path.with_suffix(".out")

    @property
    def running(self) -> bool:
        return self.status == "running"


def start(store: Store, kind: str, argv: list[str], *, env: dict[str, str] | None = None,
          cwd: str | Path | None = None) -> Job:
    """Run `python ARGV...` as a job of `kind` and record it."""
    _migrate(store)
    job_id = uuid.uuid4().hex[:12]
    folder = store.path.parent / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"{job_id}.jsonl"
    log_path.touch()
    child_env = {**os.environ, **(env or {}), "MAT_JOB_ID": job_id, "MAT_JOB_LOG": str(log_path),
                 "MAT_DB": str(store.path), "PYTHONUNBUFFERED": "1"}
    with open(log_path.with_suffix(".out"), "wb") as output:
        process = subprocess.Popen(
            [sys.executable, *argv], stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=child_env, cwd=cwd, start_new_session=True,
        )
    job = Job(job_id, kind, list(argv), "running", process.pid, log_path, time.time())
    store.db.conn.execute(
        "INSERT INTO jobs (id, kind, argv, status, pid, log_path, started_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (job.id, kind, json.dumps(job.argv), job.status, job.pid, str(log_path), job.started_at),
    )
    with _children_lock:
        _children[job_id] = process
    threading.Thread(target=_reap, args=(store, job_id, process), daemon=True, name=f"job-{job_id}").start()
    return job


def get(store: Store, job_id: str) -> Job:
    """The job as it stands now; a job whose process vanished without finishing is marked failed."""
    _migrate(store)
    row = store.db.conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise StoreError(f"no job {job_id!r}")
    return _settle(store, _job(row))


def list_jobs(store: Store, kind: str | None = None) -> list[Job]:
    """Jobs, newest first."""
    _migrate(store)
    where, args = ("WHERE kind = ?", (kind,)) if kind else ("", ())
    rows = store.db.conn.execute(f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY started_at DESC", args).fetchall()
    return [_settle(store, _job(row)) for row in rows]


def stop(store: Store, job_id: str) -> Job:
    """Ask the job's process group to end (SIGTERM), and kill it if it is still there after a grace period."""
    job = get(store, job_id)
    if not job.running:
        return job
    _finish(store, job_id, "stopped", "stopped by the user")
    _signal(job.pid, signal.SIGTERM)
    threading.Thread(target=_kill_later, args=(job.pid,), daemon=True).start()
    return get(store, job_id)


def events(job: Job, since: int = 0) -> list[dict[str, Any]]:
    """The progress lines the job wrote, from line `since` on; a half-written last line is left for later."""
    try:
        lines = job.log_path.read_text(errors="replace").split("\n")
    except FileNotFoundError:
        return []
    parsed = []
    for line in lines[since:-1]:  # the last element is "" after a complete line, or a line still being written
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            parsed.append({"unreadable": line[:200]})
    return parsed


def output_tail(job: Job, lines: int = 20) -> str:
    """The end of the job's stdout and stderr."""
    try:
        text = job.output_path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def progress(**fields: Any) -> None:
    """Inside a job: append one progress line for the page. Outside a job it does nothing."""
    path = os.environ.get("MAT_JOB_LOG")
    if not path:
        return
    line = json.dumps({"t": round(time.time(), 3), **fields}, default=str) + "\n"
    with open(path, "a") as log:
        log.write(line)


_COLUMNS = "id, kind, argv, status, pid, log_path, started_at, finished_at, message"


def _job(row: tuple) -> Job:
    job_id, kind, argv, status, pid, log_path, started, finished, message = row
    return Job(job_id, kind, json.loads(argv), status, pid, Path(log_path), started, finished, message)


def _migrate(store: Store) -> None:
    if not getattr(store, "_jobs_ready", False):
        migrate(store.db.conn, "jobs", MIGRATIONS)
        store._jobs_ready = True


def _reap(store: Store, job_id: str, process: subprocess.Popen) -> None:
    """Wait for our own child and record how it ended."""
    code = process.wait()
    try:
        row = store.db.conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is not None and row[3] == "running":
            _record_end(store, _job(row), code)
    except Exception:  # the store was closed under us (tests, shutdown): the next reader settles the row
        pass
    finally:
        with _children_lock:
            _children.pop(job_id, None)


def _settle(store: Store, job: Job) -> Job:
    """A 'running' job whose process is gone (app restarted, kill -9) gets its real end recorded."""
    if not job.running:
        return job
    with _children_lock:
        ours = job.id in _children
    if ours or _alive(job.pid):
        return job
    _record_end(store, job, None)
    return get(store, job.id)


def _record_end(store: Store, job: Job, code: int | None) -> None:
    reported = [e.get("status") for e in events(job) if e.get("status")]
    if code == 0 or (code is None and reported and reported[-1] == "done"):
        _finish(store, job.id, "done", "")
        return
    why = _last_error(job) or _exit_reason(code)
    _finish(store, job.id, "failed", why)


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "the process ended without reporting (killed, or the machine restarted)"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _last_error(job: Job) -> str:
    """The job's own account of its failure: an `error` progress line, else its last output line."""
    for event in reversed(events(job)):
        if event.get("error"):
            return str(event["error"])
    return output_tail(job, 1).strip()[:500]


def _finish(store: Store, job_id: str, status: str, message: str) -> None:
    store.db.conn.execute(
        "UPDATE jobs SET status = ?, finished_at = ?, message = ? WHERE id = ? AND status = 'running'",
        (status, time.time(), message, job_id),
    )


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie still answers kill(0): it has ended
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def _signal(pid: int | None, sig: int) -> None:
    if not pid:
        return
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_later(pid: int | None) -> None:
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    _signal(pid, signal.SIGKILL)
