"""Evaluate compares base, SFT and DPO side by side on the tasks all three finished, each labelled by what it is."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from agent.config import Settings
from eval.benchmarks import load_gta
from eval.report import _clip, html_report
from eval.runner import EvalConfig, create_run, finish_run, open_store, run_eval
from eval.ui import results_view, run_choices
from tests.support.app_server import running_app
from tests.test_eval_run import gta_folder, oracle_answer, scripted

pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)")
BASE = "Qwen2-VL-7B-Instruct"
LABELS = [f"base ({BASE})", f"sft ({BASE} + SFT adapter sft-run)",
          f"dpo ({BASE} + DPO adapter dpo-run (on SFT sft-run))"]


def adapter(root: Path, name: str, **config) -> str:
    """An adapter folder as training leaves it: OUT/adapter with the run's train_config.json."""
    folder = root / name / "adapter"
    folder.mkdir(parents=True)
    (folder / "train_config.json").write_text(json.dumps(config))
    return str(folder)


@pytest.fixture(scope="module")
def three_runs(gta_path, tmp_path_factory) -> Settings:
    """base answers wrong; the SFT and DPO adapters answer right; the DPO run stopped one task short."""
    tmp = tmp_path_factory.mktemp("compare")
    benchmark = load_gta(gta_folder(gta_path, tmp / "gta")).select(limit=4)
    sft = adapter(tmp / "runs", "sft-run", method="sft", adapter="")
    dpo = adapter(tmp / "runs", "dpo-run", method="dpo", adapter=sft)
    settings = Settings(data_dir=tmp / "data")
    with open_store(settings.db) as store:
        for run_id, folder, answer in (("base", "", lambda truth: "no idea"), ("sft", sft, oracle_answer),
                                       ("dpo", dpo, oracle_answer)):
            model = f"{BASE} + adapter" if folder else BASE  # as `python -m eval` names a checkpoint with one
            config = EvalConfig(benchmark="gta", data=str(benchmark.root), profile="gta", model=model, adapter=folder,
                                concurrency=2, timeout=60)
            create_run(store, config, len(benchmark.tasks), run_id)
            list(run_eval(store, run_id, benchmark, scripted(answer), settings, config, show_progress=False))
            finish_run(store, run_id, "done")
    with sqlite3.connect(settings.db) as conn:
        conn.execute("DELETE FROM eval_results WHERE run_id = 'dpo' AND position = 3")
    return settings


def test_the_tab_compares_the_three_runs_side_by_side_labelled_by_model_and_adapter(three_runs):
    with open_store(three_runs.db) as store:
        rows, header, chart, note = results_view(store, ["base", "sft", "dpo"], "official")
        choices = [label for label, _ in run_choices(store)]
    assert header[3:6] == LABELS
    assert note.startswith("Compared on the 3 task(s) all 3 runs finished (results stored: base: 4, sft: 4, dpo: 3)")
    assert all(f">{_clip(label)}</text>" in chart for label in LABELS)  # each run is a series of the chart
    assert any(" · Qwen2-VL-7B-Instruct + DPO adapter dpo-run (on SFT sft-run) · 3/4 · done" in c for c in choices)

    with running_app(three_runs) as url:  # the same through the launched tab
        from gradio_client import Client

        scores, *_ = Client(url, verbose=False).predict(["base", "sft", "dpo"], "official", api_name="/eval_scores")
    assert scores["headers"][3:6] == LABELS


def test_the_report_names_what_each_run_evaluated_and_lists_each_steps_flips(three_runs):
    with open_store(three_runs.db) as store:
        page = html_report(store, ["base", "sft", "dpo"])
    assert all(f"<th>{label}</th>" in page for label in LABELS)  # the scores, a column per run
    assert f"<td>{BASE} + SFT adapter sft-run</td>" in page  # the runs table says what each one evaluated
    assert "Tasks that flipped (base → sft)" in page and "Tasks that flipped (sft → dpo)" in page
