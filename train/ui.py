"""The Train tab: a form that builds the `python -m train` command, launched as a background job the page watches.

The page never runs training itself: `core.jobs.start` spawns the CLI, which writes progress lines and a run record
in the store; a timer reads them back, so a reload (or another browser) finds the running job where it is.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

from agent.config import Settings
from core.ui import Links
from core.errors import UserError
from train.presets import PRESETS, TrainConfig, build_config, check

SOURCES = ("store: approved trajectories", "release file")
FORM_FIELDS = ("epochs", "learning_rate", "lora_r", "max_steps", "token_budget", "attention",
               "gradient_checkpointing", "merge")
RUN_HEADERS = ["run", "status", "started", "base", "data", "examples", "steps", "last loss", "adapter"]
REFRESH_SECONDS = 2.0


def form_argv(settings: Settings, source: str, data: str, images: str, skip_missing: bool, base: str, tiny: bool,
              preset: str, out: str, *values: Any, extra: str = "") -> list[str]:
    """The CLI arguments (after `python`) for the form; fields equal to the preset's are left out."""
    argv = ["-m", "train"]
    if source == SOURCES[1]:
        argv += ["--data", data.strip()] + (["--images", images.strip()] if images.strip() else [])
    argv += ["--db", str(settings.db)]  # the run record goes to the app's store in both cases
    argv += ["--tiny"] if tiny else ["--base", base.strip()]
    argv += ["--preset", preset, "--out", out.strip()]
    if skip_missing:
        argv.append("--skip-missing-images")
    preset_config = build_config(preset)
    for name, value in zip(FORM_FIELDS, values, strict=True):
        if value is None or value == "" or value == getattr(preset_config, name):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, _number(value)]
    return argv + shlex.split(extra or "")


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() and abs(value) >= 1 else str(value)


def validate(argv: list[str]) -> TrainConfig:
    """The config the CLI would build from `argv`; UserError with the reason if it would refuse it."""
    from train.cli import config_from_args

    try:
        config = config_from_args(argv[2:])
    except SystemExit:
        raise UserError("the extra flags are not valid (see python -m train --help)") from None
    check(config)
    if config.data and not Path(config.data).exists():
        raise UserError(f"no such file: {config.data}")
    if not config.tiny and not Path(config.base).is_dir():
        raise UserError(f"base model folder not found: {config.base or '(empty)'}")
    return config


def command_text(argv: list[str]) -> str:
    return "python " + " ".join(shlex.quote(a) for a in argv)


def default_out(settings: Settings) -> str:
    return str(settings.data_dir / "train" / time.strftime("run-%Y%m%d-%H%M%S"))


def latest_job(store):
    """The newest training job (running or finished), or None."""
    from core import jobs

    listed = jobs.list_jobs(store.db, kind="train")
    running = [job for job in listed if job.running]
    return (running or listed or [None])[0]


def job_view(store, job_id: str | None) -> tuple[str, Any, Any]:
    """(status markdown, loss frame, speed frame) for the job."""
    import pandas as pd

    from core import jobs

    empty = pd.DataFrame({"step": [], "loss": [], "tokens_per_s": []})
    if not job_id:
        return "No training job yet.", empty, empty
    job = jobs.get(store.db, job_id)
    lines = [e for e in jobs.events(job) if e.get("stage") == "train"]
    frame = pd.DataFrame([{k: e[k] for k in ("step", "loss", "tokens_per_s")} for e in lines]) if lines else empty
    latest = lines[-1] if lines else {}
    if job.running:
        stage = next((e for e in reversed(jobs.events(job)) if "stage" in e), {})
        detail = (f"step {latest['step']}/{latest['steps']} · loss {latest['loss']:.4f} · "
                  f"{latest['tokens_per_s']:,.0f} tokens/s") if latest else stage.get("message", "starting")
        status = f"**running** (job `{job.id}`): {detail}"
    else:
        status = f"**{job.status}** (job `{job.id}`)" + (f": {job.message}" if job.message else "")
        if job.status == "failed":
            status += "\n\n```\n" + jobs.output_tail(job, 6) + "\n```"
    return status, frame, frame


def runs_rows(db: Path) -> list[list[Any]]:
    from train.runs import list_runs

    return [[r.run.id, r.run.status, r.run.started_at.replace("T", " ")[:19], Path(r.base_model).name, r.data,
             r.examples, r.run.progress, None if r.last_loss is None else round(r.last_loss, 4),
             r.adapter_dir or ""] for r in list_runs(db)]


def usage_text(db: Path, run_id: str | None) -> str:
    """How to serve a finished run's adapter in Chat and how to evaluate it."""
    from train.runs import get_run

    run = get_run(db, run_id) if run_id else None
    if run is None:
        return "# pick a finished run"
    if run.run.status != "done" or not run.adapter_dir:
        return f"# run {run.run.id} is {run.run.status}: no adapter yet"
    base, adapter = shlex.quote(run.base_model), shlex.quote(run.adapter_dir)
    return (f"# use in Chat: restart the app with\nMAT_LOCAL_MODEL={base} MAT_ADAPTER={adapter} python app.py\n\n"
            f"# evaluate on GTA\npython -m eval gta --data GTA_DIR --db {shlex.quote(str(db))} "
            f"--local-model {base} --adapter {adapter}\n\n"
            f"# serve with vLLM\nvllm serve {base} --enable-lora --max-lora-rank {run.run.config.get('lora_r', 64)} "
            f"--lora-modules mat={adapter}")


