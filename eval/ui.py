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
from core.ui import Links
from eval.benchmarks import BenchmarkError, load
from eval.metrics import Result, load_results
from eval.report import (
    chart_series, comparison, comparison_note, flips, headline, html_report, list_runs, run_info, svg_bar_chart,
    task_rows,
)
from eval.runner import RunError, new_run_id, one_model, open_store
from review.errors import StoreError
from review.store import Store

MODEL_CHOICES = ("settings", "local checkpoint", "endpoint", "tiny")
TASK_HEADERS = ["task", "kind", "status", "answer", "reference", "verdict", "steps", "trajectory"]
FLIP_HEADERS = ["task", "change", "base", "tuned", "question"]
ANY = "any"
DEFAULT_PROFILE = "the benchmark's own"
TRAIN_STORE, TRAIN_FILE = "this app's store (approved trajectories)", "a release file"
PAIR_HEADERS = ["benchmark query", "training query", "overlap", "similarity", "evidence"]


class Refused(ValueError):
    """An action the page refuses, with the reason in one line."""


@dataclass
class RunRequest:
    """What the form asks for; turned into the CLI's arguments. Numbers may come as text: empty means the default."""

    benchmark: str
    data: str
    split: str = "validation"
    level: str = ANY
    limit: int | str | None = None
    ids: str = ""
    profile: str = ""
    model_source: str = "settings"
    local_model: str = ""
    adapter: str = ""
    base_url: str = ""
    model: str = ""
    concurrency: int | str | None = 1
    timeout: float | str | None = 600.0
    max_steps: int | str | None = None
    skip_missing: bool = False
    step_by_step: bool = False


# The form's labels, so that a refusal names the field the user typed into.
FIELDS = {"limit": "First N tasks", "concurrency": "Concurrency", "timeout": "Seconds per task",
          "max_steps": "Max steps", "local_model": "Local checkpoint", "adapter": "LoRA adapter",
          "base_url": "Endpoint base URL", "data": "Data folder"}


def start_eval(store: Store, settings: Settings, request: RunRequest) -> tuple[str, str]:
    """Check the form and the benchmark's files, then start `python -m eval ...` as a job; returns (job, run)."""
    from core import jobs

    if not request.data.strip() and request.benchmark == "gta":
        raise Refused(f"{FIELDS['data']}: give the GTA folder (the one holding dataset.json)")
    limit = _number(request.limit, "limit", int, None)
    concurrency = _number(request.concurrency, "concurrency", int, 1)
    timeout = _number(request.timeout, "timeout", float, 600.0)
    max_steps = _number(request.max_steps, "max_steps", int, None)
    ids = [i.strip() for i in request.ids.split(",") if i.strip()]
    if request.data.strip():  # files on disk are checked here; the Hub dataset is fetched by the job itself
        _check_files(request, ids, limit)
    run_id = new_run_id(request.benchmark)
    argv = ["-m", "eval", request.benchmark, "--db", str(store.path), "--run-id", run_id,
            "--concurrency", str(concurrency), "--timeout", f"{timeout:g}"]
    if request.data.strip():
        argv += ["--data", request.data.strip()]
    if request.benchmark == "gaia":
        argv += ["--split", request.split] + (["--level", request.level] if request.level != ANY else [])
    argv += ["--limit", str(limit)] if limit else []
    argv += ["--ids", ",".join(ids)] if ids else []
    profile = "" if request.profile == DEFAULT_PROFILE else request.profile
    argv += ["--profile", profile] if profile else []
    argv += ["--max-steps", str(max_steps)] if max_steps else []
    argv += ["--skip-missing"] if request.skip_missing else []
    if request.step_by_step:
        if request.benchmark != "gta" or (profile or "gta") != "gta":
            raise Refused("the step-by-step mode is GTA's and needs the gta profile")
        argv += ["--step-by-step"]
    argv += _model_args(request)
    job = jobs.start(store.db, "eval", argv, env=_job_env(settings))
    return job.id, run_id


