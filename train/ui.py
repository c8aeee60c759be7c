"""The Train tab: a form that builds the `python -m train` command, launched as a background job the page watches.

The page never runs training itself: `core.jobs.start` spawns the CLI, which writes progress lines, the run's
`metrics.jsonl` and its run record in the store; a timer reads them back, so a reload (or another browser) finds
the running job where it is. A stopped or failed run resumes with its own command, in its own folder, and its
plot shows the whole curve. A finished run opens in Chat (its adapter loaded into this app) or in Evaluate.
The method is SFT (the approved trajectories) or DPO (the preference pairs the review events give, from the base
or from an SFT adapter); a DPO run's reward accuracy and margin are plotted beside its loss.

The functions at the top are plain ones over the store's `Database` (tests and `bench/refresh_during_import.py`
call them); `lay_out` places the components (`TrainLayout`) and `wire_tab` attaches every handler through
`core.ui.wire`, so a refusal is a warning that leaves the page as it was.
"""

from __future__ import annotations

import json
import os
import shlex
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from agent.config import Settings
from core.db import Database
from core.errors import UserError
from core.ui import Links, wire
from train.presets import PRESETS, TrainConfig, build_config, check
from train.runs import TrainRun, get_run, list_runs

SOURCES = ("store: approved trajectories", "release file")
METHODS = ("SFT", "DPO")  # supervised tuning on approved trajectories; DPO on the review's preference pairs
DPO_PRESET = "sport-dpo"
FORM_FIELDS = ("epochs", "learning_rate", "lora_r", "max_steps", "token_budget", "attention",
               "gradient_checkpointing", "merge")
RUN_HEADERS = ["run", "status", "folder", "started", "base", "data", "examples", "steps", "last loss", "adapter"]
REFRESH_SECONDS = 2.0
RESUMABLE = ("stopped", "failed")


# ---------------------------------------------------------------- the command


def form_argv(settings: Settings, source: str, data: str, images: str, skip_missing: bool, base: str, tiny: bool,
              method: str, adapter: str, preset: str, out: str, *values: Any, extra: str = "") -> list[str]:
    """The CLI arguments (after `python`) for the form; fields equal to the preset's are left out."""
    argv = ["-m", "train"]
    if source == SOURCES[1]:
        argv += ["--data", data.strip()] + (["--images", images.strip()] if images.strip() else [])
    argv += ["--db", str(settings.db)]  # the run record goes to the app's store in both cases
    argv += ["--tiny"] if tiny else ["--base", base.strip()]
    argv += _method_flags(method, (adapter or "").strip(), source, build_config(preset))
    argv += ["--preset", preset, "--out", out.strip()]
    if skip_missing:
        argv.append("--skip-missing-images")
    return argv + _flags(dict(zip(FORM_FIELDS, values, strict=True)), build_config(preset)) + shlex.split(extra or "")


def _method_flags(method: str, adapter: str, source: str, preset: TrainConfig) -> list[str]:
    """`--method dpo` (with the SFT adapter it starts from), or `--method sft` where the preset is a DPO one."""
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; choose {' or '.join(METHODS)}")
    if method == "SFT":
        if adapter:
            raise UserError("an SFT adapter to start from is for DPO runs: choose DPO, or empty the adapter field")
        return ["--method", "sft"] if preset.method == "dpo" else []
    if source == SOURCES[1]:
        raise UserError("DPO trains on the preference pairs the store's review events give: choose the store as Data")
    return ["--method", "dpo"] + (["--adapter", adapter] if adapter else [])


def resume_argv(run: TrainRun, db: Path) -> list[str]:
    """The command that made `run`, from its recorded config: its folder, data and settings, so it resumes."""
    known = {field.name for field in fields(TrainConfig)}
    config = {name: value for name, value in run.run.config.items() if name in known}
    preset = config.pop("preset", "mat-paper")
    config.update(out=run.run.folder, db=config.get("db") or str(db))
    return ["-m", "train", "--preset", preset, *_flags(config, build_config(preset))]


def _flags(values: dict[str, Any], preset: TrainConfig) -> list[str]:
    """Flags for the values that differ from the preset's."""
    argv = []
    for name, value in values.items():
        if value is None or value == "" or value == getattr(preset, name):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, _number(value)]
    return argv


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
    if config.adapter and not (Path(config.adapter) / "adapter_config.json").is_file():
        raise UserError(f"no PEFT adapter at {config.adapter} (adapter_config.json missing): give an SFT run's "
                        "adapter folder, or leave it empty to start from the base")
    return config


