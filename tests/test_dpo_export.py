"""`python -m review export --format trl-preference|llamafactory-ranking`: the pairs as other trainers read them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.render import assistant_text, render_messages, text_message
from review.store import Store
from tests.support.preferences import preference_records, preference_store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def db(tmp_path, mmtraj_records, release_image_dir) -> Path:
    return preference_store(tmp_path / "mat.db", mmtraj_records, release_image_dir)


def review(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "review", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def stored(db: Path) -> list:
    """Everything a reviewer made, to show an export changes none of it."""
    with Store(db) as store:
        return store.db.read("SELECT * FROM events ORDER BY id") + store.db.read(
            "SELECT id, status, record FROM trajectories ORDER BY seq")


def test_trl_preference_export_is_the_renderers_messages_with_images_in_place(db, tmp_path):
    out = tmp_path / "trl"
    result = review("export", "--db", db, "--format", "trl-preference", "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{out}: 3 preference pairs written"
    lines = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    chart = next(line for line in lines if line["trajectory_id"] == "Tp3nWc8e")
    assert (chart["source"], chart["step"]) == ("edit", 1)
    with Store(db) as store:
        edited = store.detail("Tp3nWc8e").trajectory
    (picture,) = chart["images"]
    assert (out / picture).is_file() and picture.startswith("images/")
    prefix = type(edited)(edited.task, edited.system_prompt, edited.steps[:1], edited.task_message)
    assert chart["prompt"] == render_messages(prefix, [picture])  # byte for byte the renderer's
    assert chart["chosen"] == [text_message("assistant", assistant_text(edited.steps[1].model_output))]
    assert chart["rejected"][0]["content"][0]["text"].startswith("Thought: I will draw the six values")
    assert {line["source"] for line in lines} == {"edit", "rejected-vs-approved"}


def test_llamafactory_ranking_export_alternates_turns_and_places_each_image(db, tmp_path, mmtraj_records):
    out = tmp_path / "lf"
    assert review("export", "--db", db, "--format", "llamafactory-ranking", "--out", out).returncode == 0
    records = json.loads((out / "preferences.json").read_text())
    systems = {record["conversations"][0]["value"] for record in preference_records(mmtraj_records)}
    info = json.loads((out / "dataset_info.json").read_text())["mat_preferences"]
    assert info["ranking"] is True and info["formatting"] == "sharegpt" and len(records) == 3
    for record in records:
        roles = [turn["from"] for turn in record["conversations"]]
        assert roles == ["human", "gpt"] * (len(roles) // 2) + ["human"]
        shown = sum(turn["value"].count("<image>") for turn in record["conversations"])
        assert shown == len(record["images"]) and all((out / path).is_file() for path in record["images"])
        assert record["chosen"]["from"] == record["rejected"]["from"] == "gpt"
        assert record["system"] in systems
    retry = next(r for r in records if "rate limit" in r["conversations"][2]["value"].lower())
    assert retry["chosen"]["value"].startswith("Thought: The search hit a rate limit")
    assert retry["rejected"]["value"].startswith("Thought: The search failed, so I will answer")


def test_a_pair_whose_prompt_no_longer_renders_is_left_out_in_one_line_and_nothing_changes(db, tmp_path):
    with Store(db) as store:
        picture = next(ref.path for ref in store.detail("Tp3nWc8e").images if ref.path is not None)
    picture.unlink()  # the store's copy of the chart is gone
    before = stored(db)
    out = tmp_path / "trl"
    result = review("export", "--db", db, "--format", "trl-preference", "--out", out)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.count("\n") == 1
    assert "2 preference pairs written; 1 left out because their prompt no longer renders (the edit pair at " \
           "step 2 of Tp3nWc8e: its picture 'data/open_llava_next/chartqa/train/png/multi_col_2841.png' is " \
           "missing from the store)" in result.stdout
    assert len((out / "preferences.jsonl").read_text().splitlines()) == 2
    assert stored(db) == before

    refused = review("export", "--db", db, "--format", "trl-preference", "--out", out, "--status", "approved")
    assert refused.returncode == 2 and refused.stderr.startswith("error: --status chooses trajectories")
