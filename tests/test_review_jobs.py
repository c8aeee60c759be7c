"""Background jobs as the Train, Synthesize and Evaluate tabs use them: real subprocesses, a real store."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from review import jobs
from review.store import Store, StoreError


@pytest.fixture
def store(tmp_path):
    opened = Store(tmp_path / "mat.db")
    yield opened
    opened.close()


def _wait(store: Store, job_id: str, timeout: float = 20.0) -> jobs.Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.get(store, job_id)
        if not job.running:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


def test_a_job_reports_progress_and_finishes(store):
    code = "from review.jobs import progress\nfor i in range(3): progress(stage='train', step=i, loss=1.0 / (i + 1))\nprogress(status='done')"
    job = jobs.start(store, "train", ["-c", code])
    finished = _wait(store, job.id)
    assert finished.status == "done" and finished.finished_at >= finished.started_at
    lines = jobs.events(finished)
    assert [line["step"] for line in lines if "step" in line] == [0, 1, 2]
    assert jobs.events(finished, since=2)[0]["step"] == 2
    assert [j.id for j in jobs.list_jobs(store, "train")] == [job.id]
    assert jobs.list_jobs(store, "eval") == []


def test_a_failing_job_says_why_in_one_line(store):
    job = jobs.start(store, "eval", ["-c", "import sys; print('loading'); sys.exit('the data folder has no dataset.json')"])
    finished = _wait(store, job.id)
    assert finished.status == "failed"
    assert finished.message == "the data folder has no dataset.json"


def test_stop_ends_a_job_that_ignores_sigterm(store, monkeypatch):
    monkeypatch.setattr(jobs, "STOP_GRACE_SECONDS", 0.5)
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)"
    job = jobs.start(store, "synthesis", ["-c", code])
    deadline = time.monotonic() + 10
    while "ready" not in jobs.output_tail(job) and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped = jobs.stop(store, job.id)
    assert stopped.status == "stopped" and stopped.message == "stopped by the user"
    deadline = time.monotonic() + 5
    while jobs._alive(job.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not jobs._alive(job.pid)
    assert jobs.get(store, job.id).status == "stopped"


def test_a_killed_job_is_marked_failed_not_left_running(store):
    job = jobs.start(store, "train", ["-c", "import time; time.sleep(60)"])
    os.kill(job.pid, signal.SIGKILL)
    finished = _wait(store, job.id)
    assert (finished.status, finished.message) == ("failed", "killed by SIGKILL")


def test_after_an_app_restart_a_vanished_job_is_settled_from_its_log(store, tmp_path):
    """Rows left 'running' by an app that died: the log's last status decides."""
    jobs._migrate(store)
    for job_id, last in (("finished1", {"status": "done"}), ("crashed1", {"error": "CUDA out of memory"})):
        log = tmp_path / f"{job_id}.jsonl"
        log.write_text(json.dumps({"step": 1}) + "\n" + json.dumps(last) + "\n")
        store.db.conn.execute(
            "INSERT INTO jobs (id, kind, argv, status, pid, log_path, started_at) VALUES (?, 'train', '[]', 'running', ?, ?, ?)",
            (job_id, 2**22 + 17, str(log), time.time()),
        )
    assert jobs.get(store, "finished1").status == "done"
    crashed = jobs.get(store, "crashed1")
    assert (crashed.status, crashed.message) == ("failed", "CUDA out of memory")


def test_an_unknown_job_is_a_clear_refusal(store):
    with pytest.raises(StoreError, match="no job 'nope'"):
        jobs.get(store, "nope")


def test_progress_outside_a_job_writes_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv("MAT_JOB_LOG", raising=False)
    jobs.progress(step=1)
    assert list(tmp_path.iterdir()) == []
