"""The step sampler's panel in the Review tab: sample K candidates at a step, see them side by side, pick.

Sampling runs on threads of its own (`review.sampler`); the handler only watches them, redrawing what each
candidate is doing twice a second, so the page stays usable and a slow model or sandbox shows where it is.
Keys (not while typing): a digit picks the best (0 the recorded step, 1 to 9 a candidate), Shift + digit marks
one bad or good again, p records the pick.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from agent.config import Settings
from agent.models import TINY, model_choices
from core import defaults
from core.errors import UserError
from review import actions, sampler
from review.sampler import HEURISTIC, RECORDED, Sample
from review.store import Store
from review.viewer import VIEWER_CSS, ImageView, render_step

POLL_SECONDS = 0.5
SAMPLER_KEYS = {"pick": "review-sample-pick", "best": "review-sample-best", "bad": "review-sample-bad"}
GRID_CSS = (".review-candidates { display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr));"
            " gap: 10px; } .review-candidates > div { min-width: 0; }")


@dataclass
class SamplerPanel:
    step: Any
    k: Any
    model: Any
    judge: Any
    run: Any
    progress: Any
    candidates: Any
    best: Any
    bad: Any
    keep_going: Any
    pick: Any
    message: Any
    sample: Any  # the Sample the page shows, until it is picked from


def sampler_panel(settings: Settings) -> SamplerPanel:
    """Lay out the panel (under the viewer, in the Queue tab)."""
    labels, preferred = _models(settings)
    with gr.Accordion("Sample alternatives at a step (SPORT's beam; you rank them)", open=False):
        with gr.Row():
            step = gr.Number(1, label="At step (as numbered above)", precision=0, minimum=1,
                             elem_id="review-sample-step")
            k = gr.Number(defaults.SAMPLER_K, label=f"K candidates (1 to {sampler.MAX_K})", precision=0,
                          elem_id="review-sample-k")
            model = gr.Dropdown(labels, value=preferred, label="Model (as in Chat; Settings adds models)",
                                allow_custom_value=True, elem_id="review-sample-model", scale=2)
            judge = gr.Dropdown([HEURISTIC, *labels], value=preferred or HEURISTIC, label="Suggested ranking by",
                                elem_id="review-sample-judge", scale=2)
        run = gr.Button("Sample K alternatives", variant="primary", elem_id="review-sample-run")
        progress = gr.Markdown(elem_id="review-sample-progress")
        candidates = gr.HTML(elem_id="review-sample-candidates")
        with gr.Row():
            best = gr.Radio([], label="Best (0-9)", elem_id=SAMPLER_KEYS["best"], scale=2)
            bad = gr.CheckboxGroup([], label="Bad (Shift + 0-9)", elem_id=SAMPLER_KEYS["bad"], scale=2)
            keep_going = gr.Checkbox(False, label="Continue the trajectory from the pick (a new one)", scale=1)
        pick = gr.Button("Record the pick (p)", variant="primary", elem_id=SAMPLER_KEYS["pick"])
        message = gr.Markdown(elem_id="review-sample-message")
    return SamplerPanel(step, k, model, judge, run, progress, candidates, best, bad, keep_going, pick, message,
                        gr.State(None))


def _models(settings: Settings) -> tuple[list[str], str | None]:
    """The picker's labels, and the first model configured (None where only the tiny smoke model is offered)."""
    labels = [choice.label for choice in model_choices(settings)]
    return labels, next((label for label in labels if label != TINY), None)


class SamplerHandlers:
    """The panel's handlers; `render` redraws the Review screen for a queue (review.ui's Handlers.render)."""

    def __init__(self, store: Store, settings: Settings, render: Callable[[actions.Queue], tuple]) -> None:
        self.store, self.settings, self.render = store, settings, render

    def choices(self, model: str | None, judge: str | None) -> tuple:
        """Fresh model choices (Settings may have added one), keeping what is chosen."""
        labels, _ = _models(self.settings)
        return gr.Dropdown(choices=labels, value=model), gr.Dropdown(choices=[HEURISTIC, *labels], value=judge)

    def sample(self, queue: actions.Queue, step: float, k: float, model: str, judge: str) -> Iterator[tuple]:
        """(sample, progress, candidates, best, bad): progress while the candidates are sampled, then them."""
        sampler.check_request(self.settings, k, model)
        sampler.prefix_at(self.store, queue.current, step)
        work = Watched(lambda report: sampler.sample(self.store, self.settings, queue.current, step, k, model, judge,
                                                     report=report), "review-sampler")
        for seconds in work.ticks():
            yield gr.skip(), _progress(work.statuses, seconds), gr.skip(), gr.skip(), gr.skip()
        if work.error is not None:
            gr.Warning(_one_line(work.error))
            yield gr.skip(), f"Sampling failed: {_one_line(work.error)}", gr.skip(), gr.skip(), gr.skip()
            return
        shown = work.value
        choices = [(_choice_label(label), label) for label in shown.labels]
        yield (shown, _summary(shown, work.seconds), candidates_html(shown),
               gr.Radio(choices=choices, value=shown.ranking[0]), gr.CheckboxGroup(choices=choices, value=[]))

    def pick(self, queue: actions.Queue, shown: Sample | None, typed: str, best: str, bad: list[str],
             keep_going: bool, request_id: str, request: gr.Request) -> Iterator[tuple]:
        """(message, *screen): the pick recorded, then (if asked) the trajectory continued from it."""
        reviewer = actions.reviewer_of(typed, request)
        if shown is None:
            raise UserError("sample alternatives first (Sample K alternatives)")
        event = sampler.record_pick(self.store, shown, reviewer, best, bad, request_id)  # refused while held
        queue.current = shown.trajectory_id
        worse = event.payload["bad"] or [label for label in shown.labels if label != best]
        text = f"Recorded: {_choice_label(best)} over {', '.join(map(_choice_label, worse))} (event {event.id})."
        screen = self.render(queue)
        yield (text, *screen)
        if not keep_going:
            return
        if best == RECORDED:
            yield (text + " The recorded step was picked: the trajectory itself goes on from it.", *screen)
            return
        yield from self._continue(shown, event, text, screen)

    def _continue(self, shown: Sample, event, text: str, screen: tuple) -> Iterator[tuple]:
        work = Watched(lambda report: sampler.continue_from(self.store, self.settings, shown, event, report),
                       "review-continue")
        for seconds in work.ticks():
            doing = work.statuses.get("continued", "starting")
            yield (f"{text} Continuing from the pick ({seconds:.0f} s): {doing}…", *screen)
        if work.error is not None:
            yield (f"{text} The continuation failed: {_one_line(work.error)}", *screen)
            return
        yield (f"{text} Continued as `{work.value}`: pending in the queue (Open by id).", *screen)


