"""agent.replay: a prefix's code run again in a fresh sandbox, its state kept, the steps that did not reproduce named."""

from __future__ import annotations

import pytest
from PIL import Image

from agent.replay import FilesMissing, replay
from agent.steps import Trajectory

PICTURE = "attachments/card.png"


def prefix(observed_sum: str = "6") -> Trajectory:
    return Trajectory.from_conversations([
        {"from": "system", "value": "You solve tasks with code."},
        {"from": "user", "value": f"Picture 1: <img>{PICTURE}</img>\nTask: How wide is the card, plus 6?\n"},
        {"from": "assistant", "value": "Thought: measure.\nCode:\n```py\nfrom PIL import Image\n"
                                       f"width = Image.open({PICTURE!r}).size[0]\nprint(width)\n```"},
        {"from": "user", "value": "[OUTPUT OF STEP 0] Observation:\n320\n"},
        {"from": "assistant", "value": "Thought: I forgot the code."},
        {"from": "user", "value": "[OUTPUT OF STEP 1] Error: Error in code parsing\n"},
        {"from": "assistant", "value": "Thought: add.\nCode:\n```py\nparts = [1, 2, 3]\nprint(sum(parts))\n```"},
        {"from": "user", "value": f"[OUTPUT OF STEP 2] Observation:\n{observed_sum}\n"},
    ])


@pytest.fixture
def card(tmp_path):
    path = tmp_path / "card.png"
    Image.new("RGB", (320, 200), "white").save(path)
    return path


def test_the_sandbox_is_left_at_the_prefixs_state_and_every_step_reproduces(tmp_path, card):
    with replay(prefix(), {PICTURE: card}, tmp_path / "work") as state:
        assert [step.status for step in state.steps] == ["same", "no code", "same"]
        assert state.not_reproduced == [] and state.summary() == "the 2 prefix steps with code reproduced"
        result = state.sandbox.run("print(width + sum(parts))")  # what the prefix defined is there
    assert result.error is None and result.output.strip() == "326"


def test_a_step_whose_observation_does_not_come_out_the_same_is_named(tmp_path, card):
    with replay(prefix(observed_sum="7"), {PICTURE: card}, tmp_path / "work") as state:
        assert state.not_reproduced == [2]
        assert (state.steps[2].expected, state.steps[2].got) == ("7", "6")
        assert state.summary() == "prefix step 3 (counted from 1) did not reproduce"


def test_a_missing_picture_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(FilesMissing, match=f"the task's file {PICTURE} is missing") as refused:
        replay(prefix(), {PICTURE: tmp_path / "gone.png"}, tmp_path / "work")
    assert refused.value.names == [PICTURE] and not (tmp_path / "work").exists()
