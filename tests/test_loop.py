"""The agent loop on replayed MM-Traj turns with real execution in the sandbox."""

from __future__ import annotations

import threading

import pytest

from agent.config import Settings
from agent.loop import Delta, LoopLimits, run
from agent.prompt import system_prompt_from_record
from agent.session import start_run
from agent.steps import Step, Trajectory
from tests.support.replay import ReplayModel

# Records of the sample whose code needs no network or model-backed tool: replaying them
# with real execution must reproduce the release's own observations.
PURE_PYTHON = ["gmLQQPIv", "hkzm_ewM"]


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", step_timeout=20)


def _record(records: list[dict], record_id: str) -> dict:
    return next(r for r in records if r["id"] == record_id)


def _finish(agent_run, model, limits=LoopLimits()) -> list[Step]:
    try:
        return [e for e in agent_run.steps(model, limits) if isinstance(e, Step)]
    finally:
        agent_run.close()


@pytest.mark.parametrize("record_id", PURE_PYTHON)
def test_replayed_record_reproduces_its_conversation(mmtraj_records, settings, record_id):
    record = _record(mmtraj_records, record_id)
    task = Trajectory.from_conversations(record["conversations"]).task
    agent_run = start_run(settings, task.text, system_prompt=system_prompt_from_record(record))
    steps = _finish(agent_run, ReplayModel.from_record(record))

    assert steps[-1].is_final
    produced = agent_run.trajectory.to_conversations()
    assert produced[0] == record["conversations"][0]
    assert [t["value"] for t in produced[2:]] == [t["value"] for t in record["conversations"][2:]]
    assert steps[-1].final_answer == record["answer"]


def test_run_is_a_valid_mmtraj_record(mmtraj_records, settings):
    record = _record(mmtraj_records, "gmLQQPIv")
    agent_run = start_run(settings, "How much for 3 shirts at $15 and 2 pants at $25?")
    _finish(agent_run, ReplayModel.from_record(record))
    produced = agent_run.trajectory.to_record("run-1")

    sample = mmtraj_records[0]
    assert set(sample) - {"traj_verification"} == set(produced)
    assert [t["from"] for t in produced["conversations"]] == ["system", "user", "assistant", "user", "assistant"]
    assert produced["conversations"][1]["value"].startswith("Task: How much for 3 shirts")
    assert produced["answer"] == record["answer"]
    again = Trajectory.from_conversations(produced["conversations"])
    assert again.to_conversations() == produced["conversations"]


def test_images_reach_the_model_at_every_step(settings, tmp_path):
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), "red").save(photo)
    code = "Thought: look at the size.\nCode:\n```py\nfrom PIL import Image\nprint(Image.open('attachments/photo.png').size)\n```"
    done = "Thought: done.\nCode:\n```py\nfinal_answer('64x48')\n```"
    model = ReplayModel([code, done])
    agent_run = start_run(settings, "What size is the photo?", [photo])
    steps = _finish(agent_run, model)

    assert steps[0].observation.strip() == "(64, 48)"
    assert steps[-1].final_answer == "64x48"
    for messages in model.seen:
        task = messages[1]["content"]
        assert task[0] == {"type": "text", "text": "Picture 1: "}
        assert task[1] == {"type": "image", "image": str(photo.resolve())}
        assert task[2]["text"].startswith("\nTask: What size is the photo?")
        assert "Attachment: attachments/photo.png;" in task[2]["text"]


def test_errors_are_fed_back_in_the_release_wording_and_the_model_recovers(settings, mmtraj_records):
    no_code = "Thought: I will just talk about it."
    raises = "Thought: divide.\nCode:\n```py\nx = 1\nprint(x / 0)\n```"
    silent = "Thought: store it.\nCode:\n```py\ny = 2\n```"
    done = "Thought: fine.\nCode:\n```py\nfinal_answer(3)\n```"
    agent_run = start_run(settings, "Compute something")
    steps = _finish(agent_run, ReplayModel([no_code, raises, silent, done]))

    turns = agent_run.trajectory.to_conversations()
    release_parse_error = next(  # the release's own text for a turn without a code block
        t["value"] for r in mmtraj_records for t in r["conversations"] if "Error in code parsing" in t["value"]
    ).removeprefix("[OUTPUT OF STEP 1] ")
    assert turns[3]["value"] == f"[OUTPUT OF STEP 0] {release_parse_error}"
    assert turns[5]["value"] == (
        "[OUTPUT OF STEP 1] Error: Code execution failed due to the following error:\ndivision by zero\n"
        "Now let's retry: take care not to repeat previous errors! If you have retried several times, "
        "try a completely different approach.\n"
    )
    assert turns[7]["value"] == (
        "[OUTPUT OF STEP 2] Observation:\nNo observation found from the code execution. "
        "You should use `print` function if need some information from the code execution."
    )
    assert steps[-1].is_final and steps[-1].final_answer == "3"


def test_stop_sequences_are_enforced_when_the_backend_ignores_them(settings):
    turn = "Thought: add.\nCode:\n```py\nprint(2 + 2)\n```"
    hallucinated = "<end_action>\nObservation:\n5\nThought: it is five.\nCode:\n```py\nfinal_answer(5)\n```"
    agent_run = start_run(settings, "2+2?")
    steps = _finish(agent_run, ReplayModel([turn, "Code:\n```py\nfinal_answer(4)\n```"], tail=hallucinated), LoopLimits(max_steps=2))

    assert steps[0].model_output == turn
    assert steps[0].observation == "4\n"
    assert steps[-1].final_answer == "4"


