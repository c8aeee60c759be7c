"""`python -m eval` as a user runs it: against a local OpenAI-compatible server, killed midway and resumed
(never beside another process still working on the run)."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.locks import held_by_another_process
from tests.support.openai_server import FakeOpenAI
from tests.test_eval_run import answer_turn, gta_folder, oracle_answer

ROOT = Path(__file__).resolve().parents[1]


def oracle_server(sample: Path, latency: float = 0.0, **knobs) -> FakeOpenAI:
    """A server that reads the task in the request and answers it with the reference answer."""
    answers = {item["dialogs"][0]["content"]: oracle_answer(item["gt_answer"])
               for item in json.loads(sample.read_text()).values()}

    def respond(body: dict) -> str:
        text = json.dumps(body["messages"])
        return next((answer_turn(a) for q, a in answers.items() if json.dumps(q)[1:-1] in text), answer_turn("?"))

    return FakeOpenAI(responder=respond, latency=latency, **knobs)


def eval_cli(*args: str, env_extra: dict | None = None, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MAT_API_KEY": "sk-test", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "eval", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def result_rows(db: Path, run_id: str) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT task_id, finished_at FROM eval_results WHERE run_id = ?", (run_id,)))


def test_killed_run_resumes_without_redoing_answered_tasks(gta_path, tmp_path):
    folder = gta_folder(gta_path, tmp_path / "gta")
    db = tmp_path / "mat.db"
    with oracle_server(gta_path, latency=0.4) as server:
        common = ["--data", str(folder), "--db", str(db), "--base-url", server.url, "--model", "mat-test",
                  "--run-id", "r1"]
        first = eval_cli("gta", *common, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not db.exists() or len(_safe_rows(db, "r1")) < 3):
            time.sleep(0.1)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        before = result_rows(db, "r1")
        assert 3 <= len(before) < 12
        asked_before = len(server.chat_requests)

        # While another process still works on the run (a stopped job finishing its tasks), a resume is refused
        # in one line and asks and changes nothing; once it has ended, the resume goes ahead.
        with held_by_another_process(db.parent / "locks" / "r1.lock") as holder:
            beside = eval_cli("gta", *common)
            _, err = beside.communicate(timeout=120)
        assert beside.returncode == 2 and "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith(
            f"error: run r1 is being worked on by another process (pid {holder})")
        assert result_rows(db, "r1") == before and len(server.chat_requests) == asked_before

        second = eval_cli("gta", *common)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
    after = result_rows(db, "r1")
    assert len(after) == 12
    assert all(after[task] == stamp for task, stamp in before.items())  # answered tasks were not run again
    assert len(server.chat_requests) - asked_before == 12 - len(before)
    # the paper's numbers beside ours, marked: they were scored by MAT's rule, not GTA's official one
    assert re.split(r"\s{2,}", score_line(out, "AnsAcc")) == [
        "AnsAcc", "objective", "official", "100.00% (6/6)", "53.85% (84/156), mat", "52.56% (82/156), mat"]


def score_line(report: str, metric: str) -> str:
    """The first line of a text report's table for `metric`, its column gaps closed up to two spaces."""
    line = next(line for line in report.splitlines() if line.startswith(metric + " "))
    return re.sub(r"\s{2,}", "  ", line)


def _safe_rows(db: Path, run_id: str) -> dict:
    try:
        return result_rows(db, run_id)
    except sqlite3.Error:
        return {}


