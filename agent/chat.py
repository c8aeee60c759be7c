"""One chat turn: a message in, the chat history out after every streamed change, and the finished run.

The Chat tab (`agent/ui.py`) wires these to the page. The steps come from `AgentRun.steps`, the same
generator the CLI prints, consumed here on a worker thread so the page can count seconds while a step's
code runs or a model loads. What a session keeps between turns is only the path of the finished run's
record on disk (`FinishedRun.dump`), never the run, its images or its history.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.display import live_markdown, plain_markdown, step_heading, step_markdown
from agent.loop import IMAGE_SUFFIXES, Delta
from agent.models import Choice, is_loaded, load_choice
from agent.models.base import Model, ModelError
from agent.parsing import parse_action
from agent.render import assistant_text
from agent.session import UPLOADS, AgentRun, UploadError, check_files, loop_limits, start_run
from agent.steps import Step, Task, Trajectory
from core.errors import UserError

# Uploads above this many pixels are scaled down once, before any tool sees them (a 144-megapixel photo
# took 53 s in face detection); the controller model gets its own, smaller budget (MAT_MAX_PIXELS).
UPLOAD_MAX_PIXELS = 16_777_216
TICK_SECONDS = 0.5  # how often a running step's (or a loading model's) elapsed time is refreshed
STOPPED_NOTICE = "Stopped. What was written so far is kept as a stopped step: Save to Review stores it, marked so."
_CLOSED_CODE = re.compile(r"Code:\s*```[^\n]*\n.*?```", re.S)

_runs: dict[str, AgentRun] = {}  # the run in progress of each browser session, for its Stop button
_runs_lock = threading.Lock()


@dataclass
class FinishedRun:
    """What "Save to Review" stores: the trajectory and the files behind its image and attachment names."""

    trajectory: Trajectory
    files: dict[str, Path]

    def dump(self, path: Path) -> str:
        """Write the run beside its folder, out of model code's reach; the page keeps only the path."""
        data = {"trajectory": asdict(self.trajectory), "files": {name: str(p) for name, p in self.files.items()}}
        path.write_text(json.dumps(data, ensure_ascii=False))
        return str(path)

    @classmethod
    def load(cls, path: str) -> FinishedRun:
        try:
            data = json.loads(Path(path).read_text())
        except OSError:
            raise UserError("that run's folder was removed (MAT_KEEP_RUNS keeps the newest): run it again") from None
        saved = data["trajectory"]
        trajectory = Trajectory(
            task=Task(**saved["task"]), system_prompt=saved["system_prompt"], task_message=saved["task_message"],
            steps=[Step.from_dict(step) for step in saved["steps"]], stopped=saved["stopped"],
        )
        return cls(trajectory, {name: Path(p) for name, p in data["files"].items()})


def respond(
    message: dict[str, Any] | None,
    history: list[dict[str, Any]],
    choice: Choice,
    profile: str,
    max_steps: int,
    system_prompt: str | None,
    run_key: str,
    settings: Settings,
) -> Iterator[tuple[list[dict[str, Any]], str | None, bool]]:
    """Solve one task, yielding after every streamed change: the chat history, the finished run's path (at the
    end), and whether a run is going (so Stop is live only then).

    Refusals (no question, an unreadable file) raise UserError before anything is shown.
    """
    text, files = (message or {}).get("text") or "", [Path(f) for f in (message or {}).get("files") or []]
    if not text.strip():
        raise UserError("Type a question or task to go with your files.")
    check_files(files, settings.max_upload_mb)
    history = history + _user_messages(text, files)
    yield history, None, False
    try:
        uploads, scaled = scale_uploads(files, settings.runs_dir / UPLOADS / uuid.uuid4().hex)
        history = history + [notice(line) for line in scaled]
        model = yield from _loaded(settings, choice, history)
        agent_run = start_run(settings, text, uploads, profile=profile, system_prompt=system_prompt,
                              controller=model, tiny=choice.tiny)
    except (ModelError, UploadError) as exc:
        yield history + [notice(str(exc))], None, False
        return
    with _runs_lock:
        _runs[run_key] = agent_run
    try:
        yield history, None, True  # Stop goes live before the model's first word
        yield from _stream_steps(agent_run, model, history, loop_limits(settings, int(max_steps), tiny=choice.tiny))
    finally:
        with _runs_lock:
            _runs.pop(run_key, None)
        agent_run.close()


def stop_run(run_key: str) -> None:
    """Stop this browser session's run, and only it."""
    with _runs_lock:
        agent_run = _runs.get(run_key)
    if agent_run is not None:
        agent_run.stop()


