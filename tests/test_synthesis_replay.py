"""The replay verifier re-runs stored code in a fresh sandbox and flags observations that do not reproduce."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest

from review.store import Store
from synthesis.__main__ import main
from synthesis.replay import replay_stored
import synthesis  # noqa: F401 — the synthesis tables

SYSTEM = "You are an expert assistant who can solve any task using code blobs."


def record(record_id: str, image: str = "") -> dict:
    task = (f"Picture 1: <img>{image}</img>\n" if image else "") + "Task: How wide is the picture, and what is 6*7?\n"
    first = ("from PIL import Image\nimg = Image.open(%r)\nprint(img.size[0])" % image) if image else "print(6 * 7)"
    return {"id": record_id, "image": image, "correct": "yes", "answer": "42", "conversations": [
        {"from": "system", "value": SYSTEM},
        {"from": "user", "value": task},
        {"from": "assistant", "value": f"Thought: measure.\nCode:\n```py\n{first}\n```"},
        {"from": "user", "value": f"[OUTPUT OF STEP 0] Observation:\n{'512' if image else '42'}\n"},
        {"from": "assistant", "value": "Thought: search.\nCode:\n```py\nprint(ask_search_agent(query='x'))\n```"},
        {"from": "user", "value": "[OUTPUT OF STEP 1] Observation:\nsome web text\n"},
        {"from": "assistant", "value": "Thought: compute.\nCode:\n```py\nx = [1, 2, 3]\nprint(sum(x))\n```"},
        {"from": "user", "value": "[OUTPUT OF STEP 2] Observation:\n6\n"},
        {"from": "assistant", "value": "Thought: a bad call.\nCode:\n```py\n1 / 0\n```"},
        {"from": "user", "value": "[OUTPUT OF STEP 3] Error: Code execution failed due to the following error:\n"
                                  "division by zero\nNow let's retry."},
        {"from": "assistant", "value": "Thought: done.\nCode:\n```py\nfinal_answer('42')\n```"},
    ]}


@pytest.fixture
def store(tmp_path):
    pytest.importorskip("skimage")
    store = Store(tmp_path / "mat.db")
    return store


def test_an_unaltered_record_reproduces_and_an_altered_one_is_flagged(store, tmp_path):
    import skimage

    images = tmp_path / "images"
    images.mkdir()
    (images / "astronaut.png").write_bytes((Path(skimage.data_dir) / "astronaut.png").read_bytes())
    good = record("good", "astronaut.png")
    altered = copy.deepcopy(record("altered", "astronaut.png"))
    altered["conversations"][7]["value"] = "[OUTPUT OF STEP 2] Observation:\n7\n"  # the sum was really 6
    path = tmp_path / "release.json"
    path.write_text(json.dumps([good, altered]))
    store.import_file(path, source="release", images=images)

    report = replay_stored(store, "good")
    assert report.reproduced and report.flagged == []
    assert [c.status for c in report.steps] == ["same", "unverifiable", "same", "same", "same"]
    assert report.steps[0].got == "512"

    flagged = replay_stored(store, "altered")
    assert flagged.flagged == [2]
    assert (flagged.steps[2].expected, flagged.steps[2].got) == ("7", "6")
    assert "steps 2 did not reproduce" in flagged.summary()


def test_records_whose_files_are_absent_are_reported_not_replayed(store, tmp_path, capsys):
    path = tmp_path / "release.json"
    path.write_text(json.dumps([record("noimage", "coco/train2017/000000000009.jpg")]))
    store.import_file(path, source="release")
    assert main(["replay", "--db", str(store.path), "--source", "release"]) == 0
    out = capsys.readouterr().out
    assert "noimage: not replayed: files missing (coco/train2017/000000000009.jpg)" in out


def release_record(record_id: str, stored: str, attached: str) -> dict:
    """A release-shaped record whose `Attachment:` path names its picture under another prefix than `image`."""
    code = f"from PIL import Image\nprint(Image.open({attached!r}).size[0])"
    return {"id": record_id, "image": stored, "correct": "yes", "answer": "512", "conversations": [
        {"from": "system", "value": SYSTEM},
        {"from": "user", "value": f"Picture 1: <img>{stored}</img>\nTask: How wide is the picture?\n"
                                  f" Attachment: {attached};  "},
        {"from": "assistant", "value": f"Thought: measure it.\nCode:\n```py\n{code}\n```"},
        {"from": "user", "value": "[OUTPUT OF STEP 0] Observation:\n512\n"},
        {"from": "assistant", "value": "Thought: done.\nCode:\n```py\nfinal_answer('512')\n```"},
    ]}


def test_release_attachment_paths_find_the_images_import_stored(store, tmp_path, capsys):
    import skimage

    images = tmp_path / "files" / "coco" / "train2017"
    images.mkdir(parents=True)
    (images / "000000000009.png").write_bytes((Path(skimage.data_dir) / "astronaut.png").read_bytes())
    path = tmp_path / "release.json"
    path.write_text(json.dumps([
        release_record("found", "data/open_llava_next/coco/train2017/000000000009.png",
                       "data/tongagent/coco/train2017/000000000009.png"),
        release_record("gone", "data/open_llava_next/sam/images/sa_1.jpg", "data/tongagent/sam/images/sa_1.jpg"),
    ]))
    store.import_file(path, source="release", images=tmp_path / "files")
    assert main(["replay", "--db", str(store.path), "--source", "release"]) == 0
    captured = capsys.readouterr()
    assert "found: all 2 steps reproduce" in captured.out
    assert "gone: not replayed: files missing (data/open_llava_next/sam/images/sa_1.jpg" in captured.out
    assert "1 replayed, 1 skipped (files missing), 0 with steps that did not reproduce" in captured.err


def test_a_model_tool_without_its_weights_fails_at_once_when_the_hub_is_out_of_reach(tmp_path, monkeypatch):
    """Replay runs model tools' steps as they are (they are then unverifiable): offline, the tool must say so
    at once instead of retrying the hub for half a minute."""
    from huggingface_hub import constants

    from agent.tools import bind_tools, profile_tools
    from agent.tools.base import ToolContext, ToolError

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # and nothing is cached
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    tools = bind_tools(profile_tools("mat"), ToolContext(workdir=tmp_path, attachments={}))
    started = time.monotonic()
    with pytest.raises(ToolError) as refused:
        tools["image_generator"](prompt="a red bicycle")
    assert time.monotonic() - started < 10
    message = str(refused.value)
    assert "\n" not in message and "http://127.0.0.1:9 cannot be reached" in message and "MAT_SD_MODEL" in message


def test_a_replay_is_what_reviews_replay_filter_sees(tmp_path, store):
    """Review's list and bulk decisions filter on the replay's outcome, which synthesis reports to the store."""
    from agent.steps import Step, Task, Trajectory
    from review.store import Filters
    from synthesis.replay import replay_stored

    steps = [Step(index=0, model_output="Thought: add\nCode:\n```py\nprint(2 + 2)\n```", thought="add",
                  code="print(2 + 2)", observation="4\n"),
             Step(index=1, model_output="Thought: done\nCode:\n```py\nfinal_answer('4')\n```", thought="done",
                  code="final_answer('4')", is_final=True, final_answer="4")]
    trajectory_id = store.add_trajectory(Trajectory(Task("2 + 2?"), "system", steps), source="mine")
    assert store.query(Filters(replay="reproduced")).rows == []
    replay_stored(store, trajectory_id)
    assert [row.id for row in store.query(Filters(replay="reproduced")).rows] == [trajectory_id]
