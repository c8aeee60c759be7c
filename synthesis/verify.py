"""Stages 4 and 6: the LLM verifiers. Their verdicts and reasons are suggestions for the reviewer:
a task the query-file verifier doubts still gets a trajectory, and every trajectory reaches Review."""

from __future__ import annotations

from pathlib import Path

from review.formats import parse_verification
from synthesis.context import Context, StageError, prompt
from synthesis.tasks import TaskRow

DOCUMENT_CHARS = 3000
OBSERVATION_CHARS = 2000
PLAIN_TEXT = {".txt", ".csv", ".md", ".json"}


def check(ctx: Context, task: TaskRow) -> None:
    """Stage 4: do the query and its files fit, and is the task solvable?"""
    images = [task.paths[f["name"]] for f in task.files if f["type"] == "image"]
    text = prompt("query_verifier.txt", query=task.query, files=_files_text(task))
    parts = [*({"type": "image", "image": path} for path in images), {"type": "text", "text": text}]
    reply = ctx.llm.chat(stage="check", task_id=task.id, attempt=task.attempt, purpose="check", max_tokens=800,
                         messages=[{"role": "user", "content": parts}])
    task.query_verdict, task.query_reason = _verdict(reply.text)


def judge(ctx: Context, task: TaskRow) -> None:
    """Stage 6: MAT's trajectory criteria; the verdict goes to Review as the trajectory's suggestion."""
    detail = ctx.store.detail(task.trajectory_id)
    trajectory = detail.trajectory
    text = prompt("trajectory_verifier.txt", query=task.query, files=_files_text(task),
                  steps=_steps_text(trajectory), answer=trajectory.final_answer or "(none)")
    reply = ctx.llm.chat(stage="judge", task_id=task.id, attempt=task.attempt, purpose="judge", max_tokens=800,
                         messages=[{"role": "user", "content": text}])
    task.verdict, reason = _verdict(reply.text)
    query_note = f"query-file verifier: {task.query_verdict or '?'} — {task.query_reason or ''}".strip()
    task.verdict_reason = f"{reason or ''}\n({query_note})".strip()
    ctx.store.suggest_verdict(task.trajectory_id, task.verdict, task.verdict_reason)


def _verdict(text: str) -> tuple[str, str]:
    verdict, reason = parse_verification(text)
    if verdict not in ("yes", "no"):
        raise StageError(f"the verifier's answer has no \"correct\": \"yes\"|\"no\": {text[:120]!r}")
    return verdict, reason or ""


def _files_text(task: TaskRow) -> str:
    lines = []
    for spec in task.files:
        path = Path(task.paths.get(spec["name"], ""))
        if spec["type"] == "image":
            lines.append(f"- {spec['name']} (image, shown above): {spec.get('caption') or spec['content']}")
        else:
            lines.append(f"- {spec['name']} ({spec['type']}), its text:\n{_document_text(path)}")
    return "\n".join(lines)


def _document_text(path: Path) -> str:
    """The document as the agent's inspect_file_as_text would read it (plain text files as they are)."""
    from agent.tools.base import ToolContext, ToolError
    from agent.tools.files import file_text

    try:
        if path.suffix.lower() in PLAIN_TEXT:
            text = path.read_text(errors="replace")
        else:
            text = file_text(ToolContext(workdir=path.parent), str(path))
    except (ToolError, OSError) as exc:
        return f"(could not be read: {exc})"
    return text[:DOCUMENT_CHARS] + ("\n[...]" if len(text) > DOCUMENT_CHARS else "")


def _steps_text(trajectory) -> str:
    parts = []
    for step in trajectory.steps:
        outcome = step.error if step.error is not None else step.observation
        if step.is_final:
            outcome = f"final_answer({step.final_answer!r})"
        parts.append(f"Step {step.index}\nThought: {step.thought}\nCode:\n{step.code or '(none)'}\n"
                     f"Result:\n{(outcome or '')[:OBSERVATION_CHARS]}")
    return "\n\n".join(parts)
