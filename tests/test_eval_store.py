"""What an evaluation keeps in the store: its run record on the shared run model (and an older database moved
onto it), the images its steps drew, and nothing in the Review queue."""

from __future__ import annotations

import hashlib
import json
import sqlite3

from PIL import Image

from agent.config import Settings
from agent.steps import Task, Trajectory
from core import runs
from eval.benchmarks import load_gta
from eval.report import list_runs, run_scores
from eval.runner import EvalConfig, create_run, finish_run, open_store, run_eval
from eval.schema import EVAL_MIGRATIONS
from review import benchmarks
from review.store import Store
from tests.support.replay import ReplayModel
from tests.support.samples import gta_folder

DRAW = ("Thought: I draw the plot.\nCode:\n```py\nfrom PIL import Image\n"
        "Image.new('RGB', (32, 32), (255, 0, 0)).save('plot.png')\nprint('saved plot.png')\n```")
ANSWER = "Thought: Done.\nCode:\n```py\nfinal_answer('68')\n```"


def test_a_step_image_is_the_one_the_run_drew_not_a_file_of_that_name_in_the_working_directory(
        gta_path, tmp_path, monkeypatch):
    folder = gta_folder(gta_path, tmp_path / "gta")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    Image.new("RGB", (8, 8), (0, 0, 255)).save(elsewhere / "plot.png")  # an unrelated file under the same name
    monkeypatch.chdir(elsewhere)
    settings = Settings(data_dir=tmp_path / "data")
    benchmark = load_gta(folder).select(["130"])
    config = EvalConfig(benchmark="gta", data=str(folder), profile="gta", model="scripted", timeout=120)
    with open_store(settings.db) as store:
        run_id = create_run(store, config, 1, "draw")
        [(_, outcome)] = list(run_eval(store, run_id, benchmark, ReplayModel([DRAW, ANSWER]), settings, config,
                                       show_progress=False))
        assert outcome.status == "done" and outcome.trajectory.steps[0].images == ["plot.png"]
        detail = store.detail(outcome_trajectory(store, run_id))
    [drawn] = [ref for ref in detail.images if ref.name == "plot.png"]
    assert not drawn.missing
    with Image.open(drawn.path) as stored:
        assert stored.size == (32, 32) and stored.convert("RGB").getpixel((0, 0)) == (255, 0, 0)


def outcome_trajectory(store, run_id: str) -> str:
    return store.db.value("SELECT trajectory_id FROM eval_results WHERE run_id = ?", (run_id,))


def test_an_evaluation_run_is_a_shared_run_record_with_its_own_columns(gta_path, tmp_path):
    folder = gta_folder(gta_path, tmp_path / "gta")
    settings = Settings(data_dir=tmp_path / "data")
    benchmark = load_gta(folder).select(["130", "115"])
    config = EvalConfig(benchmark="gta", data=str(folder), profile="gta", model="scripted", timeout=120)
    with open_store(settings.db) as store:
        run_id = create_run(store, config, 2, "shared")
        list(run_eval(store, run_id, benchmark, lambda task: ReplayModel([ANSWER]), settings, config,
                      show_progress=False))
        finish_run(store, run_id, "done")
        record = runs.get(store.db, run_id)
        assert (record.kind, record.status, record.progress, record.config["model"]) == ("eval", "done", "2/2",
                                                                                          "scripted")
        assert record.fingerprint and record.ended_at
        [info] = list_runs(store)
        assert (info.id, info.benchmark, info.model, info.done, info.total) == ("shared", "gta", "scripted", 2, 2)
        config.timeout = 30  # a resume may change the limits, and the record keeps them
        assert create_run(store, config, 2, run_id) == run_id
        assert runs.get(store.db, run_id).config["timeout"] == 30 and runs.get(store.db, run_id).running


