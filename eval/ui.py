"""The Evaluate tab: start a benchmark run as a background job, watch it, read the scores, open any task.

Handlers at the top are plain functions over a `Store`, so tests can call them directly; runs go through
`core.jobs` (a `python -m eval ...` subprocess), so a run survives a page reload and the page never blocks.
A refused action shows a warning and leaves the page as it was.
"""

from __future__ import annotations

import functools
import html
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from agent.config import Settings
from eval.benchmarks import BenchmarkError, load
from eval.metrics import Result, load_results
from eval.report import (
    chart_series, comparison, flips, html_report, list_runs, run_info, svg_bar_chart, task_rows,
)
from eval.runner import RunError, new_run_id, open_store
from review.errors import StoreError
from review.store import Store

MODEL_CHOICES = ("settings", "local checkpoint", "endpoint", "tiny")
TASK_HEADERS = ["task", "kind", "status", "answer", "reference", "verdict", "steps", "trajectory"]
FLIP_HEADERS = ["task", "change", "base", "tuned", "question"]
ANY = "any"
DEFAULT_PROFILE = "the benchmark's own"


class Refused(ValueError):
    """An action the page refuses, with the reason in one line."""


@dataclass
class RunRequest:
    """What the form asks for; turned into the CLI's arguments."""

    benchmark: str
    data: str
    split: str = "validation"
    level: str = ANY
    limit: int | None = None
    ids: str = ""
    profile: str = ""
    model_source: str = "settings"
    local_model: str = ""
    adapter: str = ""
    base_url: str = ""
    model: str = ""
    concurrency: int = 1
    timeout: float = 600.0
    max_steps: int | None = None
    skip_missing: bool = False
    step_by_step: bool = False


def start_eval(store: Store, settings: Settings, request: RunRequest) -> tuple[str, str]:
    """Check the benchmark's files, then start `python -m eval ...` as a job; returns (job id, run id)."""
    from core import jobs

    if not request.data.strip() and request.benchmark == "gta":
        raise Refused("give the GTA folder (the one holding dataset.json)")
    ids = [i.strip() for i in request.ids.split(",") if i.strip()]
    if request.data.strip():  # files on disk are checked here; the Hub dataset is fetched by the job itself
        _check_files(request, ids)
    run_id = new_run_id(request.benchmark)
    argv = ["-m", "eval", request.benchmark, "--db", str(store.path), "--run-id", run_id,
            "--concurrency", str(max(1, int(request.concurrency))), "--timeout", str(float(request.timeout))]
    if request.data.strip():
        argv += ["--data", request.data.strip()]
    if request.benchmark == "gaia":
        argv += ["--split", request.split] + (["--level", request.level] if request.level != ANY else [])
    argv += ["--limit", str(int(request.limit))] if request.limit else []
    argv += ["--ids", ",".join(ids)] if ids else []
    profile = "" if request.profile == DEFAULT_PROFILE else request.profile
    argv += ["--profile", profile] if profile else []
    argv += ["--max-steps", str(int(request.max_steps))] if request.max_steps else []
    argv += ["--skip-missing"] if request.skip_missing else []
    if request.step_by_step:
        if request.benchmark != "gta" or (profile or "gta") != "gta":
            raise Refused("the step-by-step mode is GTA's and needs the gta profile")
        argv += ["--step-by-step"]
    argv += _model_args(request)
    job = jobs.start(store.db, "eval", argv, env=_job_env(settings))
    return job.id, run_id


def _check_files(request: RunRequest, ids: list[str]) -> None:
    try:
        benchmark = load(request.benchmark, request.data.strip(), request.split)
        chosen = benchmark.select(ids, request.limit or None, None if request.level == ANY else request.level)
    except BenchmarkError as exc:
        raise Refused(str(exc)) from None
    if not chosen.tasks:
        raise Refused("no task matches the chosen subset")
    if chosen.missing and not request.skip_missing:
        raise Refused(f"{chosen.missing_summary()}; tick 'Skip tasks with missing files' to run the rest")


