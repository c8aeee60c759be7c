"""Background jobs as the Train, Synthesize and Evaluate tabs use them: real subprocesses, a real database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from core import jobs
from core.db import Database
from core.errors import UserError


@pytest.fixture
def db(tmp_path):
    opened = Database(tmp_path / "mat.db")
    yield opened
    opened.close()


def _wait(db: Database, job_id: str, timeout: float = 20.0) -> jobs.Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.get(db, job_id)
        if not job.running:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


def test_a_job_reports_progress_and_finishes(db):
    code = "from core.jobs import progress\nfor i in range(3): progress(stage='train', step=i, loss=1.0 / (i + 1))\nprogress(status='done')"
    job = jobs.start(db, "train", ["-c", code])
    finished = _wait(db, job.id)
    assert finished.status == "done" and finished.finished_at >= finished.started_at
    lines = jobs.events(finished)
    assert [line["step"] for line in lines if "step" in line] == [0, 1, 2]
    assert jobs.events(finished, since=2)[0]["step"] == 2
    assert [j.id for j in jobs.list_jobs(db, "train")] == [job.id]
    assert jobs.list_jobs(db, "eval") == []


def test_a_failing_job_says_why_in_one_line(db):
    job = jobs.start(db, "eval", ["-c", "import sys; print('loading'); sys.exit('the data folder has no dataset.json')"])
    finished = _wait(db, job.id)
    assert finished.status == "failed"
    assert finished.message == "the data folder has no dataset.json"


def test_stop_ends_a_job_that_ignores_sigterm(db, monkeypatch):
    monkeypatch.setattr(jobs, "STOP_GRACE_SECONDS", 0.5)
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)"
    job = jobs.start(db, "synthesis", ["-c", code])
    deadline = time.monotonic() + 10
    while "ready" not in jobs.output_tail(job) and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped = jobs.stop(db, job.id)
    assert stopped.status == "stopped" and stopped.message == "stopped by the user"
    assert jobs.busy(stopped)  # stopped, but its process is still there: nothing may resume beside it yet
    deadline = time.monotonic() + 5
    while jobs.busy(jobs.get(db, job.id)) and time.monotonic() < deadline:
        time.sleep(0.05)
    ended = jobs.get(db, job.id)
    assert (ended.status, jobs.state(ended)) == ("stopped", "stopped")
    assert not jobs._is_ours(job)  # the process really is gone, not merely reported so


def test_a_killed_job_is_marked_failed_not_left_running(db):
    job = jobs.start(db, "train", ["-c", "import time; time.sleep(60)"])
    os.kill(job.pid, signal.SIGKILL)
    finished = _wait(db, job.id)
    assert (finished.status, finished.message) == ("failed", "killed by SIGKILL")


def test_after_an_app_restart_a_vanished_job_is_settled_from_its_log(db, tmp_path):
    """Rows left 'running' by an app that died: the log's last status decides."""
    for job_id, last in (("finished1", {"status": "done"}), ("crashed1", {"error": "CUDA out of memory"})):
        log = tmp_path / f"{job_id}.jsonl"
        log.write_text(json.dumps({"step": 1}) + "\n" + json.dumps(last) + "\n")
        with db.transaction() as tx:
            tx.execute("INSERT INTO jobs (id, kind, argv, status, pid, log_path, started_at)"
                       " VALUES (?, 'train', '[]', 'running', ?, ?, ?)", (job_id, 2**22 + 17, str(log), time.time()))
    assert jobs.get(db, "finished1").status == "done"
    crashed = jobs.get(db, "crashed1")
    assert (crashed.status, crashed.message) == ("failed", "CUDA out of memory")


def test_an_unknown_job_is_a_clear_refusal(db):
    with pytest.raises(UserError, match="no job 'nope'"):
        jobs.get(db, "nope")


def test_progress_outside_a_job_writes_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv("MAT_JOB_LOG", raising=False)
    jobs.progress(step=1)
    assert list(tmp_path.iterdir()) == []


def test_stop_never_signals_a_process_that_took_over_the_jobs_pid(db, tmp_path):
    """The job ended long ago and its pid now belongs to someone else's process: Stop must leave it alone."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        log = tmp_path / "old.jsonl"
        log.write_text("")
        with db.transaction() as tx:  # the row an app left behind, with the start time of the pid's first owner
            tx.execute("INSERT INTO jobs (id, kind, argv, status, pid, pid_start, log_path, started_at)"
                       " VALUES ('old', 'train', '[]', 'running', ?, ?, ?, ?)",
                       (bystander.pid, jobs._start_time(bystander.pid) - 1, str(log), time.time() - 3600))
        stopped = jobs.stop(db, "old")
        time.sleep(0.3)
        assert bystander.poll() is None, "the bystander holding the reused pid was killed"
        assert stopped.status != "running"
    finally:
        bystander.kill()
        bystander.wait()