def test_cli_says_what_is_missing_in_one_line(gta_path, tmp_path):
    (tmp_path / "gta").mkdir()
    (tmp_path / "gta" / "dataset.json").write_bytes(gta_path.read_bytes())
    proc = eval_cli("gta", "--data", str(tmp_path / "gta"), "--db", str(tmp_path / "mat.db"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.count("\n") == 1 and "12 file(s) missing" in err and "image/image_190.jpg" in err
    assert "Traceback" not in err

    proc = eval_cli("report", "nope", "--db", str(tmp_path / "mat.db"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "no evaluation run 'nope'" in err and "Traceback" not in err
    proc = eval_cli("report", "nope", "--db", str(tmp_path / "other.db"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "no such database" in err


def test_skip_missing_runs_what_is_there_and_report_writes_html(gta_path, tmp_path):
    folder = gta_folder(gta_path, tmp_path / "gta")
    (folder / "image" / "image_311.jpg").unlink()  # task 130 ('68') loses its picture
    db = tmp_path / "mat.db"
    with oracle_server(gta_path) as server:
        proc = eval_cli("gta", "--data", str(folder), "--db", str(db), "--base-url", server.url, "--model",
                        "mat-test", "--run-id", "partial", "--skip-missing", "--concurrency", "3")
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "1 missing file(s); 1 task(s) skipped, 11 left" in err
    assert "official  100.00% (5/5)" in score_line(out, "AnsAcc")
    report = tmp_path / "report.html"
    proc = eval_cli("report", "partial", "--db", str(db), "--protocol", "mat", "--html", str(report))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "mat  100.00% (5/5)" in score_line(out, "AnsAcc")
    assert report.read_text().startswith("<!doctype html>")


def test_unreachable_endpoint_fails_tasks_in_one_line_and_a_rerun_retries_them(gta_path, tmp_path):
    folder = gta_folder(gta_path, tmp_path / "gta")
    db = tmp_path / "mat.db"
    args = ["gta", "--data", str(folder), "--db", str(db), "--model", "mat-test", "--run-id", "r", "--ids", "130"]
    proc = eval_cli(*args, "--base-url", "http://127.0.0.1:9/v1")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "Traceback" not in err
    assert "1 task(s) failed and count as not answered (first: 130:" in err
    assert "official  0.00% (0/1)" in score_line(out, "AnsAcc")
    with oracle_server(gta_path) as server:
        proc = eval_cli(*args, "--base-url", server.url)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "official  100.00% (1/1)" in score_line(out, "AnsAcc")  # the failed task was run again


def test_a_run_with_nothing_to_run_is_refused_and_not_stored(gta_path, tmp_path):
    (tmp_path / "gta").mkdir()
    (tmp_path / "gta" / "dataset.json").write_bytes(gta_path.read_bytes())  # no image at all
    db = tmp_path / "mat.db"
    proc = eval_cli("gta", "--data", str(tmp_path / "gta"), "--db", str(db), "--skip-missing", "--tiny")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.splitlines()[-1] == ("error: nothing to run: all 12 chosen task(s) need files that are missing; "
                                    "no run was stored")
    proc = eval_cli("runs", "--db", str(db))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out == ""  # no '0/0 done' run for the pickers


def test_one_model_from_a_comma_list_and_messages_name_the_flag_used(gta_path, tmp_path):
    folder = gta_folder(gta_path, tmp_path / "gta")
    db = tmp_path / "mat.db"
    with oracle_server(gta_path, models=["mat-test", "other"]) as server:
        proc = eval_cli("gta", "--data", str(folder), "--db", str(db), "--base-url", server.url, "--ids", "130",
                        env_extra={"MAT_MODEL": "mat-test, other"})
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert {r.body.get("model") for r in server.chat_requests} == {"mat-test"}  # not the literal "mat-test, other"
    assert "100.00% (1/1)" in score_line(out, "AnsAcc")

    proc = eval_cli("gta", "--data", str(folder), "--db", str(db), "--local-model", str(tmp_path / "nonexistent"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and err.count("\n") == 1
    assert "--local-model" in err and "MAT_LOCAL_MODEL" not in err


@pytest.mark.bwrap
def test_a_database_in_a_read_only_folder_is_one_line_naming_it(gta_path, tmp_path):
    from tests.support.jail import jailed, one_line
    from tests.test_eval_run import run

    folder = gta_folder(gta_path, tmp_path / "gta")
    locked = tmp_path / "locked"
    locked.mkdir()
    one_line(jailed([sys.executable, "-m", "eval", "gta", "--data", str(folder), "--db", str(locked / "mat.db"),
                     "--tiny"], read_only=[locked]), str(locked / "mat.db"))

    run(tmp_path, folder, oracle_answer, "done")  # a stored run, in tmp_path/data/mat.db
    db = tmp_path / "data" / "mat.db"
    for leftover in db.parent.glob("mat.db-*"):  # as a database copied from elsewhere: no WAL files beside it
        leftover.unlink()
    result = jailed([sys.executable, "-m", "eval", "report", "done", "--db", str(db)], read_only=[db.parent])
    if result.returncode == 0:  # SQLite could read it after all: then the report must be right
        assert "100.00% (6/6)" in score_line(result.stdout, "AnsAcc")
    else:
        one_line(result, str(db))
    one_line(jailed([sys.executable, "-m", "eval", "report", "done", "--db", str(db), "--html",
                     str(locked / "report.html")], read_only=[locked]), str(locked / "report.html"), "read-only")
    assert list(locked.iterdir()) == []


@pytest.mark.bwrap
def test_a_report_cut_short_by_a_full_disk_leaves_the_previous_one(gta_path, tmp_path):
    from tests.support.sandbox_levels import require_bwrap
    from tests.test_eval_run import run

    require_bwrap()
    run(tmp_path, gta_folder(gta_path, tmp_path / "gta"), oracle_answer, "done")
    disk = tmp_path / "disk"
    disk.mkdir()
    report = disk / "report.html"
    # On a 256 KiB disk holding an earlier report and 200 KB of other files, the new report does not fit.
    script = (f"printf earlier > {report} && head -c 200000 /dev/zero > {disk}/filler && "
              f"{sys.executable} -m eval report done --db {tmp_path}/data/mat.db --html {report}; "
              f"echo exit=$? && cat {report} && echo && ls -A {disk}")
    result = subprocess.run(["bwrap", "--dev-bind", "/", "/", "--size", str(256 * 1024), "--tmpfs", str(disk),
                             "sh", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)})
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"error: {report}: no space left"), result.stderr
    assert result.stdout.splitlines()[-4:] == ["exit=2", "earlier", "filler", "report.html"]  # nothing half-written
