"""Steps and trajectories, and the one converter to and from MM-Traj records.

An agent run, an imported MM-Traj record and a stored trajectory are all the same
`Trajectory`; every other package goes through this module to read or write the
release's conversation format, so there is exactly one place that knows it.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

# The release's feedback wording, byte for byte (MAT's sampling agent on transformers.agents).
RETRY_HINT = (
    "Now let's retry: take care not to repeat previous errors! "
    "If you have retried several times, try a completely different approach."
)
EXECUTION_FAILED = "Code execution failed due to the following error:\n"
DICT_ARGUMENT_HINT = (
    "\nYou get this error because you passed a dict as input for one of the arguments instead of a string."
)
PARSE_ERROR = (
    "Error in code parsing: \nThe code blob you used is invalid: due to the following error: "
    "'NoneType' object has no attribute 'group'\nThis means that the regex pattern ```(?:py|python)?\\n(.*?)\\n``` "
    "was not respected: make sure to include code with the correct pattern, for instance:\nThoughts: Your thoughts\n"
    "Code:\n```py\n# Your python code here\n```<end_action>. Make sure to provide correct code"
)
EMPTY_OUTPUT = (
    "No observation found from the code execution. "
    "You should use `print` function if need some information from the code execution."
)
_OUTPUT_HEADER = re.compile(r"^\[OUTPUT OF STEP (\d+)\] (Observation|Error):", re.S)
_PICTURE = re.compile(r"^Picture \d+: <img>(.*?)</img>\n", re.M)
IMAGE_TAG = re.compile(r"<img>(.*?)</img>", re.S)  # every tag is an image slot (agent.render places them)
_ATTACHMENT = re.compile(r"\n ?Attachment:(.*)$", re.S)
# Not a release field: true on the record of a run someone stopped, whose last step is what was written by then.
STOPPED = "stopped"


def retry_error(message: str) -> str:
    """A step's error as the release feeds it back: the message, then the retry hint."""
    return f"{message}\n{RETRY_HINT}\n"


def execution_error(message: str) -> str:
    """The error of code that raised, from the exception's message alone."""
    hint = DICT_ARGUMENT_HINT if "'dict' object has no attribute 'read'" in message else ""
    return retry_error(f"{EXECUTION_FAILED}{message}{hint}")


def observation_text(printed: str) -> str:
    """What the code printed; MAT's empty-output note when it printed nothing."""
    return printed if printed else EMPTY_OUTPUT



def tools_called(code: str | None, known: Collection[str]) -> list[str]:
    """The names of `known` tools that `code` calls, in first-use order (a data question: no tool is loaded)."""
    names: list[str] = []
    for name in re.findall(r"\b([A-Za-z_]\w*)\s*\(", code or ""):
        if name in known and name not in names:
            names.append(name)
    return names

@dataclass
class Step:
    """One Thought/Code/Observation cycle, as it happened.

    `prompt` is set on a step the loop asked for with a user turn of its own instead of the
    previous step's feedback: once steps or errors ran out, it asks for an answer and records
    that request and the model's real reply here (None for every ordinary step).
    """

    index: int
    model_output: str
    thought: str = ""
    code: str | None = None
    observation: str | None = None
    error: str | None = None
    final_answer: str | None = None
    is_final: bool = False
    images: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    prompt: str | None = None

    def feedback_message(self) -> str | None:
        """The user turn that follows this step in MM-Traj (None after the final answer, or a step never run)."""
        if self.is_final or (self.observation is None and self.error is None):
            return None
        if self.error is not None:
            return f"[OUTPUT OF STEP {self.index}] Error: {self.error}"
        return f"[OUTPUT OF STEP {self.index}] Observation:\n{self.observation or ''}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class Task:
    """What the user asked: the text, the images shown to the model, files named in the task."""

    text: str
    images: list[str] = field(default_factory=list)
    attachments: list[str] = field(default_factory=list)

    def to_message(self) -> str:
        """The first user turn, laid out as in the release."""
        lines = "".join(f"Picture {i}: <img>{p}</img>\n" for i, p in enumerate(self.images, 1))
        message = f"{lines}Task: {self.text}\n"
        if self.attachments:
            message += " Attachment: " + "".join(f"{p}; " for p in self.attachments) + " "
        return message

    @classmethod
    def from_message(cls, message: str) -> Task:
        images = IMAGE_TAG.findall(message)
        body = _PICTURE.sub("", message)
        attachments: list[str] = []
        found = _ATTACHMENT.search(body)
        if found:
            attachments = [p.strip() for p in found.group(1).split(";") if p.strip()]
            body = body[: found.start()]
        text = body.removeprefix("Task:").strip()
        return cls(text=text, images=images, attachments=attachments)


