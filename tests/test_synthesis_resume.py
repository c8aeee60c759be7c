"""A synthesis run killed with SIGKILL mid-flight resumes: no duplicate tasks or trajectories, nothing
lost, and the server's own count of request keys proves that no answered request was paid for twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from synthesis.__main__ import main
from tests.support.locks import held_by_another_process
from tests.support.synthesis_server import SynthesisServer, last_text

ROOT = Path(__file__).resolve().parents[1]
TASKS, CONCURRENCY = 6, 3


def stored_keys(db: Path) -> set[str]:
    try:
        with sqlite3.connect(db) as conn:
            return {k for (k,) in conn.execute("SELECT key FROM synthesis_requests WHERE response IS NOT NULL")}
    except sqlite3.OperationalError:  # the run has not created its tables yet
        return set()


def kill_when(db: Path, process: subprocess.Popen, answered: int) -> set[str]:
    deadline = time.monotonic() + 60
    while len(stored_keys(db)) < answered:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the run did not get going"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return stored_keys(db)


def test_killed_run_resumes_without_duplicates_or_paying_twice(tmp_path, capsys):
    db = tmp_path / "mat.db"
    with SynthesisServer(latency=0.15) as server:
        argv = [sys.executable, "-m", "synthesis", "run", "--tasks", str(TASKS), "--db", str(db),
                "--base-url", server.url, "--concurrency", str(CONCURRENCY), "--embedder", "hash", "--per-request", "2"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        first = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        before_kill = kill_when(db, first, answered=12)
        with sqlite3.connect(db) as conn:
            (run_id,) = conn.execute("SELECT id FROM runs WHERE kind = 'synthesis'").fetchone()
            assert conn.execute("SELECT COUNT(*) FROM synthesis_tasks WHERE status = 'done'").fetchone()[0] < TASKS

        # While another process still works on the run (a stopped job finishing its step), a resume is refused
        # in one line and changes nothing; once it has ended, the resume goes ahead.
        with held_by_another_process(db.parent / "synthesis" / run_id / "run.lock") as holder:
            assert main(["resume", "--db", str(db)]) == 2
        refusal = capsys.readouterr().err.strip().splitlines()
        assert refusal[-1].startswith(f"error: run {run_id} is being worked on by another process (pid {holder})")
        assert stored_keys(db) == before_kill
        assert main(["resume", "--db", str(db)]) == 0
        after = stored_keys(db)

        with sqlite3.connect(db) as conn:
            tasks = conn.execute("SELECT n, status FROM synthesis_tasks WHERE run_id = ? ORDER BY n",
                                 (run_id,)).fetchall()
            records = [r for (r,) in conn.execute("SELECT record_id FROM trajectories")]
            ids = [i for (i,) in conn.execute("SELECT id FROM trajectories")]
            pending = conn.execute("SELECT COUNT(*) FROM synthesis_requests WHERE response IS NULL").fetchone()[0]
        assert tasks == [(n, "done") for n in range(TASKS)]
        assert sorted(records) == sorted(set(records)) and len(records) == TASKS
        assert not any("~" in i for i in ids)  # no second copy of a trajectory under a suffixed id
        assert pending == 0
        # Every answer the first process stored was sent exactly once, over both processes.
        assert before_kill and all(server.keys[key] == 1 for key in before_kill)
        # Only requests in flight at the kill (answered, never stored) were sent again: at most one per slot.
        resent = {key for key, n in server.keys.items() if n > 1}
        assert len(resent) <= CONCURRENCY and not resent & before_kill
        # Nothing lost: every request the server answered is in the store.
        assert set(server.keys) == after


def test_a_task_that_failed_on_a_bad_answer_recovers_when_retried(tmp_path):
    db = tmp_path / "mat.db"
    bad = lambda body: last_text(body).startswith("You check a task") and "Task 0-0" in last_text(body)  # noqa: E731
    with SynthesisServer() as server:
        server.garble_when = bad
        argv = ["--db", str(db)]
        assert main(["run", "--tasks", "2", *argv, "--base-url", server.url, "--embedder", "hash", "--no-replay"]) == 0
        with sqlite3.connect(db) as conn:
            failed = conn.execute("SELECT query, error FROM synthesis_tasks WHERE status = 'failed'").fetchall()
        assert len(failed) == 1 and failed[0][0].startswith("Task 0-0")
        assert failed[0][1].startswith("check: the verifier's answer has no")

        server.garble_when = None  # the model answers properly this time, if it is asked again
        asked = server.chat_requests
        assert main(["resume", *argv, "--retry-failed"]) == 0
        with sqlite3.connect(db) as conn:
            statuses = conn.execute("SELECT status, attempt FROM synthesis_tasks ORDER BY n").fetchall()
            stored = conn.execute("SELECT COUNT(*) FROM synthesis_requests WHERE stage = 'check'").fetchone()[0]
        assert statuses == [("done", 1), ("done", 0)]
        assert server.chat_requests > asked and stored == 3  # the bad answer is kept (it was paid for), plus the new one