def test_out_of_steps_the_request_and_the_real_reply_are_recorded(settings):
    loop_turn = "Thought: keep going.\nCode:\n```py\nprint('still thinking')\n```"
    model = ReplayModel([loop_turn, loop_turn, "It is 42."])
    agent_run = start_run(settings, "What is the answer?")
    steps = _finish(agent_run, model, LoopLimits(max_steps=2))

    assert len(steps) == 3
    last = steps[-1]
    request = "Based on the above, please provide an answer to the following user request:\nWhat is the answer?"
    assert last.prompt == request and steps[0].prompt is None  # the flag Review and synthesis read
    assert last.is_final and last.final_answer == "It is 42." and last.model_output == "It is 42."
    served = model.seen[-1]
    assert served[-1] == {"role": "user", "content": [{"type": "text", "text": request}]}
    assert served[-2]["content"][0]["text"].startswith("[OUTPUT OF STEP 1] Observation:")

    turns = agent_run.trajectory.to_conversations()
    assert [t["from"] for t in turns[-3:]] == ["user", "user", "assistant"]
    assert turns[-2]["value"] == request and turns[-1]["value"] == "It is 42."  # no words put in its mouth
    again = Trajectory.from_conversations(turns)
    assert again.to_conversations() == turns
    assert again.steps[-1].prompt == request and again.steps[-1].final_answer == "It is 42."
    assert again.steps[-1].is_final and again.steps[1].prompt is None

    from review.viewer import render_step

    shown = render_step(again.steps[-1])
    assert "answer on request" in shown and "Asked by the loop" in shown and "please provide an answer" in shown


def test_a_reply_with_final_answer_code_gives_its_argument(settings):
    loop_turn = "Thought: keep going.\nCode:\n```py\nprint('x')\n```"
    reply = "Thought: answer now.\nCode:\n```py\nfinal_answer(\"forty-two\")\n```"
    agent_run = start_run(settings, "What is the answer?")
    steps = _finish(agent_run, ReplayModel([loop_turn, reply]), LoopLimits(max_steps=1))
    assert steps[-1].final_answer == "forty-two" and steps[-1].prompt is not None


def test_variables_persist_and_files_are_reported(settings):
    first = "Thought: make data.\nCode:\n```py\nvalues = [1, 2, 3]\nprint(len(values))\n```"
    second = (
        "Thought: plot it.\nCode:\n```py\nfrom PIL import Image\nImage.new('RGB', (8, 8)).save('.cache/out.png')\n"
        "print(sum(values))\n```"
    )
    agent_run = start_run(settings, "Sum and draw")
    steps = _finish(agent_run, ReplayModel([first, second, "Code:\n```py\nfinal_answer(6)\n```"]))

    assert steps[1].observation == "6\n"
    assert steps[1].images == [".cache/out.png"]
    assert (agent_run.workdir / ".cache/out.png").is_file()


def test_stop_event_ends_the_run_between_steps(settings):
    stop = threading.Event()
    forever = "Thought: again.\nCode:\n```py\nprint('tick')\n```"
    agent_run = start_run(settings, "Loop")
    events = []
    try:
        for event in run(agent_run.trajectory, model=ReplayModel([forever] * 8), sandbox=agent_run.sandbox,
                         images=[], limits=LoopLimits(max_steps=8), stop=stop):
            events.append(event)
            if isinstance(event, Step):
                stop.set()
    finally:
        agent_run.close()
    assert sum(isinstance(e, Step) for e in events) == 1
    assert any(isinstance(e, Delta) for e in events)
    assert len(agent_run.trajectory.steps) == 1


def test_an_attached_file_is_readable_but_not_writable(settings, tmp_path):
    table = tmp_path / "sales.csv"
    table.write_text("month,amount\njan,10\nfeb,32\n")
    read = (
        "Thought: sum the column.\nCode:\n```py\nimport csv\n"
        "rows = list(csv.DictReader(open('attachments/sales.csv')))\nprint(sum(int(r['amount']) for r in rows))\n```"
    )
    write = "Thought: overwrite it.\nCode:\n```py\nopen('attachments/sales.csv', 'w').write('gone')\n```"
    agent_run = start_run(settings, "Total sales?", [table])
    steps = _finish(agent_run, ReplayModel([read, write, "Code:\n```py\nfinal_answer(42)\n```"]))

    assert "Attachment: attachments/sales.csv;" in agent_run.trajectory.task.to_message()
    assert steps[0].observation == "42\n"
    assert steps[1].error is not None
    assert table.read_text() == "month,amount\njan,10\nfeb,32\n"


def test_uploads_are_checked_before_anything_runs(settings, tmp_path):
    from PIL import Image

    from agent.session import UploadError

    bomb = tmp_path / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(bomb)
    with pytest.raises(UploadError, match="bomb.png has too many pixels"):
        start_run(settings, "What is this?", [bomb])
    with pytest.raises(UploadError, match="missing.png: file not found"):
        start_run(settings, "What is this?", [tmp_path / "missing.png"])
    assert not settings.runs_dir.exists() or not any(settings.runs_dir.iterdir())
