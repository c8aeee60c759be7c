"""The contamination check on small generated data: a GAIA-shaped folder, a release file and a real store.

The benchmark has four questions: a long one (copied into a training task inside a longer text), a
nine-word one (copied whole), a five-word one (too short for word overlap, caught only as a duplicate) and
one whose attached picture a training task shows byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from review.contamination import Query, normalize, overlap

LONG = ("A paper about AI regulation submitted in June 2022 shows a figure with three axes; which label word "
        "describes a type of society?")
NINE = "How many studio albums did the band publish before 2009?"
SHORT = "Who painted this portrait?"
PICTURE = "What is the animal in the attached picture doing?"
BENCHMARK = [Query("long", LONG), Query("nine", NINE), Query("short", SHORT), Query("picture", PICTURE, ("h1",))]


def pairs(train: list[Query]) -> dict[tuple[str, str], tuple[str, ...]]:
    return {(p.train_id, p.benchmark_id): p.kinds for p in overlap(train, BENCHMARK, name="GAIA").pairs}


def test_each_kind_of_overlap_is_found_and_nothing_else():
    found = pairs([
        Query("copy", "  a PAPER about AI-regulation, submitted in June 2022 shows a figure with three axes; which "
                      "label word describes a type of society?"),
        Query("inside", "Context first. " + LONG.split(";")[0] + ". Then something else entirely."),
        Query("whole", f"Please answer: {NINE.lower()} Use the web."),
        Query("edited", "Who painted this portrait ?"),
        Query("reworded", LONG.replace("figure", "chart")),
        Query("short-inside", "Tell me who painted this portrait and when."),
        Query("same-picture", "Describe the colours.", ("h1",)),
        Query("unrelated", "How many calories are in 200 grams of avocados? Please check the USDA database."),
    ])
    assert found[("copy", "long")] == ("exact", "near", "ngram")
    assert found[("inside", "long")] == ("ngram",)  # 13 words in a row, in a longer text
    assert found[("whole", "nine")] == ("ngram",)  # a 9-word question inside a training task
    assert found[("edited", "short")] == ("exact", "near")  # punctuation and case do not hide a copy
    assert found[("reworded", "long")] == ("near",)  # one word changed: no 13 words in a row, still a copy
    assert ("short-inside", "short") not in found  # under 8 words: a 4-word phrase is no evidence
    assert found[("same-picture", "picture")] == ("image",)
    assert not any(train == "unrelated" for train, _ in found)


def test_summary_counts_benchmark_queries_and_the_training_queries_to_leave_out():
    result = overlap([Query("copy", LONG), Query("pic", "x", ("h1",), missing_images=2), Query("other", "y")],
                     BENCHMARK, name="GAIA validation")
    assert result.benchmark_ids() == {"long", "picture"} and result.train_ids() == {"copy", "pic"}
    line = result.summary()
    assert line.startswith("GAIA validation: 2 of 4 benchmark queries (50.0%) overlap 2 of 3 training queries")
    assert "exact 1" in line and "13-gram 1" in line and "same image 1" in line and "(2 not found" in line
    assert normalize("Ünïcode—and  PUNCT!") == "ünïcode and punct"


# ------------------------------------------------------------------ the CLI and the tab on generated files


def picture(path: Path, colour: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), colour).save(path)
    return path


@pytest.fixture
def sides(tmp_path) -> tuple[Path, Path, Path]:
    """(GAIA folder, release file, its image folder): one training task copies a question, one the picture."""
    gaia = tmp_path / "gaia"
    gaia.mkdir()
    picture(gaia / "cat.png", (10, 200, 30))
    rows = [{"task_id": q.id, "Question": q.text, "Level": 1, "Final answer": "x",
             "file_name": "cat.png" if q.id == "picture" else ""} for q in BENCHMARK]
    (gaia / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    images = tmp_path / "release_images"
    picture(images / "seen.png", (10, 200, 30))  # the same bytes as the benchmark's picture
    picture(images / "other.png", (200, 10, 30))
    tasks = {"t-copy": (LONG, None), "t-pic": ("Describe the colours.", "seen.png"),
             "t-clean": ("How long should I boil an egg?", "other.png")}
    records = [release_record(rid, text, image) for rid, (text, image) in tasks.items()]
    train = tmp_path / "train.json"
    train.write_text(json.dumps(records))
    return gaia, train, images


def release_record(record_id: str, text: str, image: str | None) -> dict:
    user = (f"Picture 1: <img>{image}</img>\n" if image else "") + f"Task: {text}\n"
    step = "Thought: I know it.\nCode:\n```py\nfinal_answer('x')\n```"
    return {"id": record_id, "image": image or {}, "answer": "x", "correct": "yes",
            "conversations": [{"from": "system", "value": "You are an agent."}, {"from": "user", "value": user},
                              {"from": "assistant", "value": step}]}


def test_cli_checks_a_release_file_with_its_images(sides, tmp_path):
    from tests.test_eval_cli import eval_cli

    gaia, train, images = sides
    out_json = tmp_path / "overlap.json"
    proc = eval_cli("contamination", "--data", str(train), "--images", str(images), "--benchmark", "gaia",
                    "--benchmark-data", str(gaia), "--json", str(out_json))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.startswith("GAIA validation: 2 of 4 benchmark queries (50.0%) overlap 2 of 3 training queries")
    assert "images compared: 2 training, 1 benchmark" in out
    lines = out.splitlines()
    assert any(line.split()[:3] == ["long", "t-copy", "exact,"] for line in lines)
    assert any(line.split()[:3] == ["picture", "t-pic", "image"] for line in lines)
    saved = json.loads(out_json.read_text())
    assert {(p["train_id"], p["benchmark_id"]) for p in saved["pairs"]} == {("t-copy", "long"), ("t-pic", "picture")}


def test_cli_checks_the_stores_approved_trajectories_never_evaluation_runs(sides, tmp_path):
    from agent.steps import Task, Trajectory
    from review.store import Store
    from tests.test_eval_cli import eval_cli

    gaia, train, images = sides
    db = tmp_path / "mat.db"
    with Store(db) as store:
        store.import_records(json.loads(train.read_text()), source="train", images=images)
        ids = {row.task: row.id for row in store.query().rows}
        store.decide(ids[LONG], "ana", "approved")
        store.decide(ids["How long should I boil an egg?"], "ana", "approved")  # t-pic stays pending
        store.add_trajectory(Trajectory(Task(NINE), "system"), source="eval/gaia-run", record_id="gaia-run/nine",
                             purpose="evaluation")  # as the runner stores it
    proc = eval_cli("contamination", "--db", str(db), "--benchmark", "gaia", "--benchmark-data",
                    str(gaia / "metadata.jsonl"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.startswith("GAIA validation: 1 of 4 benchmark queries (25.0%) overlap 1 of 2 training queries")
    proc = eval_cli("contamination", "--db", str(db), "--status", "any", "--benchmark", "gaia", "--benchmark-data",
                    str(gaia))
    out, _ = proc.communicate(timeout=60)
    assert "2 of 4 benchmark queries" in out and "of 3 training queries" in out  # the eval run's copy is not one
    proc = eval_cli("contamination", "--db", str(tmp_path / "none.db"), "--benchmark", "gta", "--benchmark-data",
                    str(gaia))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "none.db: no such database" in err and err.count("\n") == 1


def test_the_evaluate_tab_runs_the_same_check(sides, tmp_path):
    from gradio_client import Client

    from agent.config import Settings
    from eval.ui import TRAIN_FILE
    from tests.support.app_server import running_app

    gaia, train, images = sides
    with running_app(Settings(data_dir=tmp_path / "data")) as url:
        client = Client(url, verbose=False)
        summary, table = client.predict(TRAIN_FILE, str(train), str(images), "gaia", str(gaia), "validation",
                                        api_name="/eval_contamination")
        refused = client.predict(TRAIN_FILE, "", "", "gaia", str(gaia), "validation", api_name="/eval_contamination")
    assert summary.startswith("GAIA validation: 2 of 4 benchmark queries")
    assert sorted((row[0], row[1]) for row in table["data"]) == [("long", "t-copy"), ("picture", "t-pic")]
    assert all(output == {"__type__": "update"} for output in refused)  # a warning; the page is left as it was