def _number(value: Any, field: str, kind: type, default: Any) -> Any:
    """A form number: empty gives `default`; anything else must be a whole (or any) number of at least 1."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    label = FIELDS[field]
    try:
        number = kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        raise Refused(f"{label}: {value!r} is not a number; leave it empty for the default") from None
    if kind is int and float(value) != number:
        raise Refused(f"{label}: give a whole number, not {value}")
    if number < 1:
        raise Refused(f"{label}: {value} is less than 1; leave it empty for the default")
    return number


def _check_files(request: RunRequest, ids: list[str], limit: int | None) -> None:
    try:
        benchmark = load(request.benchmark, request.data.strip(), request.split)
        chosen = benchmark.select(ids, limit, None if request.level == ANY else request.level)
    except BenchmarkError as exc:
        raise Refused(str(exc)) from None
    if not chosen.tasks:
        raise Refused("no task matches the chosen subset")
    if chosen.missing and not request.skip_missing:
        raise Refused(f"{chosen.missing_summary()}; tick 'Skip tasks with missing files' to run the rest")
    absent = set(chosen.missing)
    if all(any(str(p) in absent for p in task.files) for task in chosen.tasks):
        raise Refused(f"Skip tasks with missing files: all {len(chosen.tasks)} chosen task(s) have a missing file, "
                      f"so nothing would run ({chosen.missing_summary()})")


def _model_args(request: RunRequest) -> list[str]:
    if request.model_source == "tiny":
        return ["--tiny"]
    if request.model_source == "local checkpoint":
        folder, adapter = request.local_model.strip(), request.adapter.strip()
        if not folder:
            raise Refused(f"{FIELDS['local_model']}: give the checkpoint's folder")
        if not Path(folder).expanduser().is_dir():
            raise Refused(f"{FIELDS['local_model']}: {folder} is not a folder")
        if adapter and not (Path(adapter).expanduser() / "adapter_config.json").is_file():
            raise Refused(f"{FIELDS['adapter']}: no PEFT adapter at {adapter} (adapter_config.json missing)")
        return ["--local-model", folder] + (["--adapter", adapter] if adapter else [])
    if request.model_source == "endpoint":
        if not request.base_url.strip():
            raise Refused(f"{FIELDS['base_url']}: give the endpoint's base URL (for example http://localhost:8000/v1)")
        name = one_model(request.model)
        return ["--base-url", request.base_url.strip()] + (["--model", name] if name else [])
    return []


def _job_env(settings: Settings) -> dict[str, str]:
    """The app's data folder and model settings, handed to the job (keys stay in the environment, off argv)."""
    pairs = {"MAT_DATA_DIR": settings.data_dir, "MAT_BASE_URL": settings.base_url, "MAT_API_KEY": settings.api_key,
             "MAT_MODEL": one_model(settings.model), "MAT_LOCAL_MODEL": settings.local_model,
             "MAT_ADAPTER": settings.adapter, "MAT_VLM_MODEL": settings.vlm_model}
    return {name: str(value) for name, value in pairs.items() if value}


def job_status(store: Store, job_id: str | None, run_id: str | None) -> str:
    """What happened to the run, in a line or two: tasks done of total and skipped; once done, its score."""
    from core import jobs

    if not job_id:
        return "No run started from this page yet."
    job = jobs.get(store.db, job_id)
    done = total = skipped = 0
    for event in jobs.events(job):
        skipped = event.get("skipped", skipped)
        if "total" in event:
            done, total = event.get("done", done), event["total"]
    missing = f", {skipped} skipped for missing files" if skipped else ""
    if job.status == "running":
        return f"Run `{run_id}`: {done}/{total} tasks{missing}…" if total else \
            f"Run `{run_id}`: starting (loading the model)…"
    if job.status == "done" and run_exists(store, run_id):
        return (f"Run `{run_id}` finished: {done} run{missing}. {headline(store, run_id)}. "
                "**Show in Results** opens its scores and tasks.")
    message = job.message or jobs.output_tail(job, 1)
    last = message.strip().splitlines()[-1] if message.strip() else ""
    return f"Run `{run_id}` {job.status}: {last} ({done}/{total} tasks; Resume continues it)"


def run_exists(store: Store, run_id: str | None) -> bool:
    return bool(run_id) and any(r.id == run_id for r in list_runs(store))


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