def build_train_tab(settings: Settings, links: Links | None = None) -> None:
    """Lay out the Train tab inside the caller's `gr.Tab`; jobs and runs live in the store at `settings.db`."""
    import gradio as gr

    from core import jobs
    from review.store import Store

    store = Store(settings.db)
    defaults = build_config("mat-paper")
    with gr.Row():
        source = gr.Radio(list(SOURCES), value=SOURCES[0], label="Data")
        data = gr.Textbox(label="Release file (JSON, JSONL, parquet)", placeholder="path on this machine")
        images = gr.Textbox(label="Its images (folder or zip)")
        skip_missing = gr.Checkbox(label="Skip records whose images are missing")
    with gr.Row():
        base = gr.Textbox(value=settings.local_model or "", label="Base model folder",
                          placeholder="e.g. /models/Qwen2-VL-7B-Instruct or /models/MiniCPM-V-4.6")
        tiny = gr.Checkbox(label="Tiny smoke model (CPU, seconds; answers are noise)")
        preset = gr.Dropdown(list(PRESETS), value="mat-paper", label="Preset")
        out = gr.Textbox(value=default_out(settings), label="Output folder")
    with gr.Row():
        form = [
            gr.Number(defaults.epochs, label="Epochs", precision=0),
            gr.Number(defaults.learning_rate, label="Learning rate"),
            gr.Number(defaults.lora_r, label="LoRA rank", precision=0),
            gr.Number(0, label="Max steps (0: all)", precision=0),
            gr.Number(defaults.token_budget, label="Tokens per step", precision=0),
            gr.Dropdown(["varlen", "sdpa", "eager"], value=defaults.attention, label="Attention"),
            gr.Checkbox(defaults.gradient_checkpointing, label="Gradient checkpointing"),
            gr.Checkbox(defaults.merge, label="Also write a merged model"),
        ]
    extra = gr.Textbox(label="More flags", placeholder="--lora-dropout 0.1 --warmup-steps 10 (python -m train --help)")
    command = gr.Code(label="Command", language="shell", interactive=False)
    with gr.Row():
        launch = gr.Button("Launch", variant="primary")
        stop = gr.Button("Stop")
    status = gr.Markdown(elem_id="train-status")
    with gr.Row():
        loss_plot = gr.LinePlot(x="step", y="loss", title="Loss", height=260)
        speed_plot = gr.LinePlot(x="step", y="tokens_per_s", title="Tokens/s", height=260)
    runs_table = gr.Dataframe(headers=RUN_HEADERS, value=[], interactive=False, wrap=True, label="Runs")
    with gr.Row():
        run_pick = gr.Dropdown([], label="Finished run", scale=1)
        usage = gr.Code(label="Use in Chat, evaluate, serve", language="shell", interactive=False, scale=3)
    job_id = gr.State(None)
    timer = gr.Timer(REFRESH_SECONDS)
    inputs = [source, data, images, skip_missing, base, tiny, preset, out, *form, extra]

    def argv_of(*values):
        *head, extra_flags = values
        return form_argv(settings, *head, extra=extra_flags)

    def preview(*values):
        try:
            return command_text(argv_of(*values))
        except UserError as exc:
            return f"# {exc}"

    def preset_fields(name):
        config = build_config(name)
        return [config.epochs, config.learning_rate, config.lora_r, config.max_steps, config.token_budget,
                config.attention, config.gradient_checkpointing, config.merge]

    def start(current, *values):
        if current and jobs.get(store.db, current).running:
            gr.Warning("A training job is already running; stop it first.")
            return (current, *_refresh(current), gr.update())
        try:
            argv = argv_of(*values)
            validate(argv)
        except UserError as exc:
            gr.Warning(str(exc))
            return (current, *_refresh(current), gr.update())
        job = jobs.start(store.db, "train", argv)
        return (job.id, *_refresh(job.id), default_out(settings))

    def halt(current):
        if current and jobs.get(store.db, current).running:
            jobs.stop(store.db, current)
        else:
            gr.Warning("No training job is running.")
        return _refresh(current)

    def _refresh(current):
        text, loss, speed = job_view(store, current)
        rows = runs_rows(settings.db)
        finished = [row[0] for row in rows if row[1] == "done"]
        return text, loss, speed, rows, gr.update(choices=finished)

    def on_load():
        job = latest_job(store)
        current = job.id if job else None
        return (current, *_refresh(current))

    view = [status, loss_plot, speed_plot, runs_table, run_pick]
    for component in inputs:
        component.change(preview, inputs, command, api_name=False, show_progress="hidden")
    preset.change(preset_fields, preset, form, api_name=False).then(preview, inputs, command, api_name=False)
    tiny.input(lambda on, name: "tiny" if on else ("mat-paper" if name == "tiny" else name), [tiny, preset], preset,
               api_name=False)
    launch.click(start, [job_id, *inputs], [job_id, *view, out], api_name="train_launch")
    stop.click(halt, job_id, view, api_name="train_stop")
    timer.tick(_refresh, job_id, view, api_name="train_refresh", show_progress="hidden")
    run_pick.change(lambda rid: usage_text(settings.db, rid), run_pick, usage, api_name="train_usage")
    _load(gr, on_load, [job_id, *view], inputs, preview, command)


def _load(gr, on_load, outputs, inputs, preview, command) -> None:
    """Wire the page-load events of the enclosing Blocks: find the running job, show the command."""
    blocks = gr.context.Context.root_block
    blocks.load(on_load, None, outputs, api_name="train_load")
    blocks.load(preview, inputs, command, api_name=False)