def command_text(argv: list[str]) -> str:
    return "python " + " ".join(shlex.quote(a) for a in argv)


def default_out(settings: Settings) -> str:
    return str(settings.data_dir / "train" / time.strftime("run-%Y%m%d-%H%M%S"))


# ---------------------------------------------------------------- what the page shows


def latest_job(db: Database):
    """The newest training job (running or finished), or None."""
    from core import jobs

    listed = jobs.list_jobs(db, kind="train")
    running = [job for job in listed if job.running]
    return (running or listed or [None])[0]


def refresh(db: Database, job_id: str | None, pick: str | None = None) -> tuple:
    """What the timer shows: (status, loss frame, speed frame, runs table, run picker update, reward accuracy and
    reward margin plots, shown for a DPO run)."""
    import gradio as gr

    from core import jobs

    train_runs = list_runs(db)
    job = jobs.get(db, job_id) if job_id else None
    run = _run_of(job, train_runs) if job is not None else (train_runs[0] if train_runs else None)  # the newest
    events = _TAILS.rows(job.log_path) if job else []
    frame = curve(run, events)
    choices = [(f"{Path(r.run.folder or r.run.id).name} · {r.run.status} · {r.run.progress}", r.run.id)
               for r in train_runs]
    picker = gr.update(choices=choices) if pick is None else gr.update(choices=choices, value=pick)
    rewards = gr.update(value=frame, visible=is_dpo(frame))
    return job_status(job, run, events), frame, frame, runs_rows(train_runs), picker, rewards, rewards


def is_dpo(frame: Any) -> bool:
    """Whether the curve is a DPO run's: its metrics carry reward accuracy."""
    return bool(len(frame)) and frame["reward_accuracy"].notna().any()


def _run_of(job, train_runs: list[TrainRun]) -> TrainRun | None:
    """The run a job trains: the one it is recorded under, else (a resume still reading its data) its --out."""
    if job is None:
        return None
    by_job = next((r for r in train_runs if r.run.job_id == job.id), None)
    if by_job is not None or "--out" not in job.argv[:-1]:
        return by_job
    out = str(Path(job.argv[job.argv.index("--out") + 1]).resolve())
    return next((r for r in train_runs if r.run.folder == out), None)


def curve(run: TrainRun | None, events: list[dict]) -> Any:
    """Step, loss and tokens/s of the whole run (its metrics.jsonl, every step since the first, across resumes);
    before the run has metrics, what the job reported."""
    rows = _TAILS.rows(Path(run.metrics_path)) if run is not None else []
    return _TAILS.frame(rows) if rows else _frame([e for e in events if e.get("stage") == "train"])


CURVES = ("step", "loss", "tokens_per_s", "reward_accuracy", "reward_margin")  # what the plots draw, by step


def _frame(rows: list[dict]) -> Any:
    import pandas as pd

    numbers = {k: pd.Series([row.get(k) for row in rows], dtype="float64") for k in CURVES[3:]}  # None: NaN
    return pd.DataFrame({**{k: [row.get(k) for row in rows] for k in CURVES[:3]}, **numbers})