def test_an_older_database_moves_its_evaluation_runs_onto_the_shared_record(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the evaluation tables as the previous release left them (version 2)
        conn.execute("CREATE TABLE schema_version (package TEXT NOT NULL, version INTEGER NOT NULL,"
                     " applied_at TEXT NOT NULL, PRIMARY KEY (package, version))")
        for version, script in enumerate(EVAL_MIGRATIONS[:2], start=1):
            conn.executescript(script)
            conn.execute("INSERT INTO schema_version VALUES ('eval', ?, '2026-01-01')", (version,))
        config = {"benchmark": "gta", "data": "/gta", "profile": "gta", "model": "qwen", "timeout": 300}
        conn.execute("INSERT INTO eval_runs (id, benchmark, data, split, profile, model, adapter, config, total,"
                     " status, message, created_at, finished_at, mode) VALUES ('old', 'gta', '/gta', '', 'gta',"
                     " 'qwen', 'lora', ?, 2, 'done', '1 timed out', '2026-01-02T10:00:00', '2026-01-02T11:00:00',"
                     " 'end-to-end')", (json.dumps(config),))
        for task, prediction, status in (("130", "68", "done"), ("115", None, "timeout")):
            conn.execute("INSERT INTO eval_results (run_id, task_id, position, kind, question, truth, prediction,"
                         " status, finished_at) VALUES ('old', ?, 0, 'objective', 'How many?', ?, ?, ?,"
                         " '2026-01-02T10:30:00')",
                         (task, json.dumps({"whitelist": [["68"]], "blacklist": None}), prediction, status))
    with open_store(db) as store:
        record = runs.get(store.db, "old")
        assert (record.kind, record.status, record.progress, record.message) == ("eval", "done", "2/2", "1 timed out")
        assert (record.config, record.started_at, record.ended_at) == (config, "2026-01-02T10:00:00",
                                                                        "2026-01-02T11:00:00")
        [info] = list_runs(store)
        assert (info.model, info.adapter, info.profile, info.mode) == ("qwen", "lora", "gta", "end-to-end")
        scores = {s.name + "/" + s.group: s for s in run_scores(store, "old")}
        assert scores["AnsAcc/objective"].text().startswith("50.00% (1/2")
        assert scores["Timed out/overall"].numerator == 1
    with sqlite3.connect(db) as conn:
        assert {row[2] for row in conn.execute("PRAGMA foreign_key_list(eval_results)")} == {"runs"}
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        columns = {row[1] for row in conn.execute("PRAGMA table_info(eval_runs)")}
        assert "status" not in columns and "model" in columns  # what every run has lives in `runs` only


def queue_state(store: Store, out) -> dict:
    """Everything curation sees of the store: the list, its counts and facets, the next item, stats, an export."""
    return {"rows": [(row.id, row.status) for row in store.query(limit=1000).rows], "counts": store.counts(),
            "facets": store.facets(), "next": store.pending_ids(), "stats": store.stats(),
            "exported": store.export("mmtraj", out)}


def test_a_gta_run_leaves_review_as_it_was_remembers_its_queries_and_reports_contamination(
        gta_path, mmtraj_records, tmp_path):
    from eval.ui import trajectory_view
    from tests.test_eval_cli import eval_cli, oracle_server

    folder = gta_folder(gta_path, tmp_path / "gta")
    question = json.loads(gta_path.read_text())["130"]["dialogs"][0]["content"]
    db = tmp_path / "mat.db"
    with Store(db) as store:
        store.import_records(mmtraj_records, source="release")
        copied = store.add_trajectory(Trajectory(Task(question, images=["coins.jpg"]), "system"), source="chat",
                                      image_files={"coins.jpg": folder / "image" / "image_311.jpg"})
        before = queue_state(store, tmp_path / "before.json")
    with oracle_server(gta_path) as server:
        proc = eval_cli("gta", "--data", str(folder), "--db", str(db), "--base-url", server.url, "--model",
                        "mat-test", "--run-id", "run", "--concurrency", "4")
        out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert "Contamination: no training trajectory is approved in this store yet, so none overlaps GTA" in out
    with Store(db) as store:
        assert queue_state(store, tmp_path / "after.json") == before  # no benchmark task entered curation
        assert "How many dollars" in trajectory_view(store, "run", "130").trajectory.task.text  # Evaluate shows it
        known = {query.id: query for query in benchmarks.known(store, ["gta"])["gta"]}
        store.decide(copied, "ana", "approved")
    assert len(known) == 12 and known["130"].text == question
    picture = (folder / "image" / "image_311.jpg").read_bytes()
    assert known["130"].images == (hashlib.sha256(picture).hexdigest(),)  # for training to refuse it, too

    report = tmp_path / "report.html"
    proc = eval_cli("report", "run", "--db", str(db), "--html", str(report))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    line = next(line for line in out.splitlines() if line.startswith("Contamination: "))
    assert line.startswith("Contamination: GTA: 1 of 12 benchmark queries (8.3%) overlap 1 of 1 training queries")
    assert "exact 1" in line and "same image 1" in line
    assert line.removeprefix("Contamination: ") in report.read_text().replace("&gt;", ">")
