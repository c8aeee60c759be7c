"""`python -m eval gta|gaia|report|runs|contamination`: benchmark runs, their reports and overlap checks.

    python -m eval gta --data ~/gta_dataset --db data/mat.db --local-model ~/Qwen2-VL-7B-Instruct --adapter out/lora
    python -m eval gaia --data ~/GAIA/2023/validation --level 1 --concurrency 4
    python -m eval gta --data ~/gta_dataset --run-id gta-20261130-101500-ab12     # resume a killed run
    python -m eval report gta-... gta-... --html report.html
    python -m eval contamination --db data/mat.db --benchmark gaia --benchmark-data ~/GAIA/2023/validation

Bad input ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from agent.config import Settings
from core.cli import run_main
from eval.errors import EvalError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval", description="GTA and GAIA evaluation of the T3-Agent")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("gta", "gaia"):
        run = commands.add_parser(name, help=f"run the agent on {name.upper()}")
        run.add_argument("--data", type=Path, required=name == "gta",
                         help="GTA: the folder of dataset.json (or the file); GAIA: the folder of metadata.jsonl"
                         + (" (omit to load the Hub dataset)" if name == "gaia" else ""))
        if name == "gaia":
            run.add_argument("--split", default="validation", choices=("validation", "test"))
            run.add_argument("--level", choices=("1", "2", "3"), help="only this level")
            run.add_argument("--reformat", action="store_true",
                             help="also score MAT's GPT re-formatting pass (reported separately, not official)")
            run.add_argument("--reformat-model", help="the endpoint's model for --reformat (default: MAT_MODEL)")
        if name == "gta":
            run.add_argument("--step-by-step", action="store_true",
                             help="GTA's step-by-step mode (InstAcc, ToolAcc, ArgAcc, SummAcc; gta profile)")
        run.add_argument("--db", type=Path, help="the store (default: MAT_DB or data/mat.db)")
        run.add_argument("--run-id", help="resume this run (tasks already answered are skipped)")
        run.add_argument("--profile", choices=("gta", "gaia", "mat"), help=f"tool profile (default: {name})")
        run.add_argument("--local-model", help="a local checkpoint (Qwen2-VL, MiniCPM-V)")
        run.add_argument("--adapter", help="a LoRA adapter for the local checkpoint")
        run.add_argument("--base-url", help="an OpenAI-compatible endpoint")
        run.add_argument("--model", help="the model's name on the endpoint")
        run.add_argument("--tiny", action="store_true", help="the tiny random smoke model (answers are noise)")
        run.add_argument("--concurrency", type=int, help="tasks in flight (default 1; a resume may change it)")
        run.add_argument("--timeout", type=float,
                         help="seconds of a task's own time, not counting its wait for the model (default 600; "
                              "a resume may change it)")
        run.add_argument("--retry-timeouts", action="store_true",
                         help="on resume, run the tasks that timed out again (failed tasks always are)")
        run.add_argument("--max-steps", type=int)
        run.add_argument("--limit", type=int, help="only the first N tasks")
        run.add_argument("--ids", help="only these task ids (comma-separated)")
        run.add_argument("--skip-missing", action="store_true", help="leave out tasks whose files are missing")
    report = commands.add_parser("report", help="scores of stored runs, side by side")
    report.add_argument("runs", nargs="+")
    report.add_argument("--db", type=Path)
    report.add_argument("--protocol", default="official", choices=("official", "mat", "fixed"))
    report.add_argument("--html", type=Path, help="write a self-contained HTML report here")
    runs = commands.add_parser("runs", help="list stored runs")
    runs.add_argument("--db", type=Path)
    from eval.contamination import add_arguments

    add_arguments(commands.add_parser("contamination", help="overlap between a training set and a benchmark"))
    return parser


def main(argv: list[str] | None = None) -> int:
    from core.errors import UserError

    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    commands = {"gta": _run, "gaia": _run, "report": _report, "contamination": _contamination, "runs": _runs}
    try:
        return commands[args.command](args)
    except UserError as exc:
        raise EvalError(_as_given(str(exc), args)) from None


def _contamination(args: argparse.Namespace) -> int:
    from eval.contamination import run_check

    return run_check(args)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _settings(args: argparse.Namespace) -> Settings:
    from eval.runner import one_model

    settings = Settings()
    changes = {"db_path": args.db} if getattr(args, "db", None) else {}
    if getattr(args, "base_url", None):
        settings = settings.for_endpoint(args.base_url)
    for flag in ("local_model", "adapter", "model"):
        if getattr(args, flag, None):
            changes[flag] = getattr(args, flag)
    changes["model"] = one_model(changes.get("model", settings.model))
    return settings.with_(**changes)


# What a setting is called where the user set it: a message about MAT_LOCAL_MODEL means --local-model when that
# flag was given.
_FLAGS = {"MAT_LOCAL_MODEL": "local_model", "MAT_ADAPTER": "adapter", "MAT_BASE_URL": "base_url",
          "MAT_MODEL": "model"}


def _as_given(message: str, args: argparse.Namespace) -> str:
    for variable, flag in _FLAGS.items():
        if getattr(args, flag, None):
            message = message.replace(variable, "--" + flag.replace("_", "-"))
    return message


def _run(args: argparse.Namespace) -> int:
    """Check everything a run needs (benchmark files, the model) before recording it, then run it."""
    from agent.models import load_model
    from core import runs
    from core.jobs import progress
    from eval.benchmarks import load
    from eval.runner import create_run, new_run_id, open_store, remember_benchmark

    settings = _settings(args)
    with open_store(settings.db) as store:
        config = _config(args, settings, store)
        loaded = load(config.benchmark, config.data or None, config.split or "validation")
        benchmark, skipped = _runnable(loaded.select(config.ids, config.limit, config.level), args.skip_missing)
        model = load_model(settings, tiny=args.tiny)
        reformatter = _reformatter(settings, args.reformat_model) if getattr(args, "reformat", False) else None
        remember_benchmark(store, loaded)
        run_id = args.run_id or new_run_id(config.benchmark)
        with runs.hold(store.db, run_id):
            create_run(store, config, len(benchmark.tasks), run_id)
            print(f"run {run_id}: {len(benchmark.tasks)} tasks, model {config.model}, profile {config.profile}")
            progress(stage="tasks", run=run_id, total=len(benchmark.tasks), skipped=skipped)
            return _evaluate(args, store, run_id, benchmark, model, settings, config, reformatter)


def _config(args: argparse.Namespace, settings: Settings, store):
    """The stored config of the run to resume (with the limits given now), or a new one from the flags."""
    from eval.runner import EvalConfig, run_config

    stored = run_config(store, args.run_id) if args.run_id else None
    if stored is not None:
        stored.timeout = args.timeout or stored.timeout
        stored.concurrency = args.concurrency or stored.concurrency
        return stored
    config = EvalConfig(
        benchmark=args.command, data=str(args.data or ""), split=getattr(args, "split", ""),
        profile=args.profile or args.command, model=_model_label(args, settings),
        adapter=str(settings.adapter or ""), concurrency=args.concurrency or 1,
        timeout=args.timeout or 600.0, max_steps=args.max_steps,
        ids=[i for i in (args.ids or "").split(",") if i], limit=args.limit,
        level=getattr(args, "level", None),
        mode="step-by-step" if getattr(args, "step_by_step", False) else "end-to-end",
    )
    if config.mode == "step-by-step" and config.profile != "gta":
        raise EvalError("the step-by-step mode needs the gta profile (GTA's tool names)")
    return config


def _runnable(benchmark, skip_missing: bool):
    """The chosen tasks whose files are all there, and how many were left out; refused when nothing would run."""
    skipped = 0
    if benchmark.missing:
        if not skip_missing:
            raise EvalError(f"{benchmark.missing_summary()} (--skip-missing leaves those tasks out)")
        absent = set(benchmark.missing)
        kept = [t for t in benchmark.tasks if not any(str(p) in absent for p in t.files)]
        skipped, benchmark.tasks = len(benchmark.tasks) - len(kept), kept
        print(f"note: {len(absent)} missing file(s); {skipped} task(s) skipped, {len(kept)} left", file=sys.stderr)
    if not benchmark.tasks:
        why = f"all {skipped} chosen task(s) need files that are missing" if skipped else "no task was chosen"
        raise EvalError(f"nothing to run: {why}; no run was stored")
    return benchmark, skipped


def _evaluate(args, store, run_id, benchmark, model, settings, config, reformatter) -> int:
    """Run the tasks, say what failed or timed out, and print the report."""
    from core.jobs import progress
    from eval.runner import finish_run, run_eval

    failed: list[str] = []
    late: list[str] = []
    try:
        for task, outcome in run_eval(store, run_id, benchmark, model, settings, config, vlm=model,
                                      show_progress=sys.stderr.isatty(), retry_timeouts=args.retry_timeouts):
            if outcome.status == "error":
                failed.append(f"{task.id}: {outcome.error}")
            elif outcome.status == "timeout":
                late.append(task.id)
        if reformatter is not None:
            _reformat(store, run_id, reformatter)
    except KeyboardInterrupt:
        finish_run(store, run_id, "stopped", "interrupted; run again with --run-id to resume")
        print(f"stopped; resume with --run-id {run_id}", file=sys.stderr)
        return 130
    if failed:
        print(f"{len(failed)} task(s) failed and count as not answered (first: {failed[0]}); run again with "
              f"--run-id {run_id} to retry them", file=sys.stderr)
    if late:
        print(f"{len(late)} task(s) timed out after {config.timeout:g} s of their own time ({', '.join(late[:5])})"
              f": no answer, not a wrong one; run again with --run-id {run_id} --retry-timeouts (and a larger "
              "--timeout) to retry them", file=sys.stderr)
    ended = [f"{len(failed)} task(s) failed"] * bool(failed) + [f"{len(late)} timed out"] * bool(late)
    finish_run(store, run_id, "done", "; ".join(ended))
    progress(status="done", run=run_id)
    _print_report(store, [run_id])
    return 0


def _print_report(store, run_ids: list[str], protocol: str = "official") -> None:
    from eval.report import contamination_lines, text_report

    print(text_report(store, run_ids, protocol))
    print("\n".join(contamination_lines(store, run_ids)))


def _reformat(store, run_id: str, model) -> None:
    from eval.reformat import reformat_run

    done = reformat_run(store, run_id, model)
    line = f"MAT re-formatting pass: {done.rewritten} wrong answer(s) rewritten, {done.kept} right one(s) kept"
    if done.failed:
        line += f"; {done.failed} could not be rewritten ({done.error}): run again with --run-id {run_id} --reformat"
    print(line, file=sys.stderr)


def _reformatter(settings: Settings, name: str | None):
    """The LLM for MAT's re-formatting pass: the configured OpenAI-compatible endpoint, never the local VLM."""
    from agent.models import load_model
    from eval.runner import one_model

    return load_model(settings.with_(local_model=None, model=one_model(name) or settings.model))


