"""The ReAct protocol: ask the model for Thought + Code, run the code, feed back the output, repeat.

`run` is the one generator behind the CLI, the Chat tab, synthesis and evaluation: it yields
`Delta`s while the model writes and a `Step` when each cycle is done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core import defaults
from agent.models.base import ChatMessage, Chunk, Model
from agent.parsing import STOP_SEQUENCES, exception_message, parse_action, truncate_at_stop
from agent.prompt import prompt_text
from agent.render import assistant_text, render_messages, text_message
from agent.steps import PARSE_ERROR, Step, Trajectory, execution_error, observation_text, reply_answer, retry_error

if TYPE_CHECKING:
    from agent.sandbox import Sandbox

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class LoopLimits:
    max_steps: int = defaults.MAX_STEPS
    max_errors: int = defaults.MAX_ERRORS
    max_new_tokens: int = defaults.MAX_NEW_TOKENS


@dataclass
class Delta:
    """The text the model has written so far in step `index`."""

    index: int
    text: str


def run(
    trajectory: Trajectory,
    *,
    model: Model,
    sandbox: Sandbox,
    images: Sequence[Path] | None,
    limits: LoopLimits = LoopLimits(),
    stop: threading.Event | None = None,
) -> Iterator[Step | Delta]:
    """Advance `trajectory` step by step until a final answer, the step limit, or `stop`.

    `images` are the real files behind the task's pictures (None: the tag paths as written);
    they go to the model with the task at every step, laid out by `agent.render`. Completed
    steps are appended to `trajectory.steps`.
    """
    stop = stop or threading.Event()
    errors_in_a_row = 0
    while len(trajectory.steps) < limits.max_steps and errors_in_a_row < limits.max_errors:
        index = len(trajectory.steps)
        started = time.perf_counter()
        generated = Chunk()
        for generated in _generate(model, render_messages(trajectory, images), limits, stop):
            yield Delta(index, generated.text)
        if stop.is_set():
            return
        step = _execute(index, generated, sandbox)
        step.seconds = time.perf_counter() - started
        trajectory.steps.append(step)
        yield step
        if step.is_final or stop.is_set():
            return
        errors_in_a_row = errors_in_a_row + 1 if step.error is not None else 0
    yield from _ask_for_answer(trajectory, model, images, limits, stop)


def _generate(model: Model, messages: list[ChatMessage], limits: LoopLimits, stop: threading.Event) -> Iterator[Chunk]:
    """Stream the model's turn, cutting at the first stop sequence even if the backend ignored it."""
    text, usage = "", Chunk()
    stream = model.stream(messages, stop=STOP_SEQUENCES, max_new_tokens=limits.max_new_tokens)
    try:
        for chunk in stream:
            text += chunk.text
            usage.input_tokens = chunk.input_tokens or usage.input_tokens
            usage.output_tokens = chunk.output_tokens or usage.output_tokens
            text, hit = truncate_at_stop(text)
            yield Chunk(text, usage.input_tokens, usage.output_tokens)
            if hit or stop.is_set():
                break
    finally:
        stream.close()


def _execute(index: int, generated: Chunk, sandbox: Sandbox) -> Step:
    """Run the turn's code; the feedback is worded as in the release."""
    text = assistant_text(generated.text)
    thought, code = parse_action(text)
    step = Step(
        index=index, model_output=text, thought=thought, code=code,
        input_tokens=generated.input_tokens, output_tokens=generated.output_tokens,
    )
    if code is None:
        step.error = retry_error(PARSE_ERROR)
        return step
    result = sandbox.run(code)
    step.files = list(result.files)
    step.images = [f for f in result.files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    if result.error is not None:
        step.error = execution_error(exception_message(result.error, code))
    elif result.is_final:
        step.is_final, step.final_answer = True, result.final_answer
    else:
        step.observation = observation_text(result.output)
    return step


def _ask_for_answer(
    trajectory: Trajectory, model: Model, images: Sequence[Path] | None, limits: LoopLimits, stop: threading.Event
) -> Iterator[Step | Delta]:
    """Out of steps or errors: ask for an answer in a user turn and record the model's own reply.

    The step carries the request in `prompt`, so Review and synthesis can tell it apart.
    """
    index, started = len(trajectory.steps), time.perf_counter()
    request = prompt_text("last_answer.txt", task=trajectory.task.text)
    messages = render_messages(trajectory, images) + [text_message("user", request)]
    generated = Chunk()
    for generated in _generate(model, messages, limits, stop):
        yield Delta(index, generated.text)
    if stop.is_set():
        return
    text = assistant_text(generated.text)
    thought, code = parse_action(text)
    step = Step(
        index=index, model_output=text, thought=thought, code=code, is_final=True, prompt=request,
        input_tokens=generated.input_tokens, output_tokens=generated.output_tokens,
    )
    step.final_answer = reply_answer(step)
    step.seconds = time.perf_counter() - started
    trajectory.steps.append(step)
    yield step