class Watched:
    """`job(report)` on a thread of its own, so that a handler redraws what it reports while it works instead of
    holding the page until it ends; a refusal or a bug it raises is kept in `error` (a bug also logged)."""

    def __init__(self, job: Callable[[sampler.Report], Any], name: str) -> None:
        self.statuses: dict[str, str] = {}
        self.value: Any = None
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(job,), name=name, daemon=True)
        self._thread.start()

    def _run(self, job: Callable[[sampler.Report], Any]) -> None:
        try:
            self.value = job(self.statuses.__setitem__)
        except Exception as exc:  # noqa: BLE001 — the page shows it as one line
            _log_bug(exc)
            self.error = exc

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def ticks(self) -> Iterator[float]:
        """The seconds so far, every POLL_SECONDS while the job runs."""
        while self._thread.is_alive():
            yield self.seconds
            self._thread.join(POLL_SECONDS)


def wire_sampler(panel: SamplerPanel, handlers: SamplerHandlers, queue: Any, reviewer: Any, request_id: Any,
                 screen: list, js: str) -> None:
    from core.ui import wire

    shown = [panel.sample, panel.progress, panel.candidates, panel.best, panel.bad]
    wire(panel.run.click, handlers.sample, [queue, panel.step, panel.k, panel.model, panel.judge], shown,
         "review_sample", concurrency_limit=handlers.settings.remote_concurrency)
    wire(panel.pick.click, handlers.pick,
         [queue, panel.sample, reviewer, panel.best, panel.bad, panel.keep_going, request_id],
         [panel.message, *screen], "review_pick", js=js, concurrency_limit=handlers.settings.remote_concurrency)
    for dropdown in (panel.model, panel.judge):
        wire(dropdown.focus, handlers.choices, [panel.model, panel.judge], [panel.model, panel.judge])


# ---------------------------------------------------------------- what the panel shows


def candidates_html(shown: Sample) -> str:
    """The candidates side by side, each with its observation, where the suggestion ranks it and how the prefix
    replayed in its sandbox; every string escaped by the shared viewer."""
    place = {label: position + 1 for position, label in enumerate(shown.ranking)}
    columns = []
    for candidate in shown.candidates:
        heading = (f"<h3>{html.escape(_choice_label(candidate.label))} · suggested #{place[candidate.label]}</h3>")
        note = "" if candidate.label == RECORDED else \
            f'<div class="mat-label">{html.escape(candidate.replay)}</div>'
        images = {name: ImageView(name, Path(path), not Path(path).is_file()) for name, path in candidate.images.items()}
        columns.append(f'<div data-candidate="{html.escape(candidate.label)}">{heading}{note}'
                       f"{render_step(candidate.step, stored=images)}</div>")
    return (f"<style>{VIEWER_CSS} {GRID_CSS}</style><div class='mat-viewer'><p>{html.escape(_ranking_line(shown))}</p>"
            f"<div class='review-candidates'>{''.join(columns)}</div></div>")


def _ranking_line(shown: Sample) -> str:
    ranking = " > ".join(_choice_label(label) for label in shown.ranking)
    failures = f" Not sampled: {'; '.join(shown.failures)}." if shown.failures else ""
    return f"Suggested ranking: {ranking}, by {shown.ranked_by}.{failures}"


def _summary(shown: Sample, seconds: float) -> str:
    sampled = len(shown.candidates) - 1
    return (f"{sampled} candidate{'s' * (sampled != 1)} sampled at step {shown.step + 1} with {shown.model} in "
            f"{seconds:.1f} s. Pick the best (0-9), mark bad ones (Shift + 0-9), then record the pick (p).")


def _progress(statuses: dict[str, str], seconds: float) -> str:
    lines = [f"- candidate {label}: {text}" for label, text in sorted(statuses.items(), key=lambda item: item[0])]
    return f"Sampling… {seconds:.0f} s\n\n" + "\n".join(lines or ["- loading the model"])


def _choice_label(label: str) -> str:
    return "0 · recorded step" if label == RECORDED else f"candidate {label}"


def _log_bug(exc: BaseException) -> None:
    """A refusal is the person's to act on; anything else is a bug, whose traceback goes to the app's log."""
    if not isinstance(exc, UserError):
        logging.getLogger("mat.ui").error("the step sampler failed", exc_info=exc)


def _one_line(exc: BaseException) -> str:
    from core.ui import one_line

    return one_line(exc)