class _Tail:
    """JSON-lines files (a job's progress, a run's metrics) read as they grow: each read parses only the lines
    appended since the last one, so a refresh every two seconds costs the same at step 20,000 as at step 2. A file
    replaced (a resume rewrites metrics.jsonl) or cut shorter is read afresh; a half-written last line waits."""

    def __init__(self) -> None:
        self._seen: dict[Path, tuple[int, int, list[dict]]] = {}
        self._frames: dict[int, tuple[list[dict], Any]] = {}
        self._lock = threading.Lock()

    def rows(self, path: Path) -> list[dict]:
        try:
            stat = os.stat(path)
        except OSError:
            return []
        with self._lock:
            inode, offset, rows = self._seen.get(path, (stat.st_ino, 0, []))
        if inode != stat.st_ino or stat.st_size < offset:
            offset, rows = 0, []
        if stat.st_size > offset:
            with open(path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read(stat.st_size - offset)
            complete = chunk.rfind(b"\n") + 1
            rows = rows + [row for line in chunk[:complete].splitlines() if (row := _parsed(line)) is not None]
            offset += complete
        with self._lock:
            self._seen[path] = (stat.st_ino, offset, rows)
        return rows

    def frame(self, rows: list[dict]) -> Any:
        """The plot's frame of `rows` (a list `rows` returned), made once per list."""
        with self._lock:
            made = self._frames.get(id(rows))
        if made is not None and made[0] is rows:
            return made[1]
        frame = _frame(rows)
        with self._lock:
            current = {id(seen) for _, _, seen in self._seen.values()}
            self._frames = {key: value for key, value in self._frames.items() if key in current}
            self._frames[id(rows)] = (rows, frame)
        return frame


def _parsed(line: bytes) -> dict | None:
    try:
        row = json.loads(line)
    except ValueError:  # a line cut by a kill
        return None
    return row if isinstance(row, dict) else None


_TAILS = _Tail()


def job_status(job, run: TrainRun | None, events: list[dict]) -> str:
    """The job's state in a few lines: progress or how it ended, where its run is, what the data check found."""
    from core import jobs

    if job is None:
        if run is None:
            return "No training job yet."
        return (f"Newest run: **{run.run.status}** (run `{run.run.id}` · folder `{run.run.folder}`, started from the "
                "command line)")
    where = f" · folder `{run.run.folder}`" if run is not None else ""
    if job.running:
        latest = next((e for e in reversed(events) if e.get("stage") == "train"), None)
        stage = next((e for e in reversed(events) if e.get("message")), {})
        detail = (f"step {latest['step']}/{latest['steps']} · loss {latest['loss']:.4f} · "
                  f"{latest['tokens_per_s']:,.0f} tokens/s") if latest else stage.get("message", "starting")
        text = f"**running** (job `{job.id}`{where}): {detail}"
    elif jobs.state(job) == "stopping":
        text = f"**stopping** (job `{job.id}`{where}): saving the step it was in…"
    else:
        text = f"**{job.status}** (job `{job.id}`{where})" + (f": {job.message}" if job.message else "")
        if job.status in RESUMABLE and run is not None:
            text += "\n\nPick the run below and press **Resume** to continue it where it stopped."
        if job.status == "failed":
            text += "\n\n```\n" + jobs.output_tail(job, 6) + "\n```"
    checks = [e["contamination"] for e in events if e.get("contamination")]
    return text + "".join(f"\n\n- {line}" for line in checks)


def runs_rows(train_runs: list[TrainRun]) -> list[list[Any]]:
    return [[r.run.id, r.run.status, r.run.folder or "", r.run.started_at.replace("T", " ")[:19],
             Path(r.base_model).name, r.data, r.examples, r.run.progress,
             None if r.last_loss is None else round(r.last_loss, 4), r.adapter_dir or ""] for r in train_runs]


def usage_text(db: Database, run_id: str | None) -> str:
    """How to use a finished run's adapter elsewhere: another app, an evaluation from the shell, vLLM."""
    run = get_run(db, run_id) if run_id else None
    if run is None:
        return "# pick a run"
    if run.run.status != "done" or not run.adapter_dir:
        hint = ": press Resume to continue it" if run.run.status in RESUMABLE else ""
        return f"# run {run.run.id} is {run.run.status}{hint}; no adapter yet"
    base, adapter = shlex.quote(run.base_model), shlex.quote(run.adapter_dir)
    return (f"# Use in Chat loads it into this app; in another app:\nMAT_LOCAL_MODEL={base} MAT_ADAPTER={adapter} "
            f"python app.py\n\n# evaluate on GTA\npython -m eval gta --data GTA_DIR --db {shlex.quote(str(db.path))} "
            f"--local-model {base} --adapter {adapter}\n\n"
            f"# serve with vLLM\nvllm serve {base} --enable-lora --max-lora-rank {run.run.config.get('lora_r', 64)} "
            f"--lora-modules mat={adapter}")


# ---------------------------------------------------------------- what the buttons do


def launch(db: Database, argv: list[str]) -> str:
    """Start a training job for `argv`; returns its id. Refused while another runs, or when the CLI would refuse."""
    from core import jobs

    _refuse_if_running(db)
    validate(argv)
    return jobs.start(db, "train", argv).id


def resume(db: Database, run_id: str | None) -> str:
    """Run a stopped or failed run's own command again: same folder, same inputs; it continues from its last
    checkpoint. Returns the new job's id."""
    run = _picked(db, run_id)
    if run.run.status not in RESUMABLE:
        raise UserError(f"run {_name(run)} is {run.run.status}: only a stopped or failed run resumes")
    return launch(db, resume_argv(run, db.path))


def halt(db: Database, job_id: str | None) -> str | None:
    """Stop the running job; returns the run it was training (to pick for Resume)."""
    from core import jobs

    job = jobs.get(db, job_id) if job_id else None
    if job is None or not job.running:
        raise UserError("No training job is running.")
    jobs.stop(db, job.id)
    run = _run_of(job, list_runs(db))
    return run.run.id if run is not None else None


def adapter_address(db: Database, run_id: str | None) -> dict[str, str]:
    """Where Chat and Evaluate find a finished run's model: its base and its adapter folder."""
    run = _picked(db, run_id)
    if run.run.status != "done" or not run.adapter_dir:
        raise UserError(f"run {_name(run)} is {run.run.status}: it has no adapter yet"
                        + (" (Resume continues it)" if run.run.status in RESUMABLE else ""))
    if not Path(run.adapter_dir).is_dir():
        raise UserError(f"the adapter of run {_name(run)} is gone from {run.adapter_dir}")
    return {"local_model": run.base_model, "adapter": run.adapter_dir}


def _picked(db: Database, run_id: str | None) -> TrainRun:
    run = get_run(db, run_id) if run_id else None
    if run is None:
        raise UserError("pick a run in the list first")
    return run


def _name(run: TrainRun) -> str:
    return Path(run.run.folder or run.run.id).name


def _refuse_if_running(db: Database) -> None:
    from core import jobs

    job = latest_job(db)
    if job is not None and job.running:
        raise UserError("A training job is already running; stop it first.")
    if job is not None and jobs.busy(job):
        raise UserError("The stopped training job is still saving its last step; start again in a moment.")


# ---------------------------------------------------------------- the page


@dataclass
class TrainLayout:
    """The Train tab's components."""

    source: Any
    data: Any
    images: Any
    skip_missing: Any
    base: Any
    tiny: Any
    method: Any
    adapter: Any
    preset: Any
    out: Any
    form: list[Any]
    extra: Any
    command: Any
    launch: Any
    stop: Any
    status: Any
    loss_plot: Any
    speed_plot: Any
    accuracy_plot: Any
    margin_plot: Any
    runs_table: Any
    run_pick: Any
    resume: Any
    use_in_chat: Any
    evaluate: Any
    usage: Any
    job_id: Any
    timer: Any

    @property
    def inputs(self) -> list[Any]:
        """The form, in `form_argv`'s order."""
        return [self.source, self.data, self.images, self.skip_missing, self.base, self.tiny, self.method,
                self.adapter, self.preset, self.out, *self.form, self.extra]

    @property
    def view(self) -> list[Any]:
        """What `refresh` fills."""
        return [self.status, self.loss_plot, self.speed_plot, self.runs_table, self.run_pick, self.accuracy_plot,
                self.margin_plot]


def build_train_tab(settings: Settings, links: Links | None = None) -> TrainLayout:
    """Lay out the Train tab inside the caller's `gr.Tab`; jobs and runs live in the store at `settings.db`."""
    layout = lay_out(settings, linked=links is not None)
    wire_tab(layout, Database(settings.db), settings, links)
    return layout


def lay_out(settings: Settings, linked: bool = True) -> TrainLayout:
    import gradio as gr

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
        method = gr.Radio(list(METHODS), value=METHODS[0], label="Method: SFT on approved trajectories, or DPO on "
                          "the review's preference pairs", elem_id="train-method")
        adapter = gr.Textbox(label="SFT adapter to start DPO from (empty: the base)", elem_id="train-adapter",
                             placeholder="an SFT run's OUT/adapter folder")
    form = _form_fields(build_config("mat-paper"))
    extra = gr.Textbox(label="More flags", placeholder="--exclude-benchmark gta,gaia --warmup-steps 10 "
                                                       "(python -m train --help)")
    command = gr.Code(label="Command", language="shell", interactive=False)
    with gr.Row():
        launch_button = gr.Button("Launch", variant="primary")
        stop = gr.Button("Stop")
    status = gr.Markdown(elem_id="train-status")
    with gr.Row():
        loss_plot = gr.LinePlot(x="step", y="loss", title="Loss", height=260)
        speed_plot = gr.LinePlot(x="step", y="tokens_per_s", title="Tokens/s", height=260)
    with gr.Row():
        accuracy_plot = gr.LinePlot(x="step", y="reward_accuracy", title="Reward accuracy (DPO)", height=260,
                                    visible=False, elem_id="train-reward-accuracy")
        margin_plot = gr.LinePlot(x="step", y="reward_margin", title="Reward margin (DPO)", height=260, visible=False,
                                  elem_id="train-reward-margin")
    runs_table = gr.Dataframe(headers=RUN_HEADERS, value=[], interactive=False, wrap=True, label="Runs")
    with gr.Row():
        with gr.Column(scale=1):
            run_pick = gr.Dropdown([], label="Run", elem_id="train-run-pick")
            resume_button = gr.Button("Resume", elem_id="train-resume")
            use_in_chat = gr.Button("Use in Chat", visible=linked, elem_id="train-use-in-chat")
            evaluate = gr.Button("Evaluate", visible=linked, elem_id="train-evaluate")
        usage = gr.Code(label="Use the adapter elsewhere", language="shell", interactive=False, scale=3)
    return TrainLayout(source, data, images, skip_missing, base, tiny, method, adapter, preset, out, form, extra,
                       command, launch_button, stop, status, loss_plot, speed_plot, accuracy_plot, margin_plot,
                       runs_table, run_pick, resume_button, use_in_chat, evaluate, usage, gr.State(None),
                       gr.Timer(REFRESH_SECONDS))


def _form_fields(defaults: TrainConfig) -> list[Any]:
    """The preset's fields, in FORM_FIELDS order."""
    import gradio as gr

    with gr.Row():
        return [
            gr.Number(defaults.epochs, label="Epochs", precision=0),
            gr.Number(defaults.learning_rate, label="Learning rate"),
            gr.Number(defaults.lora_r, label="LoRA rank", precision=0),
            gr.Number(0, label="Max steps (0: all)", precision=0),
            gr.Number(defaults.token_budget, label="Tokens per step", precision=0),
            gr.Dropdown(["varlen", "sdpa", "eager"], value=defaults.attention, label="Attention"),
            gr.Checkbox(defaults.gradient_checkpointing, label="Gradient checkpointing"),
            gr.Checkbox(defaults.merge, label="Also write a merged model"),
        ]


def wire_tab(ui: TrainLayout, db: Database, settings: Settings, links: Links | None) -> None:
    """Attach every handler of the tab (through `core.ui.wire`)."""
    import gradio as gr

    def argv_of(*values):
        *head, extra = values
        return form_argv(settings, *head, extra=extra)

    def preview(*values):
        try:
            return command_text(argv_of(*values))
        except UserError as exc:
            return f"# {exc}"

    def start(*values):
        job_id = launch(db, argv_of(*values))
        return (job_id, *refresh(db, job_id), default_out(settings))

    def restart(run_id):
        job_id = resume(db, run_id)
        return (job_id, *refresh(db, job_id, pick=run_id))

    def on_load():
        job = latest_job(db)
        return (job.id if job else None, *refresh(db, job.id if job else None))

    for component in ui.inputs:
        wire(component.change, preview, ui.inputs, ui.command, show_progress="hidden")
    wire(wire(ui.preset.change, _preset_values, ui.preset, ui.form).then, preview, ui.inputs, ui.command)
    wire(ui.tiny.input, _tiny_preset, [ui.tiny, ui.preset], ui.preset)
    wire(ui.method.input, _method_preset, [ui.method, ui.tiny, ui.preset, ui.source], [ui.preset, ui.source])
    wire(ui.launch.click, start, ui.inputs, [ui.job_id, *ui.view, ui.out], "train_launch")
    wire(ui.stop.click, lambda job_id: refresh(db, job_id, pick=halt(db, job_id)), ui.job_id, ui.view, "train_stop")
    wire(ui.resume.click, restart, ui.run_pick, [ui.job_id, *ui.view], "train_resume")
    wire(ui.timer.tick, lambda job_id: refresh(db, job_id), ui.job_id, ui.view, "train_refresh",
         show_progress="hidden")
    wire(ui.run_pick.change, lambda run_id: usage_text(db, run_id), ui.run_pick, ui.usage, "train_usage")
    if links is not None:
        for button, tab, name in ((ui.use_in_chat, "chat", "train_use_in_chat"),
                                  (ui.evaluate, "evaluate", "train_evaluate")):
            wire(button.click, lambda run_id, tab=tab: links.go(tab, **adapter_address(db, run_id)), ui.run_pick,
                 links.outputs(tab), name)
    page = gr.context.Context.root_block
    wire(page.load, on_load, None, [ui.job_id, *ui.view], "train_load")
    wire(page.load, preview, ui.inputs, ui.command)


def _preset_values(name: str) -> list[Any]:
    config = build_config(name)
    return [getattr(config, field) for field in FORM_FIELDS]


def _tiny_preset(on: bool, name: str) -> str:
    return "tiny" if on else ("mat-paper" if name == "tiny" else name)


def _method_preset(method: str, tiny: bool, name: str, source: str) -> tuple[str, str]:
    """DPO starts from SPORT's recipe (the tiny one stays for the smoke model) and trains on the store's pairs."""
    if method == "DPO":
        return ("tiny" if tiny else DPO_PRESET), SOURCES[0]
    return ("mat-paper" if name == DPO_PRESET else name), source
