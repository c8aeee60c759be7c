"""The Chat tab: upload images, ask, and watch each step stream in as a collapsible message.

Handlers are small functions over `agent.session`; the tab only wires them to components.
Each browser session has its own run key, so one user's Stop never stops another's run.
The review store is reached only through `StoreHooks` that the app passes in: `agent`
never imports `review`.
"""

from __future__ import annotations

import queue
import re
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import Settings
from core.ui import Links
from agent.display import fenced, plain_markdown, step_heading
from agent.loop import Delta
from agent.models.base import Model, ModelError
from agent.parsing import parse_action
from agent.session import AgentRun, UploadError, loop_limits, start_run
from agent.steps import Step, Trajectory
from agent.profiles import PROFILES

TINY_CHOICE = "tiny random Qwen2-VL (smoke test)"
# Uploads above this many pixels are scaled down once, before any tool sees them (a 144-megapixel photo
# took 53 s in face detection); the controller model gets its own, smaller budget (MAT_MAX_PIXELS).
UPLOAD_MAX_PIXELS = 16_777_216
TICK_SECONDS = 0.5  # how often a running step's elapsed time is refreshed
_CLOSED_CODE = re.compile(r"Code:\s*```[^\n]*\n.*?```", re.S)

_runs: dict[str, AgentRun] = {}
_runs_lock = threading.Lock()


@dataclass
class FinishedRun:
    """What "Save to Review" stores: the trajectory and the files behind its image and attachment names."""

    trajectory: Trajectory
    files: dict[str, Path]


@dataclass
class StoreHooks:
    """What the Chat tab may do with stored trajectories; supplied where the app is assembled."""

    save: Callable[[FinishedRun], str]  # store a finished run, return its trajectory id
    system_prompt: Callable[[str], str]  # a stored trajectory's system turn; KeyError for an unknown id


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


def _user_messages(text: str, files: list[str]) -> list[dict[str, Any]]:
    import gradio as gr

    messages = [{"role": "user", "content": gr.File(path) if not _is_image(path) else gr.Image(path)} for path in files]
    if text.strip():
        messages.append({"role": "user", "content": plain_markdown(text)})
    return messages


def _is_image(path: str) -> bool:
    from agent.loop import IMAGE_SUFFIXES

    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def step_markdown(step: Step) -> str:
    """A step as Markdown: thought (kept as text), code, and its observation or error."""
    parts = []
    if step.prompt is not None:  # out of steps or errors, the loop asked for an answer
        parts.append(f"**Asked by the loop:** {step.prompt}")
    if step.thought:
        parts.append(plain_markdown(step.thought))
    if step.code:
        parts.append(fenced(step.code, "python"))
    if step.error:
        parts.append(f"**Error**\n{fenced(step.error.strip())}")
    elif step.observation is not None:
        parts.append(f"**Observation**\n{fenced(step.observation.rstrip() or '(no output)')}")
    return "\n\n".join(parts)


def _step_title(step: Step) -> str:
    label = "final answer" if step.is_final else ("error" if step.error else "done")
    if step.prompt is not None:
        label = "answer on request"
    return f"{step_heading(step)} · {label} · {step.seconds:.1f} s · {step.output_tokens} tokens"


def _step_messages(step: Step, kept: dict[str, Path]) -> list[dict[str, Any]]:
    import gradio as gr

    messages = [{
        "role": "assistant",
        "content": step_markdown(step),
        "metadata": {"title": _step_title(step), "status": "done", "id": f"step-{step.index}"},
    }]
    for name in step.images:
        messages.append({"role": "assistant", "content": gr.Image(str(kept[name]))})
    if step.is_final:
        messages.append({"role": "assistant", "content": f"**Final answer:** {plain_markdown(str(step.final_answer))}"})
    return messages


def _live_message(delta: Delta, code_since: float | None) -> dict[str, Any]:
    """The step being written, or, once its code block is closed, run: "running code" and for how long."""
    thought, code = parse_action(delta.text)
    step = Step(index=delta.index, model_output=delta.text, thought=thought, code=code)
    doing = "writing…" if code_since is None else f"running code · {time.monotonic() - code_since:.0f} s"
    content = step_markdown(step) if code is not None else plain_markdown(delta.text)
    return {"role": "assistant", "content": content,
            "metadata": {"title": f"{step_heading(step)} · {doing}", "status": "pending"}}


def scale_uploads(files: list[Path], folder: Path, limit: int = UPLOAD_MAX_PIXELS) -> tuple[list[Path], list[str]]:
    """Images above `limit` pixels as scaled copies in `folder` (same names), once, before any tool runs.

    Returns the files to use and a line per image that was scaled.
    """
    from PIL import Image, UnidentifiedImageError

    used, notes = [], []
    for path in files:
        if not _is_image(str(path)):
            used.append(path)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # huge is why we are here
                image = Image.open(path)
            with image:
                width, height = image.size
                if width * height <= limit:
                    used.append(path)
                    continue
                ratio = (limit / (width * height)) ** 0.5
                size = (max(1, int(width * ratio)), max(1, int(height * ratio)))
                image.draft("RGB", size)  # JPEG decodes straight at a fraction of the size
                smaller = image.convert("RGB" if image.mode not in ("RGB", "L", "RGBA") else image.mode)
                smaller = smaller.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        except Image.DecompressionBombError:
            raise UploadError(f"{path.name} has too many pixels to be a safe image to open") from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise UploadError(f"{path.name} is not a readable image ({type(exc).__name__})") from None
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / path.name
        if target.suffix.lower() in (".jpg", ".jpeg") and smaller.mode != "RGB":
            smaller = smaller.convert("RGB")
        smaller.save(target)
        used.append(target)
        notes.append(f"{path.name} is {width}×{height} ({width * height / 1e6:.0f} megapixels); "
                     f"the agent and its tools get a copy scaled to {size[0]}×{size[1]}.")
    return used, notes


