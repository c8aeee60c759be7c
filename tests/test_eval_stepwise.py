"""GTA's step-by-step mode on the GTA-shaped fixture: the reference dialog as context, one predicted step at a time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import Settings
from agent.models.base import Chunk, Model
from agent.render import message_text
from eval.benchmarks import load_gta
from eval.report import run_scores
from eval.runner import EvalConfig, create_run, open_store, run_eval
from eval.stepwise import Action, read_action
from tests.test_eval_run import gta_folder

GTA_TOOLS = {"OCR", "Calculator", "DrawBox", "TextToBbox", "ImageDescription"}


class ReferenceModel(Model):
    """Writes, for the task in the messages, the reference dialog's next assistant turn as T3-Agent code."""

    name = "reference"

    def __init__(self, dataset: dict, wrong: bool = False) -> None:
        super().__init__(slots=4)
        self.dataset, self.wrong = dataset, wrong
        self.prompts: list[list[dict]] = []

    def _stream(self, messages: list[dict], stop: list[str], max_new_tokens: int) -> Iterator[Chunk]:
        self.prompts.append(messages)
        task = message_text(messages[1])
        item = next(v for v in self.dataset.values() if v["dialogs"][0]["content"].strip() in task)
        turns = [d for d in item["dialogs"] if d["role"] == "assistant"]
        turn = turns[sum(m["role"] == "assistant" for m in messages)]
        if self.wrong:
            code = "final_answer('no idea')"
        elif "tool_calls" in turn:
            call = turn["tool_calls"][0]["function"]
            files = {f["path"] for f in item["files"]}
            args = ", ".join(f"{k}={_agent(v, files)!r}" for k, v in call["arguments"].items())
            code = f"out = {call['name']}({args})\nprint(out)"
        else:
            code = f"final_answer({turn['content']!r})"
        yield Chunk(f"Thought: next.\nCode:\n```py\n{code}\n```<end_action>")


def _agent(value, files: set[str]):
    """A task file as the agent names it; other values (a tool's output path included) as they are."""
    return "attachments/" + Path(value).name if value in files else value


def stepwise_run(tmp_path: Path, folder: Path, model: Model, run_id: str) -> dict:
    settings = Settings(data_dir=tmp_path / "data")
    benchmark = load_gta(folder)
    config = EvalConfig(benchmark="gta", data=str(folder), profile="gta", model=model.name, mode="step-by-step",
                       concurrency=2, timeout=60)
    with open_store(settings.db) as store:
        create_run(store, config, len(benchmark.tasks), run_id)
        list(run_eval(store, run_id, benchmark, model, settings, config, show_progress=False))
        return {s.name: s for s in run_scores(store, run_id)}


@pytest.fixture(scope="module")
def sample(gta_path, tmp_path_factory) -> tuple[Path, dict, Path]:
    tmp = tmp_path_factory.mktemp("stepwise")
    return tmp, json.loads(gta_path.read_text()), gta_folder(gta_path, tmp / "gta")


def test_reference_steps_score_full_marks(sample):
    tmp, dataset, folder = sample
    model = ReferenceModel(dataset)
    scores = stepwise_run(tmp, folder, model, "reference")
    tool_steps = sum(len(d.get("tool_calls", [])[:1]) for v in dataset.values() for d in v["dialogs"])
    assert (scores["ToolAcc (step)"].numerator, scores["ToolAcc (step)"].denominator) == (tool_steps, tool_steps)
    assert scores["ArgAcc"].value == 100.0
    # GTA's denominators: the six queries with an answer, one of whose reference dialogs (115) ends on a tool call.
    assert (scores["SummAcc"].numerator, scores["SummAcc"].denominator) == (5, 6)
    assert scores["InstAcc"].value == 100.0 and scores["InstAcc"].denominator > tool_steps
    # The model saw the reference dialog: the step before the answer carries the reference tool's output.
    calculator = next(m for m in model.prompts if "How many dollars" in message_text(m[1]) and len(m) == 6)
    assert message_text(calculator[-1]) == "[OUTPUT OF STEP 1] Observation:\n68\n"
    images = [part["image"] for part in calculator[1]["content"] if part["type"] == "image"]
    assert images and all(Path(p).is_file() for p in images)  # the task's picture, in place of its tag


def test_answering_at_once_scores_only_instruction_alignment_on_answer_steps(sample):
    tmp, dataset, folder = sample
    scores = stepwise_run(tmp, folder, ReferenceModel(dataset, wrong=True), "hasty")
    assert scores["ToolAcc (step)"].numerator == 0 and scores["ArgAcc"].numerator == 0
    assert scores["SummAcc"].numerator == 0
    answer_steps = scores["InstAcc"].denominator - scores["ToolAcc (step)"].denominator
    assert scores["InstAcc"].numerator == answer_steps  # only the answer steps were of the right kind


def test_read_action_finds_the_first_tool_call_and_its_arguments():
    text = "Thought: t\nCode:\n```py\nx = 2\nbox = TextToBbox('attachments/a.jpg', 'cat', top1=False)\nOCR(image=box)\n```"
    assert read_action(text, GTA_TOOLS) == Action("tool", "TextToBbox",
                                                  {"image": "attachments/a.jpg", "text": "cat", "top1": False},
                                                  thought="t")
    assert read_action("Thought: t\nCode:\n```py\nfinal_answer(42)\n```", GTA_TOOLS).answer == "42"
    assert read_action("no code at all", GTA_TOOLS).kind == "none"
    assert read_action("Thought: t\nCode:\n```py\nfinal_answer(\n```", GTA_TOOLS).kind == "none"
