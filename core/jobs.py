"""Background jobs: training, synthesis and evaluation run as subprocesses the page only watches.

A job is `python ARGV...` in its own process group, recorded in the database, so it outlives a page
reload and even an app restart. It reports progress by appending JSON lines to the file named by
`MAT_JOB_LOG` (`progress(...)`); the page reads them back with `events`. Its stdout and stderr go to a
file beside it, whose last line explains a failure.

A stored pid may belong to another process by the time someone presses Stop (the job ended, the
machine rebooted, pids wrapped round), so a job also records its process's start time, and nothing
is signalled unless both still match.
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

from core.db import Database, register
from core.errors import UserError

STOP_GRACE_SECONDS = 5.0
register("jobs", [
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
    # 2: the process's start time (clock ticks since boot), so a reused pid is never taken for the job's.
    "ALTER TABLE jobs ADD COLUMN pid_start INTEGER;",
])
_children: dict[str, subprocess.Popen] = {}
_children_lock = threading.Lock()
_COLUMNS = "id, kind, argv, status, pid, pid_start, log_path, started_at, finished_at, message"


@dataclass
class Job:
    id: str
    kind: str
    argv: list[str]
    status: str
    pid: int | None
    pid_start: int | None
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


def start(db: Database, kind: str, argv: list[str], *, env: dict[str, str] | None = None,
          cwd: str | Path | None = None) -> Job:
    """Run `python ARGV...` as a job of `kind` and record it; `env` adds to (or, with "", empties) variables."""
    job_id = uuid.uuid4().hex[:12]
    folder = db.path.parent / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"{job_id}.jsonl"
    log_path.touch()
    child_env = {**os.environ, **(env or {}), "MAT_JOB_ID": job_id, "MAT_JOB_LOG": str(log_path), "MAT_DB": str(db.path),
                 "PYTHONUNBUFFERED": "1"}
    with open(log_path.with_suffix(".out"), "wb") as output:
        process = subprocess.Popen(
            [sys.executable, *argv], stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=child_env, cwd=cwd, start_new_session=True,
        )
    job = Job(job_id, kind, list(argv), "running", process.pid, _start_time(process.pid), log_path, time.time())
    with db.transaction() as tx:
        tx.execute(
            "INSERT INTO jobs (id, kind, argv, status, pid, pid_start, log_path, started_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (job.id, kind, json.dumps(job.argv), job.status, job.pid, job.pid_start, str(log_path), job.started_at),
        )
    with _children_lock:
        _children[job_id] = process
    threading.Thread(target=_reap, args=(db, job_id, process), daemon=True, name=f"job-{job_id}").start()
    return job


def get(db: Database, job_id: str) -> Job:
    """The job as it stands now; a job whose process vanished without finishing is marked failed."""
    row = db.read_one(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
    if row is None:
        raise UserError(f"no job {job_id!r}")
    return _settle(db, _job(row))


def list_jobs(db: Database, kind: str | None = None) -> list[Job]:
    """Jobs, newest first."""
    where, args = ("WHERE kind = ?", (kind,)) if kind else ("", ())
    rows = db.read(f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY started_at DESC", args)
    return [_settle(db, _job(row)) for row in rows]


def stop(db: Database, job_id: str) -> Job:
    """Ask the job's process group to end (SIGTERM), and kill it if it is still there after a grace period."""
    job = get(db, job_id)
    if not job.running:
        return job
    _finish(db, job_id, "stopped", "stopped by the user")
    if _is_ours(job):
        _signal(job.pid, signal.SIGTERM)
        threading.Thread(target=_kill_later, args=(job,), daemon=True).start()
    return get(db, job_id)


def busy(job: Job) -> bool:
    """Running, or stopped but its process still finishing the step it was in (a stop is graceful): a resume
    started now would run beside it."""
    return job.running or (job.status == "stopped" and _alive(job))


def state(job: Job) -> str:
    """The status a page shows: "stopping" between a stop and its process's end, else the job's status."""
    return "stopping" if not job.running and busy(job) else job.status


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


def last_event(job: Job, within: int = 65536) -> dict[str, Any] | None:
    """The job's latest complete progress line, read from the end of its log (a long job's log is long)."""
    try:
        with open(job.log_path, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(0, size - within))
            lines = log.read().decode(errors="replace").split("\n")
    except FileNotFoundError:
        return None
    for line in reversed(lines[1 if size > within else 0:-1]):  # the first may be cut, the last is unfinished
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None


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


def _job(row: tuple) -> Job:
    job_id, kind, argv, status, pid, pid_start, log_path, started, finished, message = row
    return Job(job_id, kind, json.loads(argv), status, pid, pid_start, Path(log_path), started, finished, message)


def _reap(db: Database, job_id: str, process: subprocess.Popen) -> None:
    """Wait for our own child and record how it ended."""
    code = process.wait()
    try:
        row = db.read_one(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        if row is not None and row[3] == "running":
            _record_end(db, _job(row), code)
    except Exception:  # the database was closed under us (tests, shutdown): the next reader settles the row
        pass
    finally:
        with _children_lock:
            _children.pop(job_id, None)


def _settle(db: Database, job: Job) -> Job:
    """A 'running' job whose process is gone (app restarted, kill -9) gets its real end recorded."""
    if not job.running:
        return job
    with _children_lock:
        ours = job.id in _children
    if ours or _is_ours(job):
        return job
    _record_end(db, job, None)
    return get(db, job.id)


def _record_end(db: Database, job: Job, code: int | None) -> None:
    reported = [e.get("status") for e in events(job) if e.get("status")]
    if code == 0 or (code is None and reported and reported[-1] == "done"):
        _finish(db, job.id, "done", "")
        return
    _finish(db, job.id, "failed", _last_error(job) or _exit_reason(code))


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


def _finish(db: Database, job_id: str, status: str, message: str) -> None:
    with db.transaction() as tx:
        tx.execute("UPDATE jobs SET status = ?, finished_at = ?, message = ? WHERE id = ? AND status = 'running'",
                   (status, time.time(), message, job_id))


def _start_time(pid: int | None) -> int | None:
    """When process `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat); None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def _alive(job: Job) -> bool:
    """The job's process has not ended. A child of this app counts as ended once reaped (its return code set),
    even while the reaper is still recording that; any other process, while its pid is still the job's."""
    with _children_lock:
        process = _children.get(job.id)
    return process.returncode is None if process is not None else _is_ours(job)


def _is_ours(job: Job) -> bool:
    """The job's process is alive and is still the process the job started (not a reused pid)."""
    if not job.pid:
        return False
    started = _start_time(job.pid)
    return started is not None and (job.pid_start is None or started == job.pid_start)


def _signal(pid: int | None, sig: int) -> None:
    if not pid:
        return
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_later(job: Job) -> None:
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while time.monotonic() < deadline:
        if not _is_ours(job):
            return
        time.sleep(0.1)
    _signal(job.pid, signal.SIGKILL)