@dataclass
class Trajectory:
    """A task, the system prompt it ran under, and its steps; `stopped` when a person stopped the run."""

    task: Task
    system_prompt: str
    steps: list[Step] = field(default_factory=list)
    task_message: str | None = None
    stopped: bool = False

    @property
    def final_answer(self) -> str | None:
        for step in reversed(self.steps):
            if step.is_final:
                return step.final_answer
        return None

    def tools_called(self, known: Collection[str]) -> list[str]:
        """The `known` tools the steps' code calls, in first-use order."""
        return tools_called("\n".join(step.code or "" for step in self.steps), known)

    def to_conversations(self) -> list[dict[str, str]]:
        """The release's `conversations` list for this trajectory."""
        turns = [
            {"from": "system", "value": self.system_prompt},
            {"from": "user", "value": self.task_message or self.task.to_message()},
        ]
        for step in self.steps:
            if step.prompt is not None:
                turns.append({"from": "user", "value": step.prompt})
            turns.append({"from": "assistant", "value": step.model_output})
            feedback = step.feedback_message()
            if feedback is not None:
                turns.append({"from": "user", "value": feedback})
        return turns

    def to_record(self, record_id: str, answer: str | None = None, correct: str = "yes") -> dict[str, Any]:
        """An MM-Traj release record; `image` follows the release (str, dict or empty dict)."""
        images = self.task.images
        if len(images) == 1:
            image: Any = images[0]
        else:
            image = {f"<image_{i:02d}>": p for i, p in enumerate(images)}
        final = self.final_answer
        record = {
            "id": record_id,
            "image": image,
            "correct": correct,
            "answer": answer if answer is not None else ("" if final is None else final),
            "conversations": self.to_conversations(),
        }
        if self.stopped:
            record[STOPPED] = True
        return record

    @classmethod
    def from_conversations(cls, conversations: list[dict[str, str]]) -> Trajectory:
        """Parse a release conversation list. Raises ValueError on a shape that is not MM-Traj."""
        from agent.parsing import parse_action

        if len(conversations) < 2 or conversations[0].get("from") != "system":
            raise ValueError("conversations must start with a system turn and a user task turn")
        if conversations[1].get("from") != "user":
            raise ValueError("the second turn must be the user's task")
        task_message = conversations[1]["value"]
        steps: list[Step] = []
        turns = conversations[2:]
        prompt, previous = None, "user"
        for position, turn in enumerate(turns):
            role, value = turn.get("from"), turn.get("value", "")
            if role == "assistant":
                thought, code = parse_action(value)
                steps.append(Step(index=len(steps), model_output=value, thought=thought, code=code, prompt=prompt))
                prompt = None
            elif role == "user" and previous == "assistant":
                _attach_feedback(steps[-1], value)
            elif role == "user" and steps:
                prompt = value  # a second user turn in a row asks for the next step
            elif role == "user":
                raise ValueError(f"turn {position + 2}: a user turn before any assistant turn")
            else:
                raise ValueError(f"turn {position + 2}: unknown role {role!r}")
            previous = role
        if prompt is not None:
            raise ValueError(f"turn {len(conversations) - 1}: a user turn that no assistant turn answers")
        if steps and turns and turns[-1].get("from") == "assistant":
            last = steps[-1]
            last.is_final = True
            last.final_answer = reply_answer(last) if last.prompt is not None else _final_answer_argument(last.code)
        return cls(
            task=Task.from_message(task_message),
            system_prompt=conversations[0]["value"],
            steps=steps,
            task_message=task_message,
        )


def _attach_feedback(step: Step, value: str) -> None:
    header = _OUTPUT_HEADER.match(value)
    if header and header.group(2) == "Error":
        step.error = value[header.end():].removeprefix(" ")
    elif header and value[header.end():].startswith("\n"):
        step.observation = value[header.end() + 1:]
    else:
        raise ValueError(f"step {step.index}: observation turn does not start with '[OUTPUT OF STEP i]'")


def reply_answer(step: Step) -> str:
    """The answer in a reply to the loop's request for one: final_answer's literal argument if the
    model wrote that call, else the reply's own words."""
    import ast

    argument = _final_answer_argument(step.code)
    if argument is not None:
        try:
            return str(ast.literal_eval(argument))
        except (ValueError, SyntaxError):
            return argument
    return step.model_output.strip()


def _final_answer_argument(code: str | None) -> str | None:
    """The source text of the argument of the last final_answer(...) call, if any."""
    if not code:
        return None
    found = re.findall(r"final_answer\((.*)\)", code, re.S)
    return found[-1].strip() if found else None
