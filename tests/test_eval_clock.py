"""A task's time limit is its own time: waiting for a model that serves one request at a time is not a timeout.

The issue's example, for real: 12 GTA tasks, each needing one 1.5 s model call, a 4 s limit per task and six
tasks in flight, against an OpenAI-compatible server that answers one request at a time (as a local model
does; the client is told so with MAT_REMOTE_CONCURRENCY=1). Counting from when a task was queued, only two
tasks would finish; counting from when it has the model, all twelve do.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter

import pytest

from agent.config import Settings
from agent.models import load_model
from eval.clock import TaskClock
from eval.report import run_scores
from eval.runner import EvalConfig, create_run, open_store, run_eval
from tests.test_eval_cli import eval_cli, oracle_server, score_line
from tests.test_eval_run import gta_folder


@pytest.mark.usefixtures("timed_heap")
def test_tasks_queued_for_a_one_at_a_time_model_all_finish(gta_path, tmp_path):
    folder = gta_folder(gta_path, tmp_path / "gta")
    with oracle_server(gta_path, latency=1.5, one_at_a_time=True) as server:
        settings = Settings(data_dir=tmp_path / "data", base_url=server.url, api_key="sk-test", model="mat-test",
                            remote_concurrency=1)
        config = EvalConfig(benchmark="gta", data=str(folder), profile="gta", model="mat-test", concurrency=6,
                           timeout=4)
        from eval.benchmarks import load_gta

        benchmark = load_gta(folder)
        with open_store(settings.db) as store:
            create_run(store, config, len(benchmark.tasks), "fair")
            started = time.monotonic()
            outcomes = [o for _, o in run_eval(store, "fair", benchmark, load_model(settings), settings, config,
                                                show_progress=False)]
            took = time.monotonic() - started
            answer = next(s for s in run_scores(store, "fair") if s.name == "AnsAcc")
    assert Counter(o.status for o in outcomes) == {"done": 12}
    assert took >= 12 * 1.5  # the server really did answer one request at a time
    assert all(o.seconds < 4 for o in outcomes)  # each task's own time, not its wait in the queue
    assert (answer.numerator, answer.denominator) == (6, 6)


def test_the_clock_stands_still_while_waiting():
    started = time.monotonic()
    clock = TaskClock()
    clock.start()
    with clock.waiting():
        time.sleep(0.3)
    time.sleep(0.1)
    own = clock.seconds()
    wall = time.monotonic() - started
    assert 0.1 <= own <= wall - 0.3  # the time outside the wait, none of the time inside it


def test_timeouts_are_reported_apart_and_rerun_only_when_asked(gta_path, tmp_path):
    folder = gta_folder(gta_path, tmp_path / "gta")
    db = tmp_path / "mat.db"
    args = ["gta", "--data", str(folder), "--db", str(db), "--model", "mat-test", "--run-id", "slow",
            "--ids", "130,115"]
    with oracle_server(gta_path, latency=3.0) as server:
        proc = eval_cli(*args, "--base-url", server.url, "--timeout", "1")
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "2 task(s) timed out" in err and "--retry-timeouts" in err and "count as wrong" not in err
    assert "Timed out" in out and "2/2" in score_line(out, "Timed out")
    assert "0.00% (0/2)" in score_line(out, "AnsAcc")

    with oracle_server(gta_path) as server:
        proc = eval_cli(*args, "--base-url", server.url)  # a plain resume keeps the timeouts
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert not server.chat_requests
        proc = eval_cli(*args, "--base-url", server.url, "--retry-timeouts", "--timeout", "60")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert len(server.chat_requests) == 2
    assert "100.00% (2/2)" in score_line(out, "AnsAcc")
    with sqlite3.connect(db) as conn:
        assert dict(Counter(s for (s,) in conn.execute("SELECT status FROM eval_results"))) == {"done": 2}