def _model_args(request: RunRequest) -> list[str]:
    if request.model_source == "tiny":
        return ["--tiny"]
    if request.model_source == "local checkpoint":
        if not request.local_model.strip():
            raise Refused("give the local checkpoint's folder")
        return ["--local-model", request.local_model.strip()] + (
            ["--adapter", request.adapter.strip()] if request.adapter.strip() else [])
    if request.model_source == "endpoint":
        if not request.base_url.strip():
            raise Refused("give the endpoint's base URL (for example http://localhost:8000/v1)")
        return ["--base-url", request.base_url.strip()] + (["--model", request.model.strip()] if request.model else [])
    return []


def _job_env(settings: Settings) -> dict[str, str]:
    """The app's data folder and model settings, handed to the job (keys stay in the environment, off argv)."""
    pairs = {"MAT_DATA_DIR": settings.data_dir, "MAT_BASE_URL": settings.base_url, "MAT_API_KEY": settings.api_key, "MAT_MODEL": settings.model,
             "MAT_LOCAL_MODEL": settings.local_model, "MAT_ADAPTER": settings.adapter,
             "MAT_VLM_MODEL": settings.vlm_model}
    return {name: str(value) for name, value in pairs.items() if value}


def job_status(store: Store, job_id: str | None, run_id: str | None) -> str:
    """One line on the run: tasks done of total, or how it ended."""
    from core import jobs

    if not job_id:
        return "No run started from this page yet."
    job = jobs.get(store.db, job_id)
    done, total = 0, 0
    for event in jobs.events(job):
        if "done" in event and "total" in event:
            done, total = event["done"], event["total"]
    bar = f"{done}/{total} tasks" if total else "starting (loading the model)"
    if job.status == "running":
        return f"Run `{run_id}`: {bar}…"
    if job.status == "done":
        return f"Run `{run_id}` finished: {bar}."
    message = job.message or jobs.output_tail(job, 1)
    return f"Run `{run_id}` {job.status}: {message.splitlines()[-1] if message else ''} ({bar}; Resume continues it)"


def resume_eval(store: Store, settings: Settings, job_id: str | None) -> str:
    """Start the stopped or failed job's command again: its run skips the tasks it already finished."""
    from core import jobs

    if not job_id:
        raise Refused("no run started from this page to resume")
    job = jobs.get(store.db, job_id)
    if job.running:
        raise Refused("the run is still going")
    return jobs.start(store.db, "eval", job.argv, env=_job_env(settings)).id


def stop_eval(store: Store, job_id: str | None) -> str:
    from core import jobs

    if not job_id:
        raise Refused("no run to stop")
    jobs.stop(store.db, job_id)
    return "Stopping… finished tasks are kept; the run resumes from where it stopped."


def results_view(store: Store, run_ids: list[str], protocol: str) -> tuple[list[list], list[str], str]:
    """The scores table (our runs beside the paper's numbers) and the chart comparing runs."""
    if not run_ids:
        return [], ["metric"], "<p>Select one or more runs.</p>"
    benchmarks = {run_info(store, r).benchmark for r in run_ids}
    if len(benchmarks) > 1:
        raise Refused("compare runs of one benchmark at a time")
    header, rows = comparison(store, run_ids, protocol)
    categories, series = chart_series(store, run_ids, protocol)
    return rows, header, svg_bar_chart(categories, series, "Scores by run")


def run_choices(store: Store) -> list[tuple[str, str]]:
    return [(f"{r.id} · {r.model} · {r.done}/{r.total} · {r.status}", r.id) for r in list_runs(store)]


