"""The Chat tab: upload images, ask, and watch each step stream in as a collapsible message.

Handlers are small functions over `agent.session`; the tab only wires them to components.
Each browser session has its own run key, so one user's Stop never stops another's run.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.loop import Delta
from agent.models.base import Model, ModelError
from agent.session import AgentRun, UploadError, loop_limits, start_run
from agent.steps import Step, Trajectory
from agent.tools.base import PROFILES

TINY_CHOICE = "tiny random Qwen2-VL (smoke test)"

_runs: dict[str, AgentRun] = {}
_runs_lock = threading.Lock()


@dataclass
class FinishedRun:
    """What "Save to Review" stores: the trajectory and the files behind its attachment names."""

    trajectory: Trajectory
    files: dict[str, Path]


def model_choices(settings: Settings) -> list[str]:
    """Labels for the model picker: configured endpoint models, a local checkpoint, and the tiny smoke model."""
    choices = []
    if settings.model and (settings.base_url or settings.api_key):
        choices += [f"{name.strip()} (endpoint)" for name in settings.model.split(",") if name.strip()]
    if settings.local_model:
        choices.append(f"{Path(settings.local_model).name} (local)")
    return choices + [TINY_CHOICE]


def resolve_model(settings: Settings, choice: str | None) -> Model:
    """The model behind a picker label; ModelError (with setup help) when nothing usable is chosen."""
    from agent.models import load_model

    if choice == TINY_CHOICE:
        return load_model(settings, tiny=True)
    if choice and choice.endswith(" (endpoint)"):
        return load_model(settings.with_(model=choice.removesuffix(" (endpoint)"), local_model=None))
    return load_model(settings)


def _vlm_for(settings: Settings, controller: Model, choice: str | None) -> Model | None:
    """The visualizer's model: MAT_VLM_MODEL when set, else the controller itself."""
    from agent.models import load_model

    if settings.vlm_model and choice != TINY_CHOICE:
        try:
            return load_model(settings, which="vlm")
        except ModelError:
            return None
    return controller


def _user_messages(text: str, files: list[str]) -> list[dict[str, Any]]:
    import gradio as gr

    messages = [{"role": "user", "content": gr.File(path) if not _is_image(path) else gr.Image(path)} for path in files]
    if text.strip():
        messages.append({"role": "user", "content": text})
    return messages


def _is_image(path: str) -> bool:
    from agent.loop import IMAGE_SUFFIXES

    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def step_markdown(step: Step) -> str:
    """A step as Markdown: thought, code, and its observation or error."""
    parts = []
    if step.prompt is not None:  # out of steps or errors, the loop asked for an answer
        parts.append(f"**Asked by the loop:** {step.prompt}")
    if step.thought:
        parts.append(step.thought)
    if step.code:
        parts.append(f"```python\n{step.code}\n```")
    if step.error:
        parts.append(f"**Error**\n```text\n{step.error.strip()}\n```")
    elif step.observation is not None:
        parts.append(f"**Observation**\n```text\n{step.observation.rstrip() or '(no output)'}\n```")
    return "\n\n".join(parts)


def _step_title(step: Step) -> str:
    label = "final answer" if step.is_final else ("error" if step.error else "done")
    if step.prompt is not None:
        label = "answer on request"
    return f"Step {step.index + 1} · {label} · {step.seconds:.1f} s · {step.output_tokens} tokens"


def _step_messages(step: Step, workdir: Path) -> list[dict[str, Any]]:
    import gradio as gr

    messages = [{
        "role": "assistant",
        "content": step_markdown(step),
        "metadata": {"title": _step_title(step), "status": "done", "id": f"step-{step.index}"},
    }]
    for name in step.images:
        messages.append({"role": "assistant", "content": gr.Image(str(workdir / name))})
    if step.is_final:
        messages.append({"role": "assistant", "content": f"**Final answer:** {step.final_answer}"})
    return messages


def respond(
    message: dict[str, Any] | None,
    history: list[dict[str, Any]],
    choice: str | None,
    profile: str,
    max_steps: int,
    prompt_record: str,
    run_key: str,
    settings: Settings,
) -> Iterator[tuple[list[dict[str, Any]], FinishedRun | None]]:
    """Solve one task, yielding the chat history after every streamed change (and the run, once finished)."""
    message = message or {}
    text, files = message.get("text", "") or "", list(message.get("files") or [])
    if not text.strip():
        yield history + [_notice("Type a question or task to go with your files.")], None
        return
    history = history + _user_messages(text, files)
    yield history, None
    try:
        model = resolve_model(settings, choice)
        agent_run = start_run(
            settings, text, [Path(f) for f in files], profile=profile,
            system_prompt=record_system_prompt(settings, prompt_record), vlm=_vlm_for(settings, model, choice), llm=model,
        )
    except (ModelError, UploadError) as exc:
        yield history + [_notice(str(exc))], None
        return
    with _runs_lock:
        _runs[run_key] = agent_run
    try:
        limits = loop_limits(settings, int(max_steps), tiny=choice == TINY_CHOICE)
        yield from _stream_steps(agent_run, model, history, limits)
    finally:
        with _runs_lock:
            _runs.pop(run_key, None)
        agent_run.close()


