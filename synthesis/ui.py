"""The Synthesize tab: start, stop and resume runs as background jobs, and watch them from the store.

The run itself is `python -m synthesis run ...` under `core.jobs`, so it survives page reloads
and app restarts; everything shown here is read back from the store (the same `run_status` the
CLI prints), so a reloaded page, or a resumed run, shows exactly where things stand.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import Settings
from core.ui import Links
from core import jobs
from core.errors import UserError
from review.store import Store
from synthesis.status import run_status
from synthesis.tasks import ALL_STAGES, list_runs, new_run_id

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STAGE_HEADERS = ["stage", "done", "active", "failed"]
SPEND_HEADERS = ["stage", "requests", "input tokens", "output tokens", "cost $"]
FAILURE_HEADERS = ["task", "reason", "query"]


def start_run(settings: Settings, store: Store, *, base_url: str, model: str, tasks: float | None,
              concurrency: float, corpus: str, seeds: str, topics: str, batch: bool) -> str:
    """Start a run as a job; returns its id."""
    count = int(tasks or 0)
    if count < 1:
        raise UserError("Number of tasks must be at least 1.")
    if not (model or "").strip():
        raise UserError("Give the model to ask (for example gpt-4o-mini).")
    if corpus.strip() and not Path(corpus.strip()).exists():
        raise UserError(f"Corpus {corpus.strip()}: no such folder or caption file.")
    if not base_url.strip() and not settings.api_key:
        raise UserError("No endpoint and no API key: give an endpoint URL, or set MAT_API_KEY for api.openai.com.")
    run_id = new_run_id()
    argv = ["-m", "synthesis", "run", "--run-id", run_id, "--db", str(store.path), "--tasks", str(count),
            "--concurrency", str(int(concurrency)), "--model", model.strip()]
    if base_url.strip():
        argv += ["--base-url", base_url.strip()]
    if corpus.strip():
        argv += ["--images", corpus.strip()]
    seeds_file = _seeds_file(store, seeds, topics)
    if seeds_file:
        argv += ["--seeds", str(seeds_file)]
    if batch:
        argv.append("--batch")
    jobs.start(store.db, "synthesis", argv, env=_key_env(settings))
    return run_id


def stop_run(store: Store, run_id: str | None) -> str:
    job = _job_for(store, run_id)
    if job is None or not job.running:
        raise UserError("This run is not running.")
    jobs.stop(store.db, job.id)
    return f"Stopping run {run_id}; resume it to continue where it stopped."


def resume_run(settings: Settings, store: Store, run_id: str | None) -> str:
    if not run_id:
        raise UserError("Choose a run to resume.")
    job = _job_for(store, run_id)
    if job is not None and job.running:
        raise UserError("This run is already running.")
    if run_status(store, run_id)["status"] == "unknown":
        raise UserError(f"No run {run_id} in this database.")
    jobs.start(store.db, "synthesis", ["-m", "synthesis", "resume", "--db", str(store.path), run_id],
               env=_key_env(settings))
    return f"Resuming run {run_id}."


def overview(store: Store, run_id: str | None) -> tuple[str, list[list], list[list], list[list]]:
    """The run's state line, stage table, spend table and failures."""
    if not run_id:
        return "No run yet: fill in the form and press Start.", [], [], []
    status = run_status(store, run_id)
    job = _job_for(store, run_id)
    job_note = ""
    if job is not None:
        job_note = f" · job {job.status}" + (f": {job.message}" if job.message else "")
        if job.status == "failed":
            job_note += f" ({jobs.output_tail(job, 1)})" if not job.message else ""
    shown = status["status"]
    if shown == "running" and (job is None or not job.running):
        shown = "interrupted (resume to continue)"
    spend = status["spend"]
    per_approved = (f", ${spend['per_approved_cost']:.4f} per approved trajectory"
                    if spend["per_approved_cost"] is not None else "")
    total = spend["total"]
    source = f"synthesis:{run_id}"
    line = (f"**Run {run_id}**: {shown}{job_note}. {status['tasks']} tasks; "
            f"{total['requests']} requests, {total['input_tokens'] + total['output_tokens']} tokens, "
            f"${total['cost']:.4f} (${spend['per_task_cost']:.4f} per task{per_approved}). "
            f"{status['message']}\n\nIts trajectories are in Review as source `{source}`: "
            f"[open Review filtered to this run](/?source={source}) (then the Review tab).")
    stages = [[s, c["done"], c["active"], c["failed"]] for s, c in status["stages"].items()]
    money = [[s, v["requests"], v["input_tokens"], v["output_tokens"], round(v["cost"], 6)]
             for s, v in spend["stages"].items()]
    failures = [[f["task"], f["reason"], f["query"][:120]] for f in status["failures"]]
    return line, stages, money, failures


