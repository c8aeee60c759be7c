"""Release records replayed through the real loop and sandbox give back the release's own feedback turns.

A record's observations are deterministic when its code calls no model-backed tool: those records are
compared turn for turn, whole. In the other records only the turns that answer a reply without code
are independent of the tools (the release's parse-error text); those turns are compared, the rest are
left out because their observations came from models and the web at the time.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from agent.loop import LoopLimits, run
from agent.sandbox import Sandbox
from agent.steps import Step, Trajectory
from agent.profiles import TOOL_NAMES
from tests.support.replay import ReplayModel


def _replay(record: dict, workdir: Path) -> Trajectory:
    """Run the record's own assistant turns through the loop; tools are left out (calls fail fast, offline)."""
    recorded = Trajectory.from_conversations(record["conversations"])
    for name in recorded.task.attachments:  # the release's images are not in the sample: stand-ins at its paths
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), "gray").save(workdir / name)
    fresh = Trajectory(task=recorded.task, system_prompt=recorded.system_prompt, task_message=recorded.task_message)
    limits = LoopLimits(max_steps=len(recorded.steps), max_errors=len(recorded.steps) + 1)
    with Sandbox(workdir, tools={}) as sandbox:
        for _ in run(fresh, model=ReplayModel.from_record(record), sandbox=sandbox, images=None, limits=limits):
            pass
    return fresh


def _model_free(trajectory: Trajectory) -> bool:
    return set(trajectory.tools_called(TOOL_NAMES)) <= {"final_answer"}


def test_release_records_replay_to_their_own_feedback_turns(fidelity_records, tmp_path):
    whole, parse_errors, left_out = [], 0, {}
    for record in fidelity_records:
        recorded = Trajectory.from_conversations(record["conversations"])
        no_code = [s.index for s in recorded.steps if s.code is None]
        if not _model_free(recorded) and not no_code:
            left_out[record["id"]] = f"observations of {', '.join(recorded.tools_called(TOOL_NAMES)[:-1])} came from models or the web"
            continue
        replayed = _replay(record, tmp_path / record["id"])
        assert all(isinstance(s, Step) for s in replayed.steps)
        if _model_free(recorded):
            assert replayed.to_conversations() == record["conversations"], record["id"]
            whole.append(record["id"])
            continue
        for index in no_code:
            assert replayed.steps[index].feedback_message() == recorded.steps[index].feedback_message(), record["id"]
            parse_errors += 1

    assert len(whole) >= 4, whole  # gmLQQPIv, hkzm_ewM, ukytddOi, Ng6Zvvp2 in the release sample
    assert parse_errors >= 5
    assert len(whole) + len(left_out) < len(fidelity_records), left_out
