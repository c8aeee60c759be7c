"""GTA's step-by-step mode: the model sees the reference dialog up to a step and predicts only that step.

As in GTA's `every_with_gt` evaluation, nothing the model predicts is executed: each reference tool call
becomes a T3-Agent step (`result = Tool(arg=...)` then `print(result)`, its reference output as the
observation), the model writes the next step, and its code is read (not run) to find the first GTA tool it
calls, with its arguments, or its `final_answer`. Needs the `gta` profile, whose tools carry GTA's names.

Denominators as in GTA's evaluator, except InstAcc's:
- InstAcc: steps whose predicted kind (tool call or answer) is the reference's / all reference steps. (GTA
  divides by tool steps + queries with a reference answer, which passes 100% when image-generation
  dialogs, which have no reference answer, end with an answer step.)
- ToolAcc (step): tool steps where the predicted tool is the reference's / reference tool steps.
- ArgAcc: tool steps where tool and arguments both equal the reference's / reference tool steps.
- SummAcc: answer steps whose predicted answer matches (GTA protocol, or similarity for subjective
  references) / queries with a reference answer (a query whose dialog has no answer step counts as missed).
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.models.base import Model
from agent.parsing import STOP_SEQUENCES, parse_action, truncate_at_stop
from agent.render import assistant_text, render_messages
from agent.steps import Step, Trajectory
from core.db import Transaction
from eval.benchmarks import BenchTask

MODE = "step-by-step"



@dataclass
class Action:
    """One step, reference or predicted: a tool call (name, args), an answer, or nothing readable."""

    kind: str  # "tool", "answer" or "none"
    name: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    answer: str | None = None
    thought: str = ""
    observation: str = ""


def reference_actions(task: BenchTask, names: dict[Path, str]) -> list[Action]:
    """The reference dialog's assistant turns, file arguments renamed as the agent sees the files."""
    actions: list[Action] = []
    for turn in task.gt_dialogs:
        if turn.get("role") == "assistant" and turn.get("tool_calls"):
            call = turn["tool_calls"][0]["function"]
            args = {k: _agent_path(v, task, names) for k, v in (call.get("arguments") or {}).items()}
            actions.append(Action("tool", call["name"], args, thought=turn.get("thought", "").strip()))
        elif turn.get("role") == "assistant":
            actions.append(Action("answer", answer=str(turn.get("content", ""))))
        elif turn.get("role") == "tool" and actions:
            content = turn.get("content")
            actions[-1].observation = str(content.get("content", "")) if isinstance(content, dict) else str(content)
    return actions


def _agent_path(value: Any, task: BenchTask, names: dict[Path, str]) -> Any:
    """A reference argument naming one of the task's files, as the agent's attachment name."""
    if isinstance(value, str):
        for path in task.files:
            if str(path).endswith("/" + value) or path.name == value:
                return names.get(path.resolve(), value)
    return value


def as_step(index: int, action: Action) -> Step:
    """A reference tool call as the T3-Agent would have written and run it."""
    call = f"{action.name}({', '.join(f'{k}={v!r}' for k, v in action.args.items())})"
    code = f"result = {call}\nprint(result)"
    output = f"Thought: {action.thought}\nCode:\n```py\n{code}\n```"
    return Step(index=index, model_output=output, thought=action.thought, code=code,
                observation=action.observation + "\n")


def predict(model: Model, trajectory: Trajectory, images: list[str], tools: set[str],
            max_new_tokens: int) -> tuple[Action, str]:
    """The model's next step after `trajectory`, read without running it; returns (action, what it wrote)."""
    reply = model.generate(render_messages(trajectory, images), stop=STOP_SEQUENCES, max_new_tokens=max_new_tokens)
    text = assistant_text(truncate_at_stop(reply.text)[0])  # as the loop reads a turn
    return read_action(text, tools), text


def read_action(text: str, tools: set[str]) -> Action:
    """The first GTA tool call in the code (arguments by name), else its final_answer, else nothing."""
    thought, code = parse_action(text)
    if code is None:
        return Action("none", thought=thought)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return Action("none", thought=thought)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    calls.sort(key=lambda n: (n.lineno, n.col_offset))
    for node in calls:
        if node.func.id in tools:
            return Action("tool", node.func.id, _arguments(node), thought=thought)
    for node in calls:
        if node.func.id == "final_answer" and (node.args or node.keywords):
            value = node.args[0] if node.args else node.keywords[0].value
            return Action("answer", answer=str(_value(value)), thought=thought)
    return Action("none", thought=thought)


def _arguments(node: ast.Call) -> dict[str, Any]:
    from agent.tools import get_tool

    order = list(get_tool(node.func.id).inputs)
    args = {order[i]: _value(a) for i, a in enumerate(node.args) if i < len(order)}
    args.update({k.arg: _value(k.value) for k in node.keywords if k.arg})
    return args


def _value(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return ast.unparse(node)


def record(tx: Transaction, run_id: str, task_id: str, index: int, gt: Action, pred: Action, output: str) -> None:
    tx.execute(
        "INSERT OR REPLACE INTO eval_steps (run_id, task_id, idx, gt_kind, gt_name, gt_args, pred_kind, pred_name,"
        " pred_args, pred_answer, model_output) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, task_id, index, gt.kind, gt.name, json.dumps(gt.args, default=str), pred.kind, pred.name,
         json.dumps(pred.args, default=str), pred.answer, output),
    )
