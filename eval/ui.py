"""The Evaluate tab: start a benchmark run as a background job, watch it, read the scores, open any task.

Handlers at the top are plain functions over a `Store`, so tests can call them directly; runs go through
`core.jobs` (a `python -m eval ...` subprocess), so a run survives a page reload and the page never blocks.
Below them, the layout (small dataclasses of components) and the wiring (`core.ui.wire`: a refused action
warns and leaves the page as it was).
"""

from __future__ import annotations

import html
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gradio as gr

from agent.config import TYPED_KEY, Settings
from core.ui import Links, wire
from eval.benchmarks import load
from eval.errors import EvalError
from eval.metrics import Result, load_results
from eval.report import (
    chart_series, comparison, comparison_note, flips, headline, html_report, list_runs, run_info, svg_bar_chart,
    task_rows,
)
from eval.runner import new_run_id, one_model, open_store
from review.store import Store

MODEL_CHOICES = ("settings", "local checkpoint", "endpoint", "tiny")
TASK_HEADERS = ["task", "kind", "status", "answer", "reference", "verdict", "steps", "trajectory"]
FLIP_HEADERS = ["task", "change", "base", "tuned", "question"]
ANY = "any"
DEFAULT_PROFILE = "the benchmark's own"
TRAIN_STORE, TRAIN_FILE = "this app's store (approved trajectories)", "a release file"
PAIR_HEADERS = ["benchmark query", "training query", "overlap", "similarity", "evidence"]


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
    api_key: str = ""  # for the typed endpoint only; handed to the job in its environment, never stored


# The form's labels, so that a refusal names the field the user typed into.
FIELDS = {"limit": "First N tasks", "concurrency": "Concurrency", "timeout": "Seconds per task",
          "max_steps": "Max steps", "local_model": "Local checkpoint", "adapter": "LoRA adapter",
          "base_url": "Endpoint base URL", "data": "Data folder"}


def start_eval(store: Store, settings: Settings, request: RunRequest) -> tuple[str, str]:
    """Check the form and the benchmark's files, then start `python -m eval ...` as a job; returns (job, run)."""
    from core import jobs

    if not request.data.strip() and request.benchmark == "gta":
        raise EvalError(f"{FIELDS['data']}: give the GTA folder (the one holding dataset.json)")
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
            raise EvalError("the step-by-step mode is GTA's and needs the gta profile")
        argv += ["--step-by-step"]
    argv += _model_args(request)
    job = jobs.start(store.db, "eval", argv, env=_job_env(settings, "--base-url" in argv, request.api_key))
    return job.id, run_id


