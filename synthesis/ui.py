"""The Synthesize tab: start, stop and resume runs as background jobs, and watch them from the store.

The tab is a layout (small dataclasses of components, each built by one short function) and the wiring:
every event goes through `core.ui.wire` to a method of `Handlers`, which calls `synthesis.launch` (jobs)
and `synthesis.progress` (what to show). A refusal warns and leaves the page as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.config import Settings
from core.ui import Links, wire
from review.store import Store
from synthesis.launch import RunRequest, last_request, resume_run, run_ids, start_run, stop_run
from synthesis.progress import (FAILURE_HEADERS, NO_SPEND, NO_STAGES, SPEND_HEADERS, STAGE_HEADERS, Snapshot,
                                snapshot, spend_figure, stage_figure)

REFRESH_SECONDS = 1.0


@dataclass
class RunForm:
    base_url: Any
    api_key: Any
    model: Any
    tasks: Any
    concurrency: Any
    corpus: Any
    seeds: Any
    topics: Any
    batch: Any
    start: Any
    stop: Any
    resume: Any

    @property
    def kept(self) -> list:
        """The fields a reload fills with the last run's values (never the key)."""
        return [self.base_url, self.model, self.tasks, self.concurrency, self.corpus, self.seeds, self.topics,
                self.batch]


@dataclass
class RunView:
    run: Any
    state: Any
    stage_chart: Any
    stage_note: Any
    stages: Any
    spend: Any
    spend_chart: Any
    spend_note: Any
    failures: Any
    open_review: Any | None  # only in the app, where Review is a tab of the same page
    drawn: Any  # what the charts were last drawn from, so an unchanged chart is not drawn again
    timer: Any

    @property
    def shown(self) -> list:
        return [self.state, self.stages, self.spend, self.failures, self.stage_chart, self.stage_note,
                self.spend_chart, self.spend_note]


@dataclass
class SynthesisLayout:
    form: RunForm
    view: RunView


def build_layout(settings: Settings, runs: list[str], linked: bool) -> SynthesisLayout:
    import gradio as gr

    with gr.Row():
        with gr.Column(scale=1):
            form = _form(settings)
        with gr.Column(scale=2):
            view = _view(runs, linked)
    return SynthesisLayout(form, view)


def _form(settings: Settings) -> RunForm:
    import gradio as gr

    base_url = gr.Textbox(settings.base_url or "", label="Endpoint (OpenAI-compatible base URL)",
                          placeholder="empty: the configured endpoint (MAT_BASE_URL, or api.openai.com)")
    api_key = gr.Textbox("", label="API key for this endpoint (optional)", type="password",
                         placeholder="sent only to the endpoint above; never stored")
    model = gr.Textbox(settings.model or "gpt-4o-mini", label="Model")
    tasks = gr.Number(10, label="Number of tasks", precision=0)
    concurrency = gr.Slider(1, 64, value=8, step=1, label="Concurrency (requests in flight)")
    corpus = gr.Textbox("", label="Image–caption corpus",
                        placeholder="folder with images and a .json/.jsonl caption file; empty: built-in demo")
    seeds = gr.Textbox(lines=4, label="Seed tasks, one per line", placeholder="empty: the built-in seeds")
    topics = gr.Textbox(lines=2, label="Topics, one per line", placeholder="empty: the built-in topics")
    batch = gr.Checkbox(False, label="Queries, file descriptions and verifiers through the Batch API")
    with gr.Row():
        start = gr.Button("Start", variant="primary")
        stop = gr.Button("Stop")
        resume = gr.Button("Resume")
    return RunForm(base_url, api_key, model, tasks, concurrency, corpus, seeds, topics, batch, start, stop, resume)


def _view(runs: list[str], linked: bool) -> RunView:
    import gradio as gr

    with gr.Row():
        run = gr.Dropdown(runs, value=runs[0] if runs else None, label="Run", allow_custom_value=True, scale=3)
        open_review = gr.Button("Open in Review", size="sm", scale=1) if linked else None
    state = gr.Markdown(elem_id="synthesis-state")
    stage_chart = gr.Plot(label="Tasks per stage", visible=False)
    stage_note = gr.Markdown(NO_STAGES, elem_id="synthesis-stage-note")
    stages = gr.Dataframe(headers=STAGE_HEADERS, label="Tasks per stage", interactive=False)
    spend = gr.Dataframe(headers=SPEND_HEADERS, label="Tokens and cost per stage", interactive=False)
    spend_chart = gr.Plot(label="Tokens and cost", visible=False)
    spend_note = gr.Markdown(NO_SPEND, elem_id="synthesis-spend-note")
    failures = gr.Dataframe(headers=FAILURE_HEADERS, label="Failed tasks", interactive=False, wrap=True)
    return RunView(run, state, stage_chart, stage_note, stages, spend, spend_chart, spend_note, failures,
                   open_review, gr.State(None), gr.Timer(REFRESH_SECONDS))