def _model_label(args: argparse.Namespace, settings: Settings) -> str:
    if args.tiny:
        return "tiny (random weights)"
    if settings.local_model:
        return Path(settings.local_model).name + (f" + {Path(settings.adapter).name}" if settings.adapter else "")
    return settings.model or settings.base_url or "default endpoint"


def _report(args: argparse.Namespace) -> int:
    from eval.report import html_report
    from eval.runner import open_store

    settings = _settings(args)
    if not settings.db.exists():
        raise EvalError(f"{settings.db}: no such database")
    with open_store(settings.db) as store:
        _print_report(store, args.runs, args.protocol)
        if args.html:
            _write_whole(args.html, html_report(store, args.runs, args.protocol))
            print(f"wrote {args.html}")
    return 0


def _write_whole(path: Path, text: str) -> None:
    """Write `path` whole or not at all (an earlier report stays as it was); a failure names `path` itself."""
    from core.files import atomic_write

    try:
        with atomic_write(path) as out:
            out.write(text)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def _runs(args: argparse.Namespace) -> int:
    from eval.report import list_runs
    from eval.runner import open_store

    settings = _settings(args)
    with open_store(settings.db) as store:
        for run in list_runs(store):
            print(f"{run.id}\t{run.benchmark}\t{run.status}\t{run.done}/{run.total}\t{run.model}\t{run.profile}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