def _number(value: Any, field: str, kind: type, default: Any) -> Any:
    """A form number: empty gives `default`; anything else must be a whole (or any) number of at least 1."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    label = FIELDS[field]
    try:
        number = kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        raise EvalError(f"{label}: {value!r} is not a number; leave it empty for the default") from None
    if kind is int and float(value) != number:
        raise EvalError(f"{label}: give a whole number, not {value}")
    if number < 1:
        raise EvalError(f"{label}: {value} is less than 1; leave it empty for the default")
    return number


def _check_files(request: RunRequest, ids: list[str], limit: int | None) -> None:
    benchmark = load(request.benchmark, request.data.strip(), request.split)
    chosen = benchmark.select(ids, limit, None if request.level == ANY else request.level)
    if not chosen.tasks:
        raise EvalError("no task matches the chosen subset")
    if chosen.missing and not request.skip_missing:
        raise EvalError(f"{chosen.missing_summary()}; tick 'Skip tasks with missing files' to run the rest")
    absent = set(chosen.missing)
    if all(any(str(p) in absent for p in task.files) for task in chosen.tasks):
        raise EvalError(f"Skip tasks with missing files: all {len(chosen.tasks)} chosen task(s) have a missing file, "
                        f"so nothing would run ({chosen.missing_summary()})")


def _model_args(request: RunRequest) -> list[str]:
    if request.model_source == "tiny":
        return ["--tiny"]
    if request.model_source == "local checkpoint":
        folder, adapter = request.local_model.strip(), request.adapter.strip()
        if not folder:
            raise EvalError(f"{FIELDS['local_model']}: give the checkpoint's folder")
        if not Path(folder).expanduser().is_dir():
            raise EvalError(f"{FIELDS['local_model']}: {folder} is not a folder")
        if adapter and not (Path(adapter).expanduser() / "adapter_config.json").is_file():
            raise EvalError(f"{FIELDS['adapter']}: no PEFT adapter at {adapter} (adapter_config.json missing)")
        return ["--local-model", folder] + (["--adapter", adapter] if adapter else [])
    if request.model_source == "endpoint":
        if not request.base_url.strip():
            raise EvalError(f"{FIELDS['base_url']}: give the endpoint's base URL (for example http://localhost:8000/v1)")
        name = one_model(request.model)
        return ["--base-url", request.base_url.strip()] + (["--model", name] if name else [])
    return []


def _job_env(settings: Settings, typed_url: bool, typed_key: str = "") -> dict[str, str]:
    """The app's data folder and model settings, handed to the job in its environment (never argv).

    The operator's key goes only with the operator's endpoint: a job sent to a URL typed in the page gets no
    MAT_API_KEY (the inherited one is emptied too), only the key typed beside that URL, if any.
    """
    pairs = {"MAT_DATA_DIR": settings.data_dir, "MAT_BASE_URL": settings.base_url,
             "MAT_MODEL": one_model(settings.model), "MAT_LOCAL_MODEL": settings.local_model,
             "MAT_ADAPTER": settings.adapter, "MAT_VLM_MODEL": settings.vlm_model}
    env = {name: str(value) for name, value in pairs.items() if value}
    if typed_url:
        return {**env, "MAT_API_KEY": "", "OPENAI_API_KEY": "", TYPED_KEY: typed_key.strip()}
    return {**env, "MAT_API_KEY": settings.api_key or "", TYPED_KEY: ""}


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
    if jobs.state(job) == "stopping":
        return f"Run `{run_id}` stopping: the tasks in flight finish first ({done}/{total} tasks)…"
    message = job.message or jobs.output_tail(job, 1)
    last = message.strip().splitlines()[-1] if message.strip() else ""
    return f"Run `{run_id}` {job.status}: {last} ({done}/{total} tasks; Resume continues it)"


def run_exists(store: Store, run_id: str | None) -> bool:
    return bool(run_id) and any(r.id == run_id for r in list_runs(store))


def resume_eval(store: Store, settings: Settings, job_id: str | None, api_key: str = "") -> str:
    """Start the stopped or failed job's command again: its run skips the tasks it already finished.

    A run on a typed endpoint gets the key typed on the page now (keys are never stored with a job)."""
    from core import jobs

    if not job_id:
        raise EvalError("no run started from this page to resume")
    job = jobs.get(store.db, job_id)
    if job.running:
        raise EvalError("the run is still going")
    if jobs.busy(job):
        raise EvalError("the run is still stopping: it finishes the tasks in flight; resume it in a moment")
    return jobs.start(store.db, "eval", job.argv, env=_job_env(settings, "--base-url" in job.argv, api_key)).id


def stop_eval(store: Store, job_id: str | None) -> str:
    from core import jobs

    if not job_id:
        raise EvalError("no run to stop")
    jobs.stop(store.db, job_id)
    return "Stopping… finished tasks are kept; the run resumes from where it stopped."


def results_view(store: Store, run_ids: list[str], protocol: str) -> tuple[list[list], list[str], str, str]:
    """The scores table (our runs beside the paper's numbers), the chart comparing runs, and what they share."""
    if not run_ids:
        return [], ["metric"], "<p>Select one or more runs.</p>", ""
    benchmarks = {run_info(store, r).benchmark for r in run_ids}
    if len(benchmarks) > 1:
        raise EvalError("compare runs of one benchmark at a time")
    header, rows = comparison(store, run_ids, protocol)
    categories, series = chart_series(store, run_ids, protocol)
    return rows, header, svg_bar_chart(categories, series, "Scores by run"), comparison_note(store, run_ids)


def run_choices(store: Store) -> list[tuple[str, str]]:
    """Runs to pick from; a run without tasks (stored by an older version) is no run to read."""
    return [(f"{r.id} · {r.evaluated} · {r.done}/{r.total} · {r.status}", r.id) for r in list_runs(store) if r.total]


def contamination_view(store: Store, settings: Settings, source: str, data: str, images: str, benchmark: str,
                       benchmark_data: str, split: str) -> tuple[str, list[list]]:
    """The overlap check of the Contamination panel: its summary line and the overlapping pairs."""
    from eval.contamination import check, file_queries, store_queries

    if source == TRAIN_FILE:
        if not data.strip():
            raise EvalError("Training file: give a release file (JSON, JSONL or parquet)")
        train = file_queries(Path(data.strip()).expanduser(), Path(images.strip()).expanduser() if images.strip()
                             else None)
    else:
        train = store_queries(store, "approved")
    if benchmark == "gta" and not benchmark_data.strip():
        raise EvalError("Benchmark data: give the GTA folder (the one holding dataset.json)")
    result = check(train, benchmark, benchmark_data.strip() or None, split)
    rows = [[p.benchmark_id, p.train_id, ", ".join(p.kinds), f"{p.similarity:.2f}", p.evidence]
            for p in result.pairs]
    return result.summary(), rows


def trajectory_view(store: Store, run_id: str, task_id: str):
    """The shared viewer's View of one task of a run."""
    from review.viewer import View

    result = _result(store, run_id, task_id)
    if not result.trajectory_id:
        raise EvalError(f"task {task_id} has no stored trajectory ({result.status}: {result.error or 'no steps'})")
    detail = store.detail(result.trajectory_id)
    return View(trajectory=detail.trajectory, title=f"{run_id} · task {task_id}", images=detail.images,
                answer=result.prediction, reference_answer=detail.reference_answer)


def side_by_side(store: Store, base_run: str, tuned_run: str, task_id: str) -> str:
    """The two runs' steps on one task, row by row: step i of the base run beside step i of the tuned one."""
    from review.viewer import VIEWER_CSS, render_outcome, render_step, render_task

    views = [_optional_view(store, run, task_id) for run in (base_run, tuned_run)]
    shown = next((v for v in views if v is not None), None)
    if shown is None:
        raise EvalError(f"neither run stored a trajectory for task {task_id}")
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
    except EvalError:
        return None


def flip_rows(store: Store, base_run: str, tuned_run: str, protocol: str) -> list[list]:
    if not base_run or not tuned_run:
        raise EvalError("choose a base run and a tuned run")
    if run_info(store, base_run).benchmark != run_info(store, tuned_run).benchmark:
        raise EvalError("the two runs are on different benchmarks")

    def mark(value: bool | None) -> str:
        return "—" if value is None else ("right" if value else "wrong")

    return [[f.task_id, f.change, mark(f.base), mark(f.tuned), f.question[:140]]
            for f in flips(store, base_run, tuned_run, protocol)]


def export_report(store: Store, run_ids: list[str], protocol: str) -> str:
    if not run_ids:
        raise EvalError("select the runs to put in the report")
    out = Path(tempfile.mkdtemp(prefix="mat-eval-")) / "evaluation-report.html"
    out.write_text(html_report(store, run_ids, protocol), encoding="utf-8")
    return str(out)


def _result(store: Store, run_id: str, task_id: str) -> Result:
    found = [r for r in load_results(store.db, run_id) if r.task_id == task_id]
    if not found:
        raise EvalError(f"run {run_id} has no result for task {task_id}")
    return found[0]


def apply_link(store: Store, address: dict | None) -> tuple:
    """What a link from another tab asks of this one, as (sub-tab, model source, checkpoint, adapter, runs picked):
    `{"local_model": PATH, "adapter": PATH}` fills the form for that checkpoint (the Train tab sends it),
    `{"results": RUN_ID}` shows that run's results. What a link does not set stays as it is."""
    keep = gr.skip()
    if not address:
        return keep, keep, keep, keep, keep
    if address.get("results"):
        run_id = run_info(store, address["results"]).id
        return (gr.Tabs(selected="results"), keep, keep, keep,
                gr.update(choices=run_choices(store), value=[run_id]))
    if address.get("local_model"):
        return (gr.Tabs(selected="run"), "local checkpoint", str(address["local_model"]),
                str(address.get("adapter") or ""), keep)
    return keep, keep, keep, keep, keep


def _cell(rows: Any, row: int, column: int) -> str:
    """A cell of a Dataframe's value, whether Gradio hands it over as a DataFrame or as lists."""
    if hasattr(rows, "iloc"):
        return str(rows.iloc[row, column])
    if isinstance(rows, dict):
        return str(rows["data"][row][column])
    return str(rows[row][column])


# ------------------------------------------------------------------ layout


@dataclass
class RunForm:
    """The fields of a run, named as `RunRequest`'s."""

    benchmark: Any
    data: Any
    split: Any
    level: Any
    limit: Any
    ids: Any
    profile: Any
    model_source: Any
    local_model: Any
    adapter: Any
    base_url: Any
    model: Any
    concurrency: Any
    timeout: Any
    max_steps: Any
    skip_missing: Any
    step_by_step: Any
    api_key: Any

    def inputs(self) -> list:
        """The components in `RunRequest`'s order."""
        return [getattr(self, f.name) for f in fields(RunRequest)]


@dataclass
class RunPanel:
    form: RunForm
    start: Any
    stop: Any
    resume: Any
    status: Any
    show: Any
    timer: Any


@dataclass
class ResultsPanel:
    runs: Any
    protocol: Any
    refresh: Any
    shared: Any
    scores: Any
    chart: Any
    tasks: Any
    viewer: Any
    export: Any
    report_file: Any


@dataclass
class ComparePanel:
    base_run: Any
    tuned_run: Any
    compare: Any
    flipped: Any
    pair: Any


@dataclass
class ContaminationPanel:
    source: Any
    data: Any
    images: Any
    benchmark: Any
    benchmark_data: Any
    split: Any
    check: Any
    summary: Any
    pairs: Any

    def inputs(self) -> list:
        return [self.source, self.data, self.images, self.benchmark, self.benchmark_data, self.split]


@dataclass
class EvalTab:
    tabs: Any
    job: Any  # gr.State: the job started from this page
    run: Any  # gr.State: its run
    running: RunPanel
    results: ResultsPanel
    compare: ComparePanel
    contamination: ContaminationPanel


def build_eval_tab(settings: Settings, links: Links | None = None) -> None:
    """Lay out the Evaluate tab inside the caller's `gr.Tab`, over the store at `settings.db`, and wire it."""
    store = open_store(settings.db)
    job, run = gr.State(None), gr.State(None)
    with gr.Tabs() as tabs:
        with gr.Tab("Run", id="run"):
            running = _run_panel(settings)
        with gr.Tab("Results", id="results"):
            results = _results_panel(store)
        with gr.Tab("Base vs tuned"):
            compare = _compare_panel(store)
        with gr.Tab("Contamination", id="contamination"):
            contamination = _contamination_panel()
    tab = EvalTab(tabs, job, run, running, results, compare, contamination)
    _wire_run(tab, store, settings)
    _wire_results(tab, store)
    _wire_compare(tab, store)
    wire(contamination.check.click, lambda *values: contamination_view(store, settings, *values),
         contamination.inputs(), [contamination.summary, contamination.pairs], "eval_contamination")
    if links is not None:
        form = running.form
        wire(links.address("evaluate").change, lambda address: apply_link(store, address), [links.address("evaluate")],
             [tabs, form.model_source, form.local_model, form.adapter, results.runs])


def _run_form(settings: Settings) -> RunForm:
    with gr.Row():
        benchmark = gr.Dropdown(["gta", "gaia"], value="gta", label="Benchmark", elem_id="eval-benchmark")
        data = gr.Textbox(label="Data folder", placeholder="GTA: folder of dataset.json; GAIA: folder of "
                          "metadata.jsonl (empty: the Hub dataset)", scale=3)
        split = gr.Dropdown(["validation", "test"], value="validation", label="GAIA split")
        level = gr.Dropdown([ANY, "1", "2", "3"], value=ANY, label="GAIA level")
    with gr.Row():
        limit = gr.Textbox(label="First N tasks (empty: all)", placeholder="all", elem_id="eval-limit")
        ids = gr.Textbox(label="Task ids (comma-separated, empty: all)")
        profile = gr.Dropdown([DEFAULT_PROFILE, "gta", "gaia", "mat"], value=DEFAULT_PROFILE, label="Tool profile")
        skip_missing = gr.Checkbox(False, label="Skip tasks with missing files")
        step_by_step = gr.Checkbox(False, label="GTA step-by-step (InstAcc, ToolAcc, ArgAcc, SummAcc)")
    with gr.Row():
        model_source = gr.Radio(list(MODEL_CHOICES), value="settings", label="Model", elem_id="eval-model-source",
                                info="settings: the MAT_* environment; tiny: random weights, for a smoke test")
        local_model = gr.Textbox(label="Local checkpoint", elem_id="eval-local-model")
        adapter = gr.Textbox(label="LoRA adapter (optional)", elem_id="eval-adapter")
        base_url = gr.Textbox(label="Endpoint base URL")
        model = gr.Textbox(label="Model name on the endpoint")
        api_key = gr.Textbox(label="API key for this endpoint (optional)", type="password", elem_id="eval-api-key",
                             info="sent only to the URL beside it; never stored")
    with gr.Row():
        concurrency = gr.Number(1, label="Concurrency", precision=0, elem_id="eval-concurrency",
                                info="tasks in flight; a local model still answers one at a time")
        timeout = gr.Number(600, label="Seconds per task", elem_id="eval-timeout",
                            info="the task's own time, not its wait for the model")
        max_steps = gr.Textbox(label="Max steps (empty: setting)", placeholder=str(settings.max_steps),
                               elem_id="eval-max-steps")
    return RunForm(benchmark, data, split, level, limit, ids, profile, model_source, local_model, adapter, base_url,
                   model, concurrency, timeout, max_steps, skip_missing, step_by_step, api_key)


def _run_panel(settings: Settings) -> RunPanel:
    form = _run_form(settings)
    with gr.Row():
        start = gr.Button("Start run", variant="primary", elem_id="eval-start")
        stop = gr.Button("Stop", variant="stop", elem_id="eval-stop")
        resume = gr.Button("Resume", elem_id="eval-resume")
    status = gr.Markdown("No run started from this page yet.", elem_id="eval-status")
    show = gr.Button("Show in Results", visible=False, elem_id="eval-show", size="sm")
    return RunPanel(form, start, stop, resume, status, show, gr.Timer(2.0, active=False))


def _results_panel(store: Store) -> ResultsPanel:
    from review.viewer import build_viewer

    with gr.Row():
        runs = gr.Dropdown(run_choices(store), multiselect=True, label="Runs", scale=3, allow_custom_value=True,
                           elem_id="eval-runs")
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
    return ResultsPanel(runs, protocol, refresh, shared, scores, chart, tasks, viewer, export, report_file)


def _compare_panel(store: Store) -> ComparePanel:
    with gr.Row():
        base_run = gr.Dropdown(run_choices(store), label="Base run", allow_custom_value=True)
        tuned_run = gr.Dropdown(run_choices(store), label="Tuned run", allow_custom_value=True)
        compare = gr.Button("Compare", variant="primary", scale=0)
    flipped = gr.Dataframe(headers=FLIP_HEADERS, value=[], interactive=False, wrap=True, max_height=320,
                           label="Tasks, fixed and broken first (click one to see both runs)")
    return ComparePanel(base_run, tuned_run, compare, flipped, gr.HTML(elem_id="eval-pair"))


def _contamination_panel() -> ContaminationPanel:
    gr.Markdown("How much of a benchmark the training set already holds: shared 13-grams, exact and near-duplicate "
                "questions, identical images (`python -m eval contamination` does the same).")
    with gr.Row():
        source = gr.Radio([TRAIN_STORE, TRAIN_FILE], value=TRAIN_STORE, label="Training set")
        data = gr.Textbox(label="Training file (JSON, JSONL, parquet)", scale=2)
        images = gr.Textbox(label="Its images (folder or zip, optional)", scale=2)
    with gr.Row():
        benchmark = gr.Dropdown(["gta", "gaia"], value="gta", label="Benchmark")
        benchmark_data = gr.Textbox(label="Benchmark data", scale=3, placeholder="GTA: folder of dataset.json; "
                                    "GAIA: folder of metadata.jsonl (empty: the Hub dataset)")
        split = gr.Dropdown(["validation", "test"], value="validation", label="GAIA split")
        check = gr.Button("Check overlap", variant="primary", scale=0, elem_id="eval-check")
    summary = gr.Markdown(elem_id="eval-overlap")
    pairs = gr.Dataframe(headers=PAIR_HEADERS, value=[], interactive=False, wrap=True, max_height=360,
                         label="Overlapping pairs", elem_id="eval-overlap-pairs")
    return ContaminationPanel(source, data, images, benchmark, benchmark_data, split, check, summary, pairs)


# ------------------------------------------------------------------ wiring


def _wire_run(tab: EvalTab, store: Store, settings: Settings) -> None:
    panel, results = tab.running, tab.results
    watching = [panel.status, panel.timer, panel.show]

    def on_start(*values):
        request = RunRequest(**{f.name: (v if v is not None else f.default)
                                for f, v in zip(fields(RunRequest), values, strict=True)})
        job_id, run_id = start_eval(store, settings, request)
        return job_id, run_id, job_status(store, job_id, run_id), gr.Timer(active=True), gr.update(visible=False)

    def on_resume(job_id, run_id, api_key):
        new_job = resume_eval(store, settings, job_id, api_key or "")
        return new_job, job_status(store, new_job, run_id), gr.Timer(active=True), gr.update(visible=False)

    def on_tick(job_id, run_id):
        text = job_status(store, job_id, run_id)
        return (text, gr.Timer(active=text.endswith("…")), gr.update(visible=" finished: " in text),
                gr.update(choices=run_choices(store)))

    def on_show(run_id):
        return gr.Tabs(selected="results"), gr.update(choices=run_choices(store), value=[run_id])

    wire(panel.start.click, on_start, panel.form.inputs(), [tab.job, tab.run, *watching], "eval_start")
    wire(panel.timer.tick, on_tick, [tab.job, tab.run], [*watching, results.runs])
    wire(panel.show.click, on_show, [tab.run], [tab.tabs, results.runs], "eval_show")
    wire(panel.stop.click, lambda job_id: stop_eval(store, job_id), [tab.job], [panel.status], "eval_stop")
    wire(panel.resume.click, on_resume, [tab.job, tab.run, panel.form.api_key], [tab.job, *watching], "eval_resume")
    # A plain API endpoint for scripts and tests: the status of the job started from this page.
    wire(gr.Button(visible=False).click, lambda job_id, run_id: job_status(store, job_id, run_id),
         [tab.job, tab.run], [panel.status], "eval_status")


def _wire_results(tab: EvalTab, store: Store) -> None:
    panel, compare = tab.results, tab.compare
    shown = [panel.scores, panel.chart, panel.tasks, panel.shared]

    def on_results(run_ids, chosen_protocol):
        rows, header, svg, note = results_view(store, run_ids or [], chosen_protocol)
        first = task_rows(store, run_ids[0], chosen_protocol) if run_ids else []
        return gr.update(value=rows, headers=header), svg, first, note

    def on_task(run_ids, rows, event: gr.SelectData):
        if not run_ids:
            raise EvalError("select a run first")
        return panel.viewer.update(trajectory_view(store, run_ids[0], _cell(rows, event.index[0], 0)))

    def on_refresh():
        choices = run_choices(store)
        return gr.update(choices=choices), gr.update(choices=choices), gr.update(choices=choices)

    pickers = [panel.runs, compare.base_run, compare.tuned_run]
    wire(panel.refresh.click, on_refresh, [], pickers, "eval_refresh")
    for trigger in (panel.runs.change, panel.protocol.change):
        wire(trigger, on_results, [panel.runs, panel.protocol], shown)
    wire(panel.refresh.click, on_results, [panel.runs, panel.protocol], shown, "eval_scores")
    wire(panel.tasks.select, on_task, [panel.runs, panel.tasks], [panel.viewer.component])
    wire(panel.export.click, lambda run_ids, p: export_report(store, run_ids or [], p), [panel.runs, panel.protocol],
         [panel.report_file], "eval_export")
    root = gr.context.Context.root_block
    if root is not None:
        wire(root.load, on_refresh, [], pickers)


def _wire_compare(tab: EvalTab, store: Store) -> None:
    panel, protocol = tab.compare, tab.results.protocol

    def on_pair(base, tuned, rows, event: gr.SelectData):
        return side_by_side(store, base, tuned, _cell(rows, event.index[0], 0))

    wire(panel.compare.click, lambda base, tuned, p: flip_rows(store, base, tuned, p),
         [panel.base_run, panel.tuned_run, protocol], [panel.flipped], "eval_compare")
    wire(panel.flipped.select, on_pair, [panel.base_run, panel.tuned_run, panel.flipped], [panel.pair])
