"""The step viewer: one rendering of a trajectory that Review, Evaluate and Chat share.

Everything shown comes from records or model output, so it is untrusted: every string
goes through `html.escape` (code through Pygments, which escapes too) and images are
inlined as thumbnails we encode ourselves, so no record can inject markup or load a URL.
The functions here are pure (data in, HTML out); `build_viewer` wraps them in a component.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple, Protocol, Sequence

from agent.display import step_heading
from agent.steps import Step, Trajectory, tools_called
from agent.profiles import TOOL_NAMES

if TYPE_CHECKING:
    import gradio as gr

THUMBNAIL_PX = 360
STEP_FIELDS = ("thought", "code", "observation")
EMPTY = '<div class="mat-viewer mat-empty">Nothing selected.</div>'

VIEWER_CSS = """
.mat-viewer { font-size: 14px; line-height: 1.45; color: var(--body-text-color, #1f2328); }
.mat-viewer h3 { margin: 0 0 6px 0; font-size: 16px; }
.mat-viewer section { border: 1px solid var(--border-color-primary, #d0d7de); border-radius: 8px;
  padding: 10px 12px; margin: 0 0 10px 0; background: var(--block-background-fill, #fff); }
.mat-viewer .mat-label { font-weight: 600; font-size: 13px;
  color: var(--body-text-color-subdued, #57606a); margin: 8px 0 2px 0; }
.mat-viewer .mat-text { white-space: pre-wrap; overflow-wrap: anywhere; }
.mat-viewer pre.mat-text, .mat-viewer .mat-code pre { max-height: 420px; overflow: auto; margin: 0;
  padding: 8px; border-radius: 6px; font-size: 13px; }
.mat-viewer pre.mat-text { background: var(--background-fill-secondary, #f6f8fa); }
.mat-viewer .mat-code pre { background: #f6f8fa; color: #1f2328; }
.mat-viewer .mat-error pre { background: #fff0f0; color: #82071e; border-left: 4px solid #cf222e; }
.mat-viewer .mat-badge { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px;
  margin-left: 6px; background: #eaeef2; color: #24292f; }
.mat-viewer .mat-badge.bad { background: #ffebe9; color: #82071e; }
.mat-viewer .mat-badge.good { background: #dafbe1; color: #116329; }
.mat-viewer .mat-badge.edit { background: #fff8c5; color: #7d4e00; }
.mat-viewer .mat-images { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 6px; }
.mat-viewer figure { margin: 0; max-width: 360px; }
.mat-viewer figure img { max-width: 100%; border-radius: 4px; border: 1px solid var(--border-color-primary, #d0d7de); }
.mat-viewer figcaption { font-size: 12px; overflow-wrap: anywhere; color: var(--body-text-color-subdued, #57606a); }
.mat-viewer .mat-missing { border: 2px dashed #cf222e; color: #82071e; padding: 8px; border-radius: 4px;
  font-size: 12px; max-width: 360px; overflow-wrap: anywhere; }
.mat-viewer details.mat-original { margin-top: 4px; font-size: 13px; }
.mat-viewer details.mat-original summary { cursor: pointer; color: #7d4e00; }
.mat-viewer table.mat-answers td { vertical-align: top; padding: 2px 8px 2px 0; }
"""


class ImageLike(Protocol):
    """An image a record names: where it is on disk, or that it is missing (the store's ImageRef fits)."""

    name: str
    path: Path | None
    missing: bool


@dataclass
class ImageView:
    name: str
    path: Path | None
    missing: bool


@dataclass
class View:
    """Everything the viewer shows: the trajectory and what reviewers and scorers know about it."""

    trajectory: Trajectory
    title: str = ""
    images: Sequence[ImageLike] = ()
    answer: str | None = None
    reference_answer: str | None = None
    verdict: str | None = None
    verdict_reason: str | None = None
    original: Trajectory | None = None
    original_answer: str | None = None
    base_dir: Path | None = None


def image_views(paths: Sequence[str], base_dir: Path | None = None) -> list[ImageView]:
    """ImageViews for the names a record gives, looked up only under `base_dir` (none: all missing).

    A name is data: one that is absolute, climbs out with `..` or passes through a link is shown as missing,
    never read from wherever it points.
    """
    return [ImageView(name=name, path=path, missing=path is None) for name in paths
            for path in [_inside(base_dir, name)]]


def _inside(base_dir: Path | None, name: str) -> Path | None:
    """`base_dir / name` when it is a plain file reached without links or leaving `base_dir`, else None."""
    if base_dir is None or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        return None
    path = Path(base_dir)
    for part in Path(name).parts:
        path = path / part
        if path.is_symlink():
            return None
    return path if path.is_file() else None


def render(view: View) -> str:
    """The whole trajectory as one self-contained HTML fragment."""
    trajectory = view.trajectory
    original_steps = view.original.steps if view.original else []
    parts = [f"<style>{VIEWER_CSS}</style>", '<div class="mat-viewer">', render_task(view)]
    stored = {image.name: image for image in view.images}
    for position, step in enumerate(trajectory.steps):
        before = original_steps[position] if position < len(original_steps) else None
        parts.append(render_step(step, original=before, base_dir=view.base_dir, stored=stored))
    parts.append(render_outcome(view))
    parts.append("</div>")
    return "".join(parts)


def render_task(view: View) -> str:
    task = view.trajectory.task
    title = f"<h3>{_e(view.title)}</h3>" if view.title else ""
    attachments = ""
    if task.attachments:
        items = "".join(f"<li><code>{_e(a)}</code></li>" for a in task.attachments)
        attachments = f'<div class="mat-label">Attachments</div><ul>{items}</ul>'
    produced = {name for step in view.trajectory.steps for name in step.images}  # shown with their step
    images = [image for image in view.images if image.name not in produced] or image_views(task.images, view.base_dir)
    return (
        f'<section class="mat-task">{title}<div class="mat-label">Task</div>'
        f'<div class="mat-text">{_e(task.text)}</div>{attachments}{render_images(images)}</section>'
    )


def render_step(step: Step, *, original: Step | None = None, base_dir: Path | None = None,
                stored: dict[str, ImageLike] | None = None) -> str:
    """One Thought / Code / Observation cycle; edited fields carry a badge and the original on request.

    Images the step saved are looked up in `stored` (a store's copies) first, then under `base_dir`.
    """
    changed = edited_fields(step, original)
    badges = "".join(f'<span class="mat-badge">{_e(name)}</span>' for name in _step_tools(step))
    if step.error is not None:
        badges += '<span class="mat-badge bad">error</span>'
    if step.is_final:
        badges += '<span class="mat-badge good">final</span>'
    if step.prompt is not None:
        badges += '<span class="mat-badge bad">answer on request</span>'
    if changed:
        badges += '<span class="mat-badge edit">edited</span>'
    body = [f'<section class="mat-step" data-step="{step.index}"><h3>{_e(step_heading(step))}{badges}</h3>']
    if step.prompt is not None:  # out of steps or errors, the loop asked for an answer in this user turn
        body.append(f'<div class="mat-label">Asked by the loop</div>{_pre(step.prompt)}')
    body.append(_field("Thought", f'<div class="mat-text">{_e(step.thought)}</div>', "thought", changed, original))
    if step.code is not None:
        body.append(_field("Code", f'<div class="mat-code">{highlight(step.code)}</div>', "code", changed, original))
    if step.error is not None:
        body.append(_field("Error", f'<div class="mat-error">{_pre(step.error)}</div>', "observation", changed, original))
    elif step.observation is not None:
        body.append(_field("Observation", _pre(step.observation), "observation", changed, original))
    if step.images:
        found = [(stored or {}).get(name) or image_views([name], base_dir)[0] for name in step.images]
        body.append('<div class="mat-label">Images produced</div>' + render_images(found))
    body.append("</section>")
    return "".join(body)


def render_outcome(view: View) -> str:
    """Final answer against the stored answer and the reference, and the verifier's verdict."""
    final = view.trajectory.final_answer
    rows = [("Final answer (code)", final), ("Answer", view.answer), ("Reference", view.reference_answer)]
    cells = "".join(
        f'<tr><td class="mat-label">{label}</td><td class="mat-text">{_e(value)}</td></tr>'
        for label, value in rows
        if value is not None
    )
    match = ""
    shown = view.answer if view.answer is not None else final
    if view.reference_answer is not None and shown is not None:
        same = _normal(shown) == _normal(view.reference_answer)
        match = f'<span class="mat-badge {"good" if same else "bad"}">{"matches" if same else "differs from"} reference</span>'
    original = ""
    if view.original_answer is not None and view.original_answer != view.answer:
        original = '<span class="mat-badge edit">edited</span>' + _original_block("answer", view.original_answer)
    verdict = render_verdict(view.verdict, view.verdict_reason)
    if not cells and not verdict:
        return ""
    return (
        f'<section class="mat-outcome"><h3>Outcome{match}</h3>'
        f'<table class="mat-answers">{cells}</table>{original}{verdict}</section>'
    )


def render_verdict(verdict: str | None, reason: str | None) -> str:
    if verdict is None and not reason:
        return ""
    tone = {"yes": "good", "no": "bad"}.get((verdict or "").lower(), "")
    label = f'<span class="mat-badge {tone}">{_e(verdict or "none")}</span>'
    text = f'<div class="mat-text">{_e(reason)}</div>' if reason else ""
    return f'<div class="mat-label">Verifier verdict {label}</div>{text}'


def render_images(images: Sequence[ImageLike]) -> str:
    if not images:
        return ""
    cells = []
    for image in images:
        uri = None if image.missing or image.path is None else thumbnail(image.path)
        if uri is None:
            cells.append(f'<div class="mat-missing">missing image: {_e(image.name)}</div>')
        else:
            cells.append(f'<figure><img src="{uri}" alt="{_e(image.name)}"><figcaption>{_e(image.name)}</figcaption></figure>')
    return f'<div class="mat-images">{"".join(cells)}</div>'


def edited_fields(step: Step, original: Step | None) -> set[str]:
    """Which of thought / code / observation differ from the original step."""
    if original is None:
        return set()
    changed = {name for name in ("thought", "code") if getattr(step, name) != getattr(original, name)}
    if (step.observation, step.error) != (original.observation, original.error):
        changed.add("observation")
    return changed


def highlight(code: str) -> str:
    """Python code as highlighted, escaped HTML (inline styles, so it needs no stylesheet)."""
    from pygments import highlight as pyg_highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    return pyg_highlight(code, PythonLexer(), HtmlFormatter(noclasses=True, nobackground=True))


def thumbnail(path: Path) -> str | None:
    """A data URI of a small copy of the image; None when it cannot be read."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return _thumbnail(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=256)
def _thumbnail(path: str, mtime_ns: int, size: int) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=85)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class Viewer(NamedTuple):
    component: gr.HTML
    update: Callable[[View | None], str]


def build_viewer(elem_id: str = "mat-viewer") -> Viewer:
    """The viewer component, and the function that turns a View (or None) into its value.

    A second viewer on the same page (another tab) takes its own `elem_id`, so element ids stay unique.
    """
    import gradio as gr

    component = gr.HTML(EMPTY, elem_id=elem_id, padding=False)
    return Viewer(component, lambda view: render(view) if view is not None else EMPTY)


def _field(label: str, content: str, name: str, changed: set[str], original: Step | None) -> str:
    block = f'<div class="mat-label">{label}</div>{content}'
    if name in changed and original is not None:
        block += _original_block(name, _original_value(original, name))
    return block


def _original_value(step: Step, name: str) -> str:
    if name == "observation":
        return step.error if step.error is not None else (step.observation or "")
    return getattr(step, name) or ""


def _original_block(name: str, value: str) -> str:
    return f'<details class="mat-original"><summary>show original {_e(name)}</summary>{_pre(value)}</details>'


def _pre(text: str) -> str:
    return f'<pre class="mat-text">{_e(text)}</pre>'


def _e(text: object) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _step_tools(step: Step) -> list[str]:
    return tools_called(step.code, TOOL_NAMES)


def _normal(answer: str) -> str:
    return re.sub(r"\s+", " ", answer.strip().strip("\"'").casefold())