def trajectory_view(store: Store, run_id: str, task_id: str):
    """The shared viewer's View of one task of a run."""
    from review.viewer import View

    result = _result(store, run_id, task_id)
    if not result.trajectory_id:
        raise Refused(f"task {task_id} has no stored trajectory ({result.status}: {result.error or 'no steps'})")
    detail = store.detail(result.trajectory_id)
    return View(trajectory=detail.trajectory, title=f"{run_id} · task {task_id}", images=detail.images,
                answer=result.prediction, reference_answer=detail.reference_answer)


def side_by_side(store: Store, base_run: str, tuned_run: str, task_id: str) -> str:
    """The two runs' steps on one task, row by row: step i of the base run beside step i of the tuned one."""
    from review.viewer import VIEWER_CSS, render_outcome, render_step, render_task

    views = [_optional_view(store, run, task_id) for run in (base_run, tuned_run)]
    shown = next((v for v in views if v is not None), None)
    if shown is None:
        raise Refused(f"neither run stored a trajectory for task {task_id}")
    cells = [f"<div><h3>{html.escape(run)}</h3></div>" for run in (base_run, tuned_run)]
    cells += [render_task(shown), ""]
    depth = max(len(v.trajectory.steps) if v else 0 for v in views)
    for index in range(depth):
        for view in views:
            steps = view.trajectory.steps if view else []
            cells.append(render_step(steps[index]) if index < len(steps) else "<section>(no step)</section>")
    cells += [render_outcome(v) if v else "<section>(not run)</section>" for v in views]
    grid = "".join(f"<div>{c}</div>" for c in cells)
    return (f"<style>{VIEWER_CSS} .eval-pair {{ display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }}"
            f" .eval-pair > div {{ min-width: 0; }}</style><div class='mat-viewer eval-pair'>{grid}</div>")


def _optional_view(store: Store, run_id: str, task_id: str):
    try:
        return trajectory_view(store, run_id, task_id)
    except Refused:
        return None


def flip_rows(store: Store, base_run: str, tuned_run: str, protocol: str) -> list[list]:
    if not base_run or not tuned_run:
        raise Refused("choose a base run and a tuned run")
    if run_info(store, base_run).benchmark != run_info(store, tuned_run).benchmark:
        raise Refused("the two runs are on different benchmarks")

    def mark(value: bool | None) -> str:
        return "—" if value is None else ("right" if value else "wrong")

    return [[f.task_id, f.change, mark(f.base), mark(f.tuned), f.question[:140]]
            for f in flips(store, base_run, tuned_run, protocol)]


def export_report(store: Store, run_ids: list[str], protocol: str) -> str:
    if not run_ids:
        raise Refused("select the runs to put in the report")
    out = Path(tempfile.mkdtemp(prefix="mat-eval-")) / "evaluation-report.html"
    out.write_text(html_report(store, run_ids, protocol), encoding="utf-8")
    return str(out)


def _result(store: Store, run_id: str, task_id: str) -> Result:
    found = [r for r in load_results(store.db, run_id) if r.task_id == task_id]
    if not found:
        raise Refused(f"run {run_id} has no result for task {task_id}")
    return found[0]


# ------------------------------------------------------------------ layout


