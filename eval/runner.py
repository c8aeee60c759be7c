"""Run the T3-Agent over a benchmark: one sandboxed agent run per task, results and trajectories in the store.

A run is a shared run record (`core.runs`, kind "eval") with evaluation's own columns in `eval_runs`; each
finished task is a row in `eval_results` keyed by (run, task), written as soon as the task ends. Starting the same run id again skips the tasks already answered and retries those
that failed (and, when asked, those that timed out), so a killed run resumes without redoing work.

A task's time limit is its own time (eval.clock): it starts once the task's sandbox is up and stands still
while the task queues for the model, so a run with more tasks in flight than the model serves at once
does not turn waiting into timeouts.
"""

from __future__ import annotations

import ast
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.models.base import Model, ModelError
from agent.steps import Trajectory
from agent.profiles import TOOL_NAMES
from core import runs
from core.clock import now
from eval.benchmarks import Benchmark, BenchTask
from eval.clock import ClockedModel, TaskClock
from eval.errors import EvalError
from review.store import Store

_log = logging.getLogger(__name__)
DEFAULT_PROFILE = {"gta": "gta", "gaia": "gaia"}
ModelSource = Model | Callable[[BenchTask], Model]


@dataclass
class EvalConfig:
    """What a run was asked to do; kept in its run record so that a resume uses the same settings."""

    benchmark: str
    data: str
    split: str = "validation"
    profile: str = "gta"
    model: str = ""
    adapter: str = ""
    concurrency: int = 1
    timeout: float = 600.0
    max_steps: int | None = None
    ids: list[str] = field(default_factory=list)
    limit: int | None = None
    level: str | None = None
    mode: str = "end-to-end"  # or "step-by-step" (GTA only, eval.stepwise)

    @classmethod
    def from_dict(cls, data: dict) -> EvalConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def identity(self) -> dict:
        """What decides the run's results; a resume may change only the limits (concurrency, timeout)."""
        return {k: v for k, v in asdict(self).items() if k not in ("concurrency", "timeout")}


@dataclass
class TaskOutcome:
    status: str
    prediction: str | None = None
    error: str = ""
    trajectory: Trajectory | None = None
    attachments: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0
    predicted_steps: list[tuple] = field(default_factory=list)  # step-by-step mode: (index, reference, predicted, text)


def open_store(path: str | Path) -> Store:
    """The store with the evaluation tables in place."""
    return Store(path)


def one_model(names: str | None) -> str | None:
    """The first of a comma-separated list (MAT_MODEL may offer several to Chat's picker): a run uses one model."""
    return next((name.strip() for name in (names or "").split(",") if name.strip()), None)


def new_run_id(benchmark: str) -> str:
    return f"{benchmark}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def create_run(store: Store, config: EvalConfig, total: int, run_id: str | None = None) -> str:
    """Record a new run, or reopen `run_id` (a run to resume) with `config`'s limits; it must be the same benchmark."""
    run_id = run_id or new_run_id(config.benchmark)
    with store.db.transaction() as tx:
        found = runs.find(store.db, run_id)
        if found is not None:
            benchmark = tx.value("SELECT benchmark FROM eval_runs WHERE id = ?", (run_id,))
            if benchmark is None:
                raise EvalError(f"run {run_id} is a {found.kind} run, not an evaluation; choose another --run-id")
            if benchmark != config.benchmark:
                raise EvalError(f"run {run_id} is a {benchmark} run; it cannot resume on {config.benchmark}")
            runs.reopen(store.db, run_id, total=total, config=asdict(config))
            return run_id
        runs.start(store.db, "eval", asdict(config), run_id=run_id, fingerprint=runs.fingerprint(config.identity()),
                   total=total)
        tx.execute("INSERT INTO eval_runs (id, benchmark, data, split, profile, model, adapter, mode)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (run_id, config.benchmark, config.data, config.split, config.profile, config.model,
                    config.adapter, config.mode))
    return run_id


def run_config(store: Store, run_id: str) -> EvalConfig | None:
    """The config an evaluation run was made with; None when there is no such evaluation run."""
    run = runs.find(store.db, run_id)
    if run is None or not store.db.value("SELECT 1 FROM eval_runs WHERE id = ?", (run_id,)):
        return None
    return EvalConfig.from_dict(run.config)