class Handlers:
    """What each event does; every method is attached through `core.ui.wire`."""

    def __init__(self, settings: Settings, store: Store, links: Links | None) -> None:
        self.settings, self.store, self.links = settings, store, links

    def run_choices(self) -> list[str]:
        return run_ids(self.store)

    def start(self, base_url, api_key, model, tasks, concurrency, corpus, seeds, topics, batch):
        import gradio as gr

        request = RunRequest(base_url or "", model or "", tasks, concurrency, corpus or "", seeds or "",
                             topics or "", bool(batch), api_key or "")
        run_id = start_run(self.settings, self.store, request)
        gr.Info(f"Run {run_id} started.")
        return gr.update(choices=list(dict.fromkeys([run_id, *self.run_choices()])), value=run_id)

    def stop(self, run_id):
        import gradio as gr

        gr.Info(stop_run(self.store, run_id))
        return self.refresh(run_id)

    def resume(self, run_id, base_url, api_key):
        import gradio as gr

        gr.Info(resume_run(self.settings, self.store, run_id, RunRequest(base_url=base_url or "",
                                                                         api_key=api_key or "")))
        return self.refresh(run_id)

    def refresh(self, run_id):
        """Everything the view shows, charts drawn afresh."""
        return self.tick(run_id, None)

    def tick(self, run_id, drawn):
        """Everything the view shows; a chart whose data did not change since `drawn` is left as it is."""
        shot = snapshot(self.store, run_id)
        signature = {"stages": repr((shot.stages, shot.target)), "spend": repr(shot.spend)}
        charts = (*_chart(stage_figure, shot, not shot.target, NO_STAGES, signature, drawn, "stages"),
                  *_chart(spend_figure, shot, not shot.spend, NO_SPEND, signature, drawn, "spend"))
        return shot.line, shot.stages, shot.spend_table, shot.failures, *charts, signature

    def load(self, run_id):
        """A reloaded page: runs started since (from the CLI too), the latest shown, the form as it was for it."""
        import gradio as gr

        choices = self.run_choices()
        chosen = run_id if run_id in choices else (choices[0] if choices else None)
        request = last_request(self.store)
        kept = [gr.skip()] * 8 if request is None else [
            request.base_url, request.model, request.tasks, request.concurrency, request.corpus, request.seeds,
            request.topics, request.batch]
        return gr.update(choices=choices, value=chosen), *kept, *self.refresh(chosen)

    def open_review(self, run_id):
        """Review, in this page, filtered to the run's trajectories."""
        from core.errors import UserError

        if not run_id:
            raise UserError("Choose a run first.")
        return self.links.go("review", source=f"synthesis:{run_id}")


def build_synthesis_tab(settings: Settings, links: Links | None = None) -> None:
    import gradio as gr

    store = Store(settings.db)
    handlers = Handlers(settings, store, links)
    layout = build_layout(settings, handlers.run_choices(), linked=links is not None)
    _wire(layout, handlers, links, gr.context.Context.root_block)


def _wire(layout: SynthesisLayout, h: Handlers, links: Links | None, root: Any) -> None:
    form, view = layout.form, layout.view
    watched = [*view.shown, view.drawn]
    fields = [form.base_url, form.api_key, form.model, form.tasks, form.concurrency, form.corpus, form.seeds,
              form.topics, form.batch]
    wire(form.start.click, h.start, fields, [view.run], "synthesis_start")
    wire(form.stop.click, h.stop, [view.run], watched, "synthesis_stop")
    wire(form.resume.click, h.resume, [view.run, form.base_url, form.api_key], watched, "synthesis_resume")
    wire(view.run.change, h.refresh, [view.run], watched, "synthesis_refresh")
    wire(view.timer.tick, h.tick, [view.run, view.drawn], watched)
    if view.open_review is not None and links is not None:
        wire(view.open_review.click, h.open_review, [view.run], links.outputs("review"), "synthesis_open_review")
    if root is not None:
        wire(root.load, h.load, [view.run], [view.run, *form.kept, *watched], "synthesis_load")


def _chart(draw, shot: Snapshot, empty: bool, note: str, signature: dict, drawn: dict | None, name: str) -> tuple:
    """(plot, placeholder) updates: the placeholder text where the chart would be empty, the chart redrawn
    only when its data changed."""
    import gradio as gr

    if drawn is not None and drawn.get(name) == signature[name]:
        return gr.skip(), gr.skip()
    if empty:
        return gr.update(value=None, visible=False), gr.update(value=note, visible=True)
    return gr.update(value=draw(shot), visible=True), gr.update(visible=False)
