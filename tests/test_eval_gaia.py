"""GAIA from a metadata.jsonl folder: loading, per-level accuracy, and MAT's re-formatting pass kept apart.

No GAIA data ships with the project (the dataset is gated), so the tests write a small validation folder in
GAIA's layout: `metadata.jsonl` rows with task_id, Question, Level, Final answer, file_name, files beside it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from eval.benchmarks import load_gaia
from eval.errors import EvalError
from tests.support.openai_server import FakeOpenAI
from tests.test_eval_cli import eval_cli
from tests.test_eval_run import answer_turn

ROWS = [
    {"task_id": "t1", "Question": "How many legs does a spider have?", "Level": 1, "Final answer": "8",
     "file_name": ""},
    {"task_id": "t2", "Question": "Name the two primary colours of the flag in the attached file.", "Level": 1,
     "Final answer": "red, white", "file_name": "flag.txt"},
    {"task_id": "t3", "Question": "What was the price of the ticket in dollars?", "Level": 2,
     "Final answer": "1000", "file_name": ""},
    {"task_id": "t4", "Question": "Which city hosted the games?", "Level": 3, "Final answer": "Paris",
     "file_name": ""},
]
# What the agent answers: t1 right, t2 right (list), t3 right only once re-formatted, t4 nothing at all.
AGENT = {"spider": "8", "flag": "Red; White", "ticket": "It cost $1,000 in total", "city": ""}
MAT_PROMPT = "Format the following answer according to these rules:"  # MAT's FORMAT_ANSWER_PROMPT_GAIA


def gaia_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    (root / "flag.txt").write_text("The flag is red and white.")
    return root


def responder(body: dict) -> str:
    text = json.dumps(body["messages"])
    if MAT_PROMPT in text:  # MAT's re-formatting pass: it asks for an educated guess where there is no answer
        return "1000" if "$1,000" in text else "Educated guess: Paris"
    return answer_turn(next(a for key, a in AGENT.items() if key in text))


def test_loader_reads_levels_files_and_unknown_answers(tmp_path):
    folder = gaia_folder(tmp_path / "2023" / "validation")
    benchmark = load_gaia(tmp_path)  # the dataset root: 2023/validation is found
    assert [t.level for t in benchmark.tasks] == ["1", "1", "2", "3"]
    assert benchmark.tasks[1].files == [folder / "flag.txt"] and not benchmark.missing
    (folder / "flag.txt").unlink()
    assert "flag.txt" in load_gaia(folder).missing_summary()
    (folder / "metadata.jsonl").write_text(json.dumps({**ROWS[0], "Final answer": "?"}) + "\n")
    assert load_gaia(folder).tasks[0].truth is None  # the test split's '?' is no answer to score against
    (folder / "metadata.jsonl").write_text("{broken\n")
    with pytest.raises(EvalError, match=r"metadata.jsonl:1"):
        load_gaia(folder)
    with pytest.raises(EvalError, match="no metadata.jsonl"):
        load_gaia(tmp_path / "empty")


def test_gaia_run_scores_per_level_and_reports_reformatting_apart(tmp_path):
    folder = gaia_folder(tmp_path / "gaia")
    db = tmp_path / "mat.db"
    with FakeOpenAI(responder=responder) as server:
        proc = eval_cli("gaia", "--data", str(folder), "--db", str(db), "--base-url", server.url, "--model",
                        "mat-test", "--run-id", "g1", "--reformat", "--concurrency", "2")
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.startswith("Accuracy")]
    table = {(row[0], row[1]): row[2:] for row in rows}
    assert table[("Accuracy", "level 1")][:2] == ["GAIA official", "100.00% (2/2)"]
    assert table[("Accuracy", "level 2")][:2] == ["GAIA official", "0.00% (0/1)"]
    assert table[("Accuracy", "level 3")][:2] == ["GAIA official", "0.00% (0/1)"]
    assert table[("Accuracy", "overall")][:2] == ["GAIA official", "50.00% (2/4)"]
    protocol, level2 = table[("Accuracy (MAT re-formatted)", "level 2")][:2]
    assert "not official" in protocol and level2 == "100.00% (1/1)"
    assert table[("Accuracy (MAT re-formatted)", "level 3")][1] == "100.00% (1/1)"  # the empty answer, guessed
    assert table[("Accuracy (MAT re-formatted)", "overall")][1] == "100.00% (4/4)"
    # The paper's numbers are MAT's re-formatted ones: plain beside those, marked beside the official ones.
    assert table[("Accuracy (MAT re-formatted)", "level 1")][2] == "26.42% (14/53)"
    assert table[("Accuracy", "level 1")][2] == "26.42% (14/53), MAT re-formatted"
    assert "2 wrong answer(s) rewritten, 2 right one(s) kept" in err
    asked = [r for r in server.chat_requests if MAT_PROMPT in json.dumps(r.body["messages"])]
    assert len(asked) == 2  # only the wrong answers, the empty one included, went to the re-formatter
    from eval.reformat import PROMPT

    sent = [r.body["messages"][0]["content"] for r in asked]
    assert PROMPT.read_text().format(question=ROWS[3]["Question"], answer="") in sent  # MAT's prompt, as it is


def test_hub_dataset_offline_is_one_clear_line(tmp_path):
    proc = eval_cli("gaia", "--db", str(tmp_path / "mat.db"), "--base-url", "http://127.0.0.1:9/v1")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.startswith("error: could not load gaia-benchmark/GAIA from the Hub") and "--data DIR" in err
    assert err.count("\n") == 1 and "Traceback" not in err