def _stream_steps(agent_run: AgentRun, model: Model, history: list[dict[str, Any]], limits) -> Iterator:
    trajectory = agent_run.trajectory
    try:
        for event in agent_run.steps(model, limits):
            if isinstance(event, Delta):
                live = {
                    "role": "assistant",
                    "content": event.text,
                    "metadata": {"title": f"Step {event.index + 1} · writing…", "status": "pending"},
                }
                yield history + [live], None
                continue
            history = history + _step_messages(event, agent_run.workdir)
            yield history, None
    except ModelError as exc:
        history = history + [_notice(f"Model error: {exc}")]
    if agent_run.stop_event.is_set():
        history = history + [_notice("Stopped.")]
    yield history, FinishedRun(trajectory, dict(agent_run.attachments)) if trajectory.final_answer is not None else None


def _notice(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text, "metadata": {"title": "ℹ️ MAT Studio", "status": "done"}}


def record_system_prompt(settings: Settings, record_id: str | None) -> str | None:
    """The system turn of a stored trajectory, so a model tuned on MM-Traj is served the prompt it was trained on."""
    from agent.prompt import system_prompt_from_record
    from review.store import Store

    if not (record_id or "").strip():
        return None
    with Store(settings.db) as store:
        try:
            return system_prompt_from_record(store.detail(record_id.strip()).record)
        except KeyError:
            raise UploadError(f"no stored trajectory '{record_id.strip()}': copy an id from the Review tab") from None


def save_run(settings: Settings, finished: FinishedRun | None) -> str:
    """Put the last finished run into the review store, as an MM-Traj record of source "chat"."""
    from review.store import Store

    if finished is None:
        return "Nothing to save yet: finish a task first."
    with Store(settings.db) as store:
        trajectory_id = store.add_trajectory(finished.trajectory, source="chat", image_files=finished.files)
    return f"Saved as `{trajectory_id}`: it is pending in the Review tab."


def stop_run(run_key: str) -> None:
    """Stop this browser session's run, and only it."""
    with _runs_lock:
        agent_run = _runs.get(run_key)
    if agent_run is not None:
        agent_run.stop()


def setup_notice(settings: Settings) -> str:
    """What the page says above the chat: the sandbox in use, and how to configure a model if none is."""
    from agent.models import setup_help
    from agent.sandbox import sandbox_notice

    lines = [f"**Sandbox:** {sandbox_notice()}"]
    if model_choices(settings) == [TINY_CHOICE]:
        lines.append(f"```text\n{setup_help()}\n```")
    return "\n\n".join(lines)


def build_chat_tab(settings: Settings) -> None:
    """The Chat tab's components and events (called inside `gr.Tab`)."""
    import gradio as gr

    choices = model_choices(settings)
    gr.Markdown(setup_notice(settings), elem_id="chat-notice")
    with gr.Row():
        choice = gr.Dropdown(choices, value=choices[0], label="Model", elem_id="chat-model", scale=3)
        profile = gr.Dropdown(list(PROFILES), value=settings.profile, label="Tool profile", scale=1)
        max_steps = gr.Slider(1, 20, value=settings.max_steps, step=1, label="Max steps", scale=1)
    with gr.Accordion("System prompt", open=False):
        prompt_record = gr.Textbox(
            label="Serve with the system prompt of a stored trajectory (its id from the Review tab)",
            placeholder="empty: the release's template with the profile's tools", elem_id="chat-prompt-record",
        )
    chatbot = gr.Chatbot(label="T3-Agent", height=560, elem_id="chat-log", buttons=["copy"])
    box = gr.MultimodalTextbox(
        placeholder="Upload images or files and describe the task. Each message is a new task.",
        file_count="multiple", sources=["upload"], elem_id="chat-input", show_label=False,
    )
    with gr.Row():
        stop = gr.Button("Stop", variant="stop", elem_id="chat-stop")
        clear = gr.Button("Clear", elem_id="chat-clear")
        save = gr.Button("Save to Review", elem_id="chat-save")
    saved = gr.Markdown(elem_id="chat-saved")
    run_key = gr.State(lambda: uuid.uuid4().hex)
    last = gr.State(None)

    def submit(message, history, model_choice, tool_profile, steps, record_id, key):
        for history_now, finished in respond(
            message, history, model_choice, tool_profile, steps, record_id, key, settings
        ):
            yield history_now, finished, None

    box.submit(
        submit, [box, chatbot, choice, profile, max_steps, prompt_record, run_key], [chatbot, last, box],
        api_name="chat", concurrency_limit=settings.remote_concurrency, show_progress="minimal",
    )
    stop.click(stop_run, [run_key], None, api_name="stop", queue=False)
    clear.click(lambda: ([], None), None, [chatbot, last], api_name=False)
    save.click(lambda finished: save_run(settings, finished), [last], [saved], api_name="save")