def results_view(store: Store, run_ids: list[str], protocol: str) -> tuple[list[list], list[str], str, str]:
    """The scores table (our runs beside the paper's numbers), the chart comparing runs, and what they share."""
    if not run_ids:
        return [], ["metric"], "<p>Select one or more runs.</p>", ""
    benchmarks = {run_info(store, r).benchmark for r in run_ids}
    if len(benchmarks) > 1:
        raise Refused("compare runs of one benchmark at a time")
    header, rows = comparison(store, run_ids, protocol)
    categories, series = chart_series(store, run_ids, protocol)
    return rows, header, svg_bar_chart(categories, series, "Scores by run"), comparison_note(store, run_ids)


def run_choices(store: Store) -> list[tuple[str, str]]:
    """Runs to pick from; a run without tasks (stored by an older version) is no run to read."""
    return [(f"{r.id} · {r.model} · {r.done}/{r.total} · {r.status}", r.id) for r in list_runs(store) if r.total]


def contamination_view(store: Store, settings: Settings, source: str, data: str, images: str, benchmark: str,
                       benchmark_data: str, split: str) -> tuple[str, list[list]]:
    """The overlap check of the Contamination panel: its summary line and the overlapping pairs."""
    from eval.contamination import check, file_queries, store_queries

    if source == TRAIN_FILE:
        if not data.strip():
            raise Refused("Training file: give a release file (JSON, JSONL or parquet)")
        train = file_queries(Path(data.strip()).expanduser(), Path(images.strip()).expanduser() if images.strip()
                             else None)
    else:
        train = store_queries(store.path, "approved")
    if benchmark == "gta" and not benchmark_data.strip():
        raise Refused("Benchmark data: give the GTA folder (the one holding dataset.json)")
    result = check(train, benchmark, benchmark_data.strip() or None, split)
    rows = [[p.benchmark_id, p.train_id, ", ".join(p.kinds), f"{p.similarity:.2f}", p.evidence]
            for p in result.pairs]
    return result.summary(), rows


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