def respond(
    message: dict[str, Any] | None,
    history: list[dict[str, Any]],
    choice: str | None,
    profile: str,
    max_steps: int,
    prompt_record: str,
    run_key: str,
    settings: Settings,
    hooks: StoreHooks | None = None,
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
        uploads, scaled = scale_uploads([Path(f) for f in files], settings.runs_dir / "uploads" / uuid.uuid4().hex)
        history = history + [_notice(line) for line in scaled]
        model = resolve_model(settings, choice)
        agent_run = start_run(
            settings, text, uploads, profile=profile, system_prompt=record_system_prompt(hooks, prompt_record),
            controller=model, tiny=choice == TINY_CHOICE,
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
    live: Delta | None = None
    code_since: float | None = None
    try:
        for event in _events(agent_run, model, limits):
            if isinstance(event, Delta):
                live = event
                if code_since is None and _CLOSED_CODE.search(event.text):
                    code_since = time.monotonic()
            elif isinstance(event, Step):
                history, live, code_since = history + _step_messages(event, agent_run.kept), None, None
            if event is not None or code_since is not None:
                yield history + ([_live_message(live, code_since)] if live is not None else []), None
    except ModelError as exc:
        history = history + [_notice(f"Model error: {exc}")]
    if agent_run.stop_event.is_set():
        history = history + [_notice("Stopped.")]
    finished = FinishedRun(trajectory, _run_files(agent_run)) if trajectory.final_answer is not None else None
    yield history, finished


def _events(agent_run: AgentRun, model: Model, limits) -> Iterator[Step | Delta | None]:
    """The run's steps and deltas, from a worker thread; None after each quiet TICK_SECONDS, so the
    page can count the seconds a step's code has been running."""
    events: queue.Queue = queue.Queue()
    finished = object()

    def work() -> None:
        try:
            for event in agent_run.steps(model, limits):
                events.put(event)
        except Exception as exc:  # handed to the page's thread, which reports it
            events.put(exc)
        finally:
            events.put(finished)

    worker = threading.Thread(target=work, name="chat-run", daemon=True)
    worker.start()
    try:
        while True:
            try:
                event = events.get(timeout=TICK_SECONDS)
            except queue.Empty:
                yield None
                continue
            if event is finished:
                return
            if isinstance(event, Exception):
                raise event
            yield event
    finally:
        if worker.is_alive():  # the page went away mid-run
            agent_run.stop()
            worker.join(timeout=10)


def _run_files(agent_run: AgentRun) -> dict[str, Path]:
    """The files behind the run's names: its attachments and the images its steps saved."""
    return {**agent_run.attachments, **agent_run.kept}


def _notice(text: str) -> dict[str, Any]:
    """A message from the app itself, shown open (a titled message would fold it behind a pill)."""
    return {"role": "assistant", "content": text}


def record_system_prompt(hooks: StoreHooks | None, record_id: str | None) -> str | None:
    """The system turn of a stored trajectory, so a model tuned on MM-Traj is served the prompt it was trained on."""
    if not (record_id or "").strip():
        return None
    if hooks is None:
        raise UploadError("no trajectory store is connected to this chat, so a stored system prompt cannot be used")
    try:
        return hooks.system_prompt(record_id.strip())
    except KeyError:
        raise UploadError(f"no stored trajectory '{record_id.strip()}': copy an id from the Review tab") from None


def save_run(hooks: StoreHooks, finished: FinishedRun | None) -> str:
    """Put the last finished run into the review store (through the app's hooks)."""
    if finished is None:
        return "Nothing to save yet: finish a task first."
    return f"Saved as `{hooks.save(finished)}`: it is pending in the Review tab."


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


def build_chat_tab(settings: Settings, hooks: StoreHooks | None = None, links: Links | None = None) -> None:
    """The Chat tab's components and events (called inside `gr.Tab`); `hooks` connect it to the review store."""
    import gradio as gr

    choices = model_choices(settings)
    gr.Markdown(setup_notice(settings), elem_id="chat-notice")
    with gr.Row():
        choice = gr.Dropdown(choices, value=choices[0], label="Model", elem_id="chat-model", scale=3)
        profile = gr.Dropdown(list(PROFILES), value=settings.profile, label="Tool profile", scale=1)
        max_steps = gr.Slider(1, 20, value=settings.max_steps, step=1, label="Max steps", scale=1)
    with gr.Accordion("System prompt", open=False, visible=hooks is not None):
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
        save = gr.Button("Save to Review", elem_id="chat-save", visible=hooks is not None)
    saved = gr.Markdown(elem_id="chat-saved")
    run_key = gr.State(lambda: uuid.uuid4().hex)
    last = gr.State(None)

    def submit(message, history, model_choice, tool_profile, steps, record_id, key):
        asked = bool(((message or {}).get("text") or "").strip())
        for history_now, finished in respond(
            message, history, model_choice, tool_profile, steps, record_id, key, settings, hooks
        ):
            # Files sent without a question stay in the box, waiting for one.
            yield history_now, finished, None if asked else message

    box.submit(
        submit, [box, chatbot, choice, profile, max_steps, prompt_record, run_key], [chatbot, last, box],
        api_name="chat", concurrency_limit=settings.remote_concurrency, show_progress="minimal",
    )
    stop.click(stop_run, [run_key], None, api_name="stop", queue=False)
    clear.click(lambda: ([], None), None, [chatbot, last], api_name=False)
    if hooks is not None:
        save.click(lambda finished: save_run(hooks, finished), [last], [saved], api_name="save")