def build_eval_tab(settings: Settings) -> None:
    """Lay out the Evaluate tab inside the caller's `gr.Tab`, over the store at `settings.db`."""
    from review.viewer import build_viewer

    store = open_store(settings.db)
    job_state, run_state = gr.State(None), gr.State(None)
    with gr.Tabs():
        with gr.Tab("Run"):
            with gr.Row():
                benchmark = gr.Dropdown(["gta", "gaia"], value="gta", label="Benchmark", elem_id="eval-benchmark")
                data = gr.Textbox(label="Data folder", placeholder="GTA: folder of dataset.json; GAIA: folder of "
                                  "metadata.jsonl (empty: the Hub dataset)", scale=3)
                split = gr.Dropdown(["validation", "test"], value="validation", label="GAIA split")
                level = gr.Dropdown([ANY, "1", "2", "3"], value=ANY, label="GAIA level")
            with gr.Row():
                limit = gr.Number(None, label="First N tasks (empty: all)", precision=0, minimum=0)
                ids = gr.Textbox(label="Task ids (comma-separated, empty: all)")
                profile = gr.Dropdown([DEFAULT_PROFILE, "gta", "gaia", "mat"], value=DEFAULT_PROFILE,
                                      label="Tool profile")
                skip_missing = gr.Checkbox(False, label="Skip tasks with missing files")
                step_by_step = gr.Checkbox(False, label="GTA step-by-step (InstAcc, ToolAcc, ArgAcc, SummAcc)")
            with gr.Row():
                model_source = gr.Radio(list(MODEL_CHOICES), value="settings", label="Model",
                                        info="settings: the MAT_* environment; tiny: random weights, for a smoke test")
                local_model = gr.Textbox(label="Local checkpoint")
                adapter = gr.Textbox(label="LoRA adapter (optional)")
                base_url = gr.Textbox(label="Endpoint base URL")
                model_name = gr.Textbox(label="Model name on the endpoint")
            with gr.Row():
                concurrency = gr.Number(1, label="Concurrency", precision=0, minimum=1)
                timeout = gr.Number(600, label="Seconds per task", minimum=1)
                max_steps = gr.Number(None, label="Max steps (empty: setting)", precision=0, minimum=1)
                start = gr.Button("Start run", variant="primary", elem_id="eval-start")
                stop = gr.Button("Stop", variant="stop", elem_id="eval-stop")
                resume = gr.Button("Resume", elem_id="eval-resume")
            status = gr.Markdown("No run started from this page yet.", elem_id="eval-status")
            timer = gr.Timer(2.0, active=False)
        with gr.Tab("Results"):
            with gr.Row():
                runs = gr.Dropdown(run_choices(store), multiselect=True, label="Runs", scale=3,
                                   allow_custom_value=True, elem_id="eval-runs")
                protocol = gr.Dropdown(["official", "mat", "fixed"], value="official", label="GTA protocol")
                refresh = gr.Button("Refresh", scale=0)
            scores = gr.Dataframe(value=[], interactive=False, wrap=True, label="Scores (ours beside the paper's)",
                                  elem_id="eval-scores")
            chart = gr.HTML(elem_id="eval-chart")
            tasks = gr.Dataframe(headers=TASK_HEADERS, value=[], interactive=False, wrap=True, max_height=360,
                                 label="Tasks of the first selected run (click one to open it)", elem_id="eval-tasks")
            viewer = build_viewer(elem_id="eval-viewer")
            with gr.Row():
                export = gr.Button("Export HTML report", elem_id="eval-export")
                report_file = gr.File(label="Report", elem_id="eval-report")
        with gr.Tab("Base vs tuned"):
            with gr.Row():
                base_run = gr.Dropdown(run_choices(store), label="Base run", allow_custom_value=True)
                tuned_run = gr.Dropdown(run_choices(store), label="Tuned run", allow_custom_value=True)
                compare = gr.Button("Compare", variant="primary", scale=0)
            flipped = gr.Dataframe(headers=FLIP_HEADERS, value=[], interactive=False, wrap=True, max_height=320,
                                   label="Tasks, fixed and broken first (click one to see both runs)")
            pair = gr.HTML(elem_id="eval-pair")

    form = [benchmark, data, split, level, limit, ids, profile, model_source, local_model, adapter, base_url,
            model_name, concurrency, timeout, max_steps, skip_missing, step_by_step]

    def on_start(*values):
        names = ["benchmark", "data", "split", "level", "limit", "ids", "profile", "model_source", "local_model",
                 "adapter", "base_url", "model", "concurrency", "timeout", "max_steps", "skip_missing",
                 "step_by_step"]
        request = RunRequest(**{n: (v if v is not None else RunRequest.__dataclass_fields__[n].default)
                                for n, v in zip(names, values, strict=True)})
        job_id, run_id = start_eval(store, settings, request)
        return job_id, run_id, job_status(store, job_id, run_id), gr.Timer(active=True)

    def on_resume(job_id, run_id):
        new_job = resume_eval(store, settings, job_id)
        return new_job, job_status(store, new_job, run_id), gr.Timer(active=True)

    def on_tick(job_id, run_id):
        text = job_status(store, job_id, run_id)
        still = text.endswith("…") or "starting" in text
        return text, gr.Timer(active=still), gr.update(choices=run_choices(store))

    def on_results(run_ids, chosen_protocol):
        rows, header, svg = results_view(store, run_ids or [], chosen_protocol)
        first = task_rows(store, run_ids[0], chosen_protocol) if run_ids else []
        return gr.update(value=rows, headers=header), svg, first

    def on_task(run_ids, rows, event: gr.SelectData):
        if not run_ids:
            raise Refused("select a run first")
        task_id = _cell(rows, event.index[0], 0)
        return viewer.update(trajectory_view(store, run_ids[0], task_id))

    def on_compare(base, tuned, chosen_protocol):
        return flip_rows(store, base, tuned, chosen_protocol)

    def on_pair(base, tuned, rows, event: gr.SelectData):
        return side_by_side(store, base, tuned, _cell(rows, event.index[0], 0))

    def on_refresh():
        choices = run_choices(store)
        return gr.update(choices=choices), gr.update(choices=choices), gr.update(choices=choices)

    _wire(start.click, on_start, form, [job_state, run_state, status, timer], "eval_start")
    _wire(timer.tick, on_tick, [job_state, run_state], [status, timer, runs], None)
    _wire(stop.click, lambda job_id: stop_eval(store, job_id), [job_state], [status], "eval_stop")
    _wire(resume.click, on_resume, [job_state, run_state], [job_state, status, timer], "eval_resume")
    _wire(refresh.click, on_refresh, [], [runs, base_run, tuned_run], "eval_refresh")
    for trigger in (runs.change, protocol.change):
        _wire(trigger, on_results, [runs, protocol], [scores, chart, tasks], None)
    _wire(refresh.click, on_results, [runs, protocol], [scores, chart, tasks], "eval_scores")
    _wire(tasks.select, on_task, [runs, tasks], [viewer.component], None)
    _wire(export.click, lambda run_ids, p: export_report(store, run_ids or [], p), [runs, protocol], [report_file],
          "eval_export")
    _wire(compare.click, on_compare, [base_run, tuned_run, protocol], [flipped], "eval_compare")
    _wire(flipped.select, on_pair, [base_run, tuned_run, flipped], [pair], None)
    root = gr.context.Context.root_block
    if root is not None:
        _wire(root.load, on_refresh, [], [runs, base_run, tuned_run], None)
    # Plain API endpoints for scripts and tests: status of a job, scores and tasks of runs.
    api = gr.Button(visible=False)
    api.click(lambda job_id, run_id: job_status(store, job_id, run_id), [job_state, run_state], [status],
              api_name="eval_status")


def _cell(rows: Any, row: int, column: int) -> str:
    """A cell of a Dataframe's value, whether Gradio hands it over as a DataFrame or as lists."""
    if hasattr(rows, "iloc"):
        return str(rows.iloc[row, column])
    if isinstance(rows, dict):
        return str(rows["data"][row][column])
    return str(rows[row][column])


def _wire(trigger, fn, inputs, outputs, api_name: str | None) -> None:
    """Attach `fn`; a refusal becomes a warning toast and leaves every output as it was."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (Refused, BenchmarkError, RunError, StoreError) as refused:
            gr.Warning(str(refused))
            skipped = tuple(gr.skip() for _ in outputs)
            return skipped if len(outputs) != 1 else skipped[0]

    trigger(wrapper, inputs, outputs, api_name=api_name, api_visibility="public" if api_name else "private")