def finished_tasks(store: Store, run_id: str, retry_timeouts: bool = False) -> set[str]:
    """Tasks that need no rerun: answered, or timed out unless `retry_timeouts` (a failed task is retried)."""
    rerun = ("error", "timeout") if retry_timeouts else ("error",)
    rows = store.db.read(
        f"SELECT task_id FROM eval_results WHERE run_id = ? AND status NOT IN ({', '.join('?' * len(rerun))})",
        (run_id, *rerun),
    )
    return {row[0] for row in rows}


def finish_run(store: Store, run_id: str, status: str, message: str = "") -> None:
    runs.finish(store.db, run_id, status, message)


def remember_benchmark(store: Store, benchmark: Benchmark) -> int:
    """Keep the benchmark's queries in the store (with the content hashes of the files found), so that training
    refuses them and reports its overlap with them; returns how many the store knows for this benchmark."""
    from eval.contamination import task_query
    from review.benchmarks import remember

    return remember(store, benchmark.name, [task_query(task) for task in benchmark.tasks])


def run_eval(
    store: Store,
    run_id: str,
    benchmark: Benchmark,
    model: ModelSource,
    settings: Settings,
    config: EvalConfig,
    *,
    vlm: Model | None = None,
    show_progress: bool = True,
    retry_timeouts: bool = False,
) -> Iterator[tuple[BenchTask, TaskOutcome]]:
    """Run every task of `benchmark` not yet finished in `run_id`, `config.concurrency` at a time.

    Yields each task with its outcome as it ends (after its row is stored). `model` is one model for all
    tasks, or a function giving the model for a task (tests script answers per task this way).
    """
    from tqdm import tqdm

    from core.jobs import progress

    done = finished_tasks(store, run_id, retry_timeouts) & {task.id for task in benchmark.tasks}
    todo = [(position, task) for position, task in enumerate(benchmark.tasks) if task.id not in done]
    total = len(benchmark.tasks)
    progress(stage="eval", run=run_id, done=len(done), total=total)
    bar = tqdm(total=total, initial=len(done), desc=run_id, unit="task", disable=not show_progress)
    pool = ThreadPoolExecutor(max_workers=max(1, config.concurrency), thread_name_prefix="eval")
    futures = {pool.submit(_solve, task, model, settings, config, vlm): (position, task) for position, task in todo}
    finished = len(done)
    try:
        for future in as_completed(futures):
            position, task = futures[future]
            outcome = future.result()
            _store_result(store, run_id, position, task, outcome)
            finished += 1
            bar.update(1)
            progress(stage="eval", run=run_id, done=finished, total=total, task=task.id, status=outcome.status)
            yield task, outcome
    finally:
        # Interrupted (Ctrl-C, a stopped job): drop the tasks not started; finished ones are already stored.
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()


def _solve(task: BenchTask, model: ModelSource, settings: Settings, config: EvalConfig,
           vlm: Model | None) -> TaskOutcome:
    """One task in its own sandbox, stopped after `config.timeout` seconds of its own time; never raises."""
    from agent.session import UploadError, loop_limits, start_run

    clock = TaskClock()
    try:
        task_model = ClockedModel(model if isinstance(model, Model) else model(task), clock)
        tool_model = ClockedModel(vlm, clock) if vlm is not None else None
        agent_run = start_run(settings, task.question, task.files, controller=tool_model, profile=config.profile)
    except (UploadError, ModelError, ValueError, OSError) as exc:
        return TaskOutcome("error", error=_one_line(exc))
    status, error, predicted = "done", "", []
    limits = loop_limits(settings, config.max_steps, tiny="tiny" in (config.model or ""))
    try:
        with clock.limit(config.timeout, agent_run.stop):
            if config.mode == "step-by-step":
                predicted = _predict_steps(task, task_model, agent_run, limits.max_new_tokens)
            else:
                for _ in agent_run.steps(task_model, limits):
                    pass
    except ModelError as exc:
        status, error = "error", _one_line(exc)
    except Exception as exc:  # noqa: BLE001 — one broken task must not end the run; the row says what happened
        _log.exception("task %s failed", task.id)
        status, error = "error", f"{type(exc).__name__}: {_one_line(exc)}"
    finally:
        agent_run.close()
    if status == "done" and agent_run.stop_event.is_set():
        status, error = "timeout", f"stopped after {config.timeout:g} s of its own time"
    if predicted:
        answers = [pred.answer for _, gt, pred, _ in predicted if gt.kind == "answer"]
        return TaskOutcome(status, prediction=answers[-1] if answers and status == "done" else None, error=error,
                           predicted_steps=predicted, seconds=clock.seconds())
    trajectory = agent_run.trajectory
    return TaskOutcome(status, prediction=trajectory.final_answer if status == "done" else None, error=error,
                       trajectory=trajectory, attachments={**agent_run.attachments, **agent_run.kept},
                       seconds=clock.seconds())