def build_eval_tab(settings: Settings, links: Links | None = None) -> None:
    """Lay out the Evaluate tab inside the caller's `gr.Tab`, over the store at `settings.db`."""
    from review.viewer import build_viewer

    store = open_store(settings.db)
    job_state, run_state = gr.State(None), gr.State(None)
    with gr.Tabs() as tabs:
        with gr.Tab("Run", id="run"):
            with gr.Row():
                benchmark = gr.Dropdown(["gta", "gaia"], value="gta", label="Benchmark", elem_id="eval-benchmark")
                data = gr.Textbox(label="Data folder", placeholder="GTA: folder of dataset.json; GAIA: folder of "
                                  "metadata.jsonl (empty: the Hub dataset)", scale=3)
                split = gr.Dropdown(["validation", "test"], value="validation", label="GAIA split")
                level = gr.Dropdown([ANY, "1", "2", "3"], value=ANY, label="GAIA level")
            with gr.Row():
                limit = gr.Textbox(label="First N tasks (empty: all)", placeholder="all", elem_id="eval-limit")
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
                concurrency = gr.Number(1, label="Concurrency", precision=0, elem_id="eval-concurrency",
                                        info="tasks in flight; a local model still answers one at a time")
                timeout = gr.Number(600, label="Seconds per task", elem_id="eval-timeout",
                                    info="the task's own time, not its wait for the model")
                max_steps = gr.Textbox(label="Max steps (empty: setting)", placeholder=str(settings.max_steps),
                                       elem_id="eval-max-steps")
                start = gr.Button("Start run", variant="primary", elem_id="eval-start")
                stop = gr.Button("Stop", variant="stop", elem_id="eval-stop")
                resume = gr.Button("Resume", elem_id="eval-resume")
            status = gr.Markdown("No run started from this page yet.", elem_id="eval-status")
            show = gr.Button("Show in Results", visible=False, elem_id="eval-show", size="sm")
            timer = gr.Timer(2.0, active=False)
        with gr.Tab("Results", id="results"):
            with gr.Row():
                runs = gr.Dropdown(run_choices(store), multiselect=True, label="Runs", scale=3,
                                   allow_custom_value=True, elem_id="eval-runs")
                protocol = gr.Dropdown(["official", "mat", "fixed"], value="official", label="GTA protocol")
                refresh = gr.Button("Refresh", scale=0)
            shared = gr.Markdown(elem_id="eval-shared")
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
        with gr.Tab("Contamination", id="contamination"):
            gr.Markdown("How much of a benchmark the training set already holds: shared 13-grams, exact and "
                        "near-duplicate questions, identical images (`python -m eval contamination` does the same).")
            with gr.Row():
                train_source = gr.Radio([TRAIN_STORE, TRAIN_FILE], value=TRAIN_STORE, label="Training set")
                train_data = gr.Textbox(label="Training file (JSON, JSONL, parquet)", scale=2)
                train_images = gr.Textbox(label="Its images (folder or zip, optional)", scale=2)
            with gr.Row():
                check_benchmark = gr.Dropdown(["gta", "gaia"], value="gta", label="Benchmark")
                check_data = gr.Textbox(label="Benchmark data", scale=3, placeholder="GTA: folder of dataset.json; "
                                        "GAIA: folder of metadata.jsonl (empty: the Hub dataset)")
                check_split = gr.Dropdown(["validation", "test"], value="validation", label="GAIA split")
                check = gr.Button("Check overlap", variant="primary", scale=0, elem_id="eval-check")
            overlap_summary = gr.Markdown(elem_id="eval-overlap")
            overlap_pairs = gr.Dataframe(headers=PAIR_HEADERS, value=[], interactive=False, wrap=True,
                                         max_height=360, label="Overlapping pairs", elem_id="eval-overlap-pairs")

    form = [benchmark, data, split, level, limit, ids, profile, model_source, local_model, adapter, base_url,
            model_name, concurrency, timeout, max_steps, skip_missing, step_by_step]

    def on_start(*values):
        names = ["benchmark", "data", "split", "level", "limit", "ids", "profile", "model_source", "local_model",
                 "adapter", "base_url", "model", "concurrency", "timeout", "max_steps", "skip_missing",
                 "step_by_step"]
        request = RunRequest(**{n: (v if v is not None else RunRequest.__dataclass_fields__[n].default)
                                for n, v in zip(names, values, strict=True)})
        job_id, run_id = start_eval(store, settings, request)
        return job_id, run_id, job_status(store, job_id, run_id), gr.Timer(active=True), gr.update(visible=False)

    def on_resume(job_id, run_id):
        new_job = resume_eval(store, settings, job_id)
        return new_job, job_status(store, new_job, run_id), gr.Timer(active=True), gr.update(visible=False)

    def on_tick(job_id, run_id):
        text = job_status(store, job_id, run_id)
        still = text.endswith("…")
        finished = " finished: " in text
        return text, gr.Timer(active=still), gr.update(choices=run_choices(store)), gr.update(visible=finished)

    def on_show(run_id):
        return gr.Tabs(selected="results"), gr.update(choices=run_choices(store), value=[run_id])

    def on_results(run_ids, chosen_protocol):
        rows, header, svg, note = results_view(store, run_ids or [], chosen_protocol)
        first = task_rows(store, run_ids[0], chosen_protocol) if run_ids else []
        return gr.update(value=rows, headers=header), svg, first, note

    def on_check(*values):
        return contamination_view(store, settings, *values)

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

    _wire(start.click, on_start, form, [job_state, run_state, status, timer, show], "eval_start")
    _wire(timer.tick, on_tick, [job_state, run_state], [status, timer, runs, show], None)
    _wire(show.click, on_show, [run_state], [tabs, runs], "eval_show")
    _wire(stop.click, lambda job_id: stop_eval(store, job_id), [job_state], [status], "eval_stop")
    _wire(resume.click, on_resume, [job_state, run_state], [job_state, status, timer, show], "eval_resume")
    _wire(refresh.click, on_refresh, [], [runs, base_run, tuned_run], "eval_refresh")
    for trigger in (runs.change, protocol.change):
        _wire(trigger, on_results, [runs, protocol], [scores, chart, tasks, shared], None)
    _wire(refresh.click, on_results, [runs, protocol], [scores, chart, tasks, shared], "eval_scores")
    _wire(check.click, on_check, [train_source, train_data, train_images, check_benchmark, check_data, check_split],
          [overlap_summary, overlap_pairs], "eval_contamination")
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
        except (Refused, BenchmarkError, RunError, StoreError, OSError) as refused:
            gr.Warning(str(refused))
            skipped = tuple(gr.skip() for _ in outputs)
            return skipped if len(outputs) != 1 else skipped[0]

    trigger(wrapper, inputs, outputs, api_name=api_name, api_visibility="public" if api_name else "private")