def spend_figure(store: Store, run_id: str | None) -> Figure:
    """Tokens and cost per stage, side by side."""
    from matplotlib.figure import Figure

    stages = run_status(store, run_id)["spend"]["stages"] if run_id else {}
    names = [s for s in ALL_STAGES if s in stages]
    figure = Figure(figsize=(7, 2.8), dpi=100)
    tokens, cost = figure.subplots(1, 2)
    tokens.bar(names, [stages[s]["input_tokens"] for s in names], color="#0969da", label="input")
    tokens.bar(names, [stages[s]["output_tokens"] for s in names], color="#8250df", label="output",
               bottom=[stages[s]["input_tokens"] for s in names])
    tokens.set_title("Tokens per stage")
    cost.bar(names, [stages[s]["cost"] for s in names], color="#2da44e")
    cost.set_title("Cost per stage ($)")
    for axes in (tokens, cost):
        axes.tick_params(axis="x", labelrotation=45)
    if names:
        tokens.legend(fontsize=8)
    figure.tight_layout()
    return figure


def build_synthesis_tab(settings: Settings, links: Links | None = None) -> None:
    import gradio as gr

    store = Store(settings.db)

    def run_choices() -> list[str]:
        return [r.id for r in list_runs(store)]

    with gr.Row():
        with gr.Column(scale=1):
            base_url = gr.Textbox(settings.base_url or "", label="Endpoint (OpenAI-compatible base URL)",
                                  placeholder="empty: api.openai.com with MAT_API_KEY")
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
        with gr.Column(scale=2):
            runs = run_choices()
            run = gr.Dropdown(runs, value=runs[0] if runs else None, label="Run", allow_custom_value=True)
            state = gr.Markdown(elem_id="synthesis-state")
            stages = gr.Dataframe(headers=STAGE_HEADERS, label="Tasks per stage", interactive=False)
            spend = gr.Dataframe(headers=SPEND_HEADERS, label="Tokens and cost per stage", interactive=False)
            plot = gr.Plot(label="Tokens and cost")
            failures = gr.Dataframe(headers=FAILURE_HEADERS, label="Failed tasks", interactive=False, wrap=True)
    timer = gr.Timer(2.0)

    def refresh(run_id):
        return overview(store, run_id)

    def refresh_all(run_id):
        return (*overview(store, run_id), spend_figure(store, run_id))

    def on_start(base_url, model, tasks, concurrency, corpus, seeds, topics, batch):
        try:
            run_id = start_run(settings, store, base_url=base_url, model=model, tasks=tasks, concurrency=concurrency,
                               corpus=corpus, seeds=seeds, topics=topics, batch=batch)
        except (UserError, OSError) as refused:
            gr.Warning(str(refused))
            return gr.update()
        gr.Info(f"Run {run_id} started.")
        return gr.update(choices=[run_id, *run_choices()], value=run_id)

    def on_stop(run_id):
        try:
            gr.Info(stop_run(store, run_id))
        except UserError as refused:
            gr.Warning(str(refused))
        return refresh(run_id)

    def on_resume(run_id):
        try:
            gr.Info(resume_run(settings, store, run_id))
        except UserError as refused:
            gr.Warning(str(refused))
        return refresh(run_id)

    form = [base_url, model, tasks, concurrency, corpus, seeds, topics, batch]
    view = [state, stages, spend, failures]
    start.click(on_start, form, [run], api_name="synthesis_start")
    stop.click(on_stop, [run], view, api_name="synthesis_stop")
    resume.click(on_resume, [run], view, api_name="synthesis_resume")
    run.change(refresh_all, [run], [*view, plot], api_name="synthesis_refresh")
    timer.tick(refresh, [run], view, api_visibility="private")
    gr.Button("Refresh plot", size="sm").click(refresh_all, [run], [*view, plot], api_visibility="private")

    def on_load(run_id):
        """A reloaded page lists runs started since the app was built (from the CLI too) and shows the latest."""
        choices = run_choices()
        chosen = run_id if run_id in choices else (choices[0] if choices else None)
        return gr.update(choices=choices, value=chosen), *refresh_all(chosen)

    root = gr.context.Context.root_block
    if root is not None:
        root.load(on_load, [run], [run, *view, plot], api_visibility="private")


def _job_for(store: Store, run_id: str | None) -> jobs.Job | None:
    """The latest job that ran (or resumed) this run."""
    if not run_id:
        return None
    for job in jobs.list_jobs(store.db, "synthesis"):
        if run_id in job.argv:
            return job
    return None


def _seeds_file(store: Store, seeds: str, topics: str) -> Path | None:
    """The form's seeds and topics as a JSON file beside the store (built-in ones fill what is empty)."""
    from synthesis.queries import load_seeds

    given = [s.strip() for s in (seeds or "").splitlines() if s.strip()]
    named = [t.strip() for t in (topics or "").splitlines() if t.strip()]
    if not given and not named:
        return None
    builtin_seeds, builtin_topics = load_seeds(None)
    data = {"seeds": given or builtin_seeds, "topics": named or builtin_topics}
    text = json.dumps(data, indent=1)
    folder = store.path.parent / "synthesis"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"seeds-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
    path.write_text(text)
    return path


def _key_env(settings: Settings) -> dict[str, str]:
    """The job gets the key through its environment only; it is never written to the store or argv."""
    return {"MAT_API_KEY": settings.api_key} if settings.api_key else {}

