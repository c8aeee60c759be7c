"""Runs on the GTA-shaped fixture through the real loop and sandbox, with scripted answers as the model.

Each test lays the fixture's dataset.json in a temp folder beside its pictures, drawn at test time
(the agent sees them; the scripted answers do not depend on them).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.config import Settings
from eval.benchmarks import load_gta
from eval.errors import EvalError
from eval.metrics import load_results
from eval.report import run_scores
from eval.runner import EvalConfig, create_run, finish_run, open_store, run_eval
from tests.support.replay import ReplayModel
from tests.support.samples import gta_folder


def answer_turn(answer: str) -> str:
    return f"Thought: I know the answer.\nCode:\n```py\nfinal_answer({answer!r})\n```"


def oracle_answer(truth) -> str:
    if isinstance(truth, dict):
        return ", ".join(group[0] for group in truth["whitelist"])
    return "Here is the picture you asked for."


def scripted(answer_for):
    """A model per task: one replayed turn calling final_answer with `answer_for(truth)`."""
    return lambda task: ReplayModel([answer_turn(answer_for(task.truth))])


def run(tmp_path: Path, folder: Path, answer_for, run_id: str) -> dict[str, dict]:
    """Run the GTA folder with scripted answers into tmp_path/data/mat.db; the scores under each protocol."""
    settings = Settings(data_dir=tmp_path / "data")
    benchmark = load_gta(folder)
    config = EvalConfig(benchmark="gta", data=str(folder), profile="gta", model="scripted", concurrency=2,
                       timeout=60)
    with open_store(settings.db) as store:
        create_run(store, config, len(benchmark.tasks), run_id)
        outcomes = list(run_eval(store, run_id, benchmark, scripted(answer_for), settings, config,
                                 show_progress=False))
        assert len(outcomes) == len(benchmark.tasks)
        finish_run(store, run_id, "done")
        return {p: {s.name + "/" + s.group: s for s in run_scores(store, run_id, p)} for p in ("official", "mat",
                                                                                              "fixed")}


@pytest.fixture(scope="module")
def scored(gta_path, tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("gta")
    folder = gta_folder(gta_path, tmp / "gta")
    return {
        "oracle": run(tmp, folder, oracle_answer, "oracle"),
        "wrong": run(tmp, folder, lambda truth: "I could not find it.", "wrong"),
        "near": run(tmp, folder, lambda truth: oracle_answer(truth) + "0", "near"),
    }


def test_oracle_scores_full_marks_under_every_protocol(scored):
    for protocol in ("official", "mat", "fixed"):
        ans = scored["oracle"][protocol]["AnsAcc/objective"]
        assert (ans.numerator, ans.denominator, ans.value) == (6, 6, 100.0)
        assert ans.protocol == protocol


def test_wrong_answers_score_zero_under_every_protocol(scored):
    for protocol in ("official", "mat", "fixed"):
        ans = scored["wrong"][protocol]["AnsAcc/objective"]
        assert (ans.numerator, ans.denominator) == (0, 6)


def test_near_misses_pass_only_mats_substring_rule(scored):
    # '680' for '68', '4.8160' for '4.816': whole-word matching says no, substring matching says yes.
    assert scored["near"]["official"]["AnsAcc/objective"].numerator == 0
    assert scored["near"]["fixed"]["AnsAcc/objective"].numerator == 0
    assert scored["near"]["mat"]["AnsAcc/objective"].numerator == 6


def test_code_exec_and_tool_acc_state_their_denominators(scored):
    code = scored["oracle"]["official"]["CodeExec/overall"]
    assert (code.numerator, code.denominator) == (12, 12)  # one final_answer step per task, all ran
    tools = scored["oracle"]["official"]["ToolAcc recall/overall"]
    assert tools.numerator == 0 and tools.denominator > 12  # the oracle called no tool; GTA's references did
    assert "(0/" in tools.text()
    assert scored["oracle"]["official"]["Timed out/overall"].text().startswith("0.00% (0/12")


def test_every_trajectory_is_stored_and_viewable(gta_path, tmp_path):
    from review.store import Store
    from review.viewer import View, render

    folder = gta_folder(gta_path, tmp_path / "gta")
    run(tmp_path, folder, oracle_answer, "view")
    with Store(Settings(data_dir=tmp_path / "data").db) as store:
        results = load_results(store.db, "view")
        assert all(r.trajectory_id for r in results)
        detail = store.detail(next(r for r in results if r.task_id == "130").trajectory_id)
        page = render(View(trajectory=detail.trajectory, images=detail.images, answer=detail.answer,
                           reference_answer=detail.reference_answer))
        assert "How many dollars" in page and "68" in page
        assert not any(image.missing for image in detail.images)


def test_loader_names_missing_images(gta_path, tmp_path):
    shutil.copy(gta_path, tmp_path / "dataset.json")
    benchmark = load_gta(tmp_path)
    assert len(benchmark.tasks) == 12 and len(benchmark.missing) == 12
    assert "image/image_190.jpg" in benchmark.missing_summary()
    with pytest.raises(EvalError, match="dataset.json"):
        load_gta(tmp_path / "nowhere")
    (tmp_path / "bad" ).mkdir()
    (tmp_path / "bad" / "dataset.json").write_text("{not json")
    with pytest.raises(EvalError, match="not readable JSON"):
        load_gta(tmp_path / "bad")