def _predict_steps(task: BenchTask, model: Model, agent_run, max_new_tokens: int) -> list[tuple]:
    """Step-by-step mode: predict each reference step from the reference dialog before it (nothing runs)."""
    from agent.tools import PROFILES
    from eval.stepwise import as_step, predict, reference_actions

    names = {path.resolve(): name for name, path in agent_run.attachments.items()}
    actions = reference_actions(task, names)
    tools = set(PROFILES["gta"]) - {"final_answer"}
    images = [str(p) for p in agent_run.images]
    predicted = []
    for index, reference in enumerate(actions):
        if agent_run.stop_event.is_set():
            break
        before = [a for a in actions[:index] if a.kind == "tool"]
        agent_run.trajectory.steps = [as_step(i, a) for i, a in enumerate(before)]
        action, text = predict(model, agent_run.trajectory, images, tools, max_new_tokens)
        predicted.append((index, reference, action, text))
    return predicted


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _store_result(store: Store, run_id: str, position: int, task: BenchTask, outcome: TaskOutcome) -> None:
    trajectory = outcome.trajectory
    trajectory_id = None
    steps = code_steps = code_ok = input_tokens = output_tokens = 0
    tools: list[str] = []
    if trajectory is not None and trajectory.steps:
        trajectory_id = store.add_trajectory(
            trajectory, source=f"eval/{run_id}", record_id=f"{run_id}/{task.id}",
            answer=_reference_text(task.truth), image_files=outcome.attachments, purpose="evaluation",
        )
        steps = len(trajectory.steps)
        ran = [s for s in trajectory.steps if s.prompt is None]  # the answer asked for at the step limit never runs
        code_steps = len(ran)
        code_ok = sum(1 for s in ran if s.code is not None and s.error is None)
        tools = tool_calls(trajectory)
        input_tokens = sum(s.input_tokens for s in trajectory.steps)
        output_tokens = sum(s.output_tokens for s in trajectory.steps)
    with store.db.transaction() as tx:
        if outcome.predicted_steps:
            from eval.stepwise import record

            for index, reference, action, text in outcome.predicted_steps:
                record(tx, run_id, task.id, index, reference, action, text)
            steps = len(outcome.predicted_steps)
        tx.execute(
            "INSERT OR REPLACE INTO eval_results (run_id, task_id, position, kind, level, question, truth, gt_tools,"
            " prediction, status, error, trajectory_id, steps, code_steps, code_ok, tools, seconds, input_tokens,"
            " output_tokens, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, task.id, position, task.kind, task.level, task.question, json.dumps(task.truth),
             json.dumps(task.gt_tools), None if outcome.prediction is None else str(outcome.prediction),
             outcome.status, outcome.error, trajectory_id, steps, code_steps, code_ok, json.dumps(tools),
             outcome.seconds, input_tokens, output_tokens, now()),
        )
        runs.set_progress(store.db, run_id, tx.value("SELECT COUNT(*) FROM eval_results WHERE run_id = ?", (run_id,)))


def tool_calls(trajectory: Trajectory) -> list[str]:
    """The tools each step's code calls, one entry per call written (GTA's precision counts every call)."""
    known = TOOL_NAMES - {"final_answer"}
    calls: list[str] = []
    for step in trajectory.steps:
        try:
            tree = ast.parse(step.code or "")
        except SyntaxError:
            continue  # code that does not parse never ran, so it called nothing
        found = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
        calls += [n.func.id for n in sorted(found, key=lambda n: (n.lineno, n.col_offset)) if n.func.id in known]
    return calls


def _reference_text(truth: Any) -> str | None:
    """The reference answer as the viewer shows it beside the agent's."""
    if truth is None:
        return None
    if isinstance(truth, dict):
        return " AND ".join(" / ".join(map(str, group)) for group in truth.get("whitelist") or [])
    if isinstance(truth, list):
        return " | ".join(map(str, truth))
    return str(truth)