def _loaded(settings: Settings, choice: Choice, history: list) -> Iterator[tuple[list, None, bool]]:
    """Load the chosen model on a thread; while it loads (a local checkpoint, the tiny one), the page says so."""
    done: dict[str, Any] = {}

    def load() -> None:
        try:
            done["model"] = load_choice(settings, choice)
        except Exception as exc:  # handed to the page's thread, which reports it
            done["error"] = exc

    def loading() -> tuple[list, None, bool]:
        return history + [_pending(f"Loading model {choice.label}… {time.monotonic() - started:.0f} s",
                                   "The first message to a local model waits while its weights load.")], None, False

    worker = threading.Thread(target=load, name="chat-load", daemon=True)
    started = time.monotonic()
    if not is_loaded(settings, choice):
        yield loading()
    worker.start()
    while True:
        worker.join(TICK_SECONDS)
        if not worker.is_alive():
            break
        yield loading()
    if "error" in done:
        raise done["error"]
    return done["model"]


def _stream_steps(agent_run: AgentRun, model: Model, history: list[dict[str, Any]], limits) -> Iterator:
    trajectory = agent_run.trajectory
    live: Delta | None = None
    live_since = code_since = None
    try:
        for event in _events(agent_run, model, limits):
            if isinstance(event, Delta):
                if live is None:
                    live_since = time.monotonic()
                live = event
                if code_since is None and _CLOSED_CODE.search(event.text):
                    code_since = time.monotonic()
            elif isinstance(event, Step):
                stopped = agent_run.stop_event.is_set()
                history, live, code_since = history + _step_messages(event, agent_run.kept, stopped), None, None
            if event is not None or code_since is not None:
                yield history + ([_live_message(live, code_since)] if live is not None else []), None, True
    except ModelError as exc:
        history = history + [notice(f"Model error: {exc}")]
    if agent_run.stop_event.is_set():
        if live is not None:
            step = _stopped_step(live, time.monotonic() - live_since)
            trajectory.steps.append(step)
            history = history + _step_messages(step, {}, stopped=True)
        trajectory.stopped = True
        history = history + [notice(STOPPED_NOTICE)]
    yield history, _finished(agent_run), False


def _finished(agent_run: AgentRun) -> str | None:
    """The path of the finished run's record (an answer, or a stopped run with something in it), or None."""
    trajectory = agent_run.trajectory
    if trajectory.final_answer is None and not (trajectory.stopped and trajectory.steps):
        return None
    files = {**agent_run.attachments, **agent_run.kept}
    return FinishedRun(trajectory, files).dump(agent_run.workdir.with_name(agent_run.workdir.name + ".json"))


def _stopped_step(delta: Delta, seconds: float) -> Step:
    """What the model had written when the run was stopped, as a step that never ran."""
    text = assistant_text(delta.text)
    thought, code = parse_action(text)
    return Step(index=delta.index, model_output=text, thought=thought, code=code, seconds=seconds)


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


# ---------------------------------------------------------------- messages


def notice(text: str) -> dict[str, Any]:
    """A message from the app itself, shown open (a titled message would fold it behind a pill)."""
    return {"role": "assistant", "content": text}


def _pending(title: str, text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text, "metadata": {"title": title, "status": "pending"}}


def _user_messages(text: str, files: list[Path]) -> list[dict[str, Any]]:
    import gradio as gr

    messages = [{"role": "user", "content": gr.Image(str(path)) if _is_image(path) else gr.File(str(path))}
                for path in files]
    return messages + [{"role": "user", "content": plain_markdown(text)}]


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _step_title(step: Step, stopped: bool) -> str:
    label = "final answer" if step.is_final else ("error" if step.error else "done")
    if step.prompt is not None:
        label = "answer on request"
    if stopped:
        label = "stopped"
    tokens = f" · {step.output_tokens} tokens" if step.output_tokens else ""
    return f"{step_heading(step)} · {label} · {step.seconds:.1f} s{tokens}"


def _step_messages(step: Step, kept: dict[str, Path], stopped: bool = False) -> list[dict[str, Any]]:
    import gradio as gr

    messages = [{
        "role": "assistant",
        "content": step_markdown(step),
        "metadata": {"title": _step_title(step, stopped), "status": "done", "id": f"step-{step.index}"},
    }]
    for name in step.images:
        messages.append({"role": "assistant", "content": gr.Image(str(kept[name]))})
    if step.is_final:
        messages.append({"role": "assistant", "content": f"**Final answer:** {plain_markdown(str(step.final_answer))}"})
    return messages


def _live_message(delta: Delta, code_since: float | None) -> dict[str, Any]:
    """The step being written, or, once its code block is closed, run: "running code" and for how long."""
    doing = "writing…" if code_since is None else f"running code · {time.monotonic() - code_since:.0f} s"
    return _pending(f"{step_heading(Step(index=delta.index, model_output=''))} · {doing}", live_markdown(delta.text))


# ---------------------------------------------------------------- uploads


def scale_uploads(files: list[Path], folder: Path, limit: int = UPLOAD_MAX_PIXELS) -> tuple[list[Path], list[str]]:
    """Images above `limit` pixels as scaled copies in `folder` (same names), once, before any tool runs.

    Returns the files to use and a line per image that was scaled.
    """
    from PIL import Image, UnidentifiedImageError

    used, notes = [], []
    for path in files:
        if not _is_image(path):
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

