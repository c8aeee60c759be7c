"""LoRA training of the controller on MM-Traj, resumable, on one process or several through `accelerate`.

The order of work: check the output folder (ours or empty, and writable) and open the store the run is recorded in,
read and check every record and image (`train.cache.scan`; benchmark tasks refused or left out,
`train.contamination`), encode token ids and labels once into the on-disk cache (a bad record stops here, before any
model is loaded), check the run's identity against the folder, record the run, load the base model, wrap it with
LoRA on the language model only, then train. Qwen2-VL and Qwen2.5-VL train on packed rows (`train.packing`, each
trajectory attending only to itself); MiniCPM-V 4.6/4.7 on padded batches (`train.padding`, one trajectory per row,
an attention mask). An optimizer step takes `token_budget / row_tokens` rows over all processes, each process its
share, accumulated through `accelerator.accumulate`; pixels are built per step in DataLoader workers
(`train.stream`). The loss of a step is a weighted sum over its assistant tokens fixed by the plan (`train.loss`),
so one process and many compute the same loss and gradients. Checkpoints hold the trainable weights, optimizer,
schedule, RNG and step, so a run killed at any moment resumes from its last checkpoint on the same loss curve; a
checkpoint or adapter that cannot be written whole (a full disk) is removed, never half-kept (`train.disk`).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from core.files import atomic_folder, atomic_write
from train import disk, identity
from train.cache import TokenCache
from train.data import DataError
from train.packing import Batch, add_rope_positions, pack, plan_rows
from train.padding import pad, padding_fraction, plan_batches
from train.presets import TrainConfig, check, check_world
from train.stream import Item

LATEST = "latest"  # file naming the newest complete checkpoint folder
VISION_PARTS = ("visual", "vision_tower", "merger")  # module names of the vision towers and their projectors


@dataclass
class Result:
    out: Path
    adapter: Path
    merged: Path | None
    steps: int
    last_loss: float | None
    run_id: str | None


@dataclass
class Prepared:
    """The encoded data set and what the run needs to know about it."""

    cache: TokenCache
    description: str
    base: str
    data_key: str
    settings_key: str


@dataclass(frozen=True)
class Method:
    """What supervised tuning (`SFT`, below) and DPO (`train.dpo`) each do; the run around them is the same."""

    prepare_data: Callable[..., Prepared]  # (config, log): read, check and encode before any model loads
    load_model: Callable[..., Any]  # (base, config, dtype): the model with its trainable adapter
    layout: Callable[..., tuple[list[list[int]], Callable[..., Batch]]]  # the rows and their collate
    items: Callable[..., list[Item]]  # (steps, cache, config, rank, world): this process's rows and weights
    loss: Callable[..., tuple[Any, Any]]  # (model, inputs, labels, weights, batch): a row's loss, its figures
    metrics: Callable[[list[float]], dict[str, Any]]  # the summed figures of a step, as metrics
    save: Callable[..., tuple[Path, Path | None]]  # (out, model, processor, config, accelerator): the outputs


def method_of(config: TrainConfig) -> Method:
    """`--method`: sft (the default) or dpo."""
    if config.method == "dpo":
        from train import dpo

        return dpo.method(config)
    if config.method != "sft":
        raise DataError(f"--method must be sft or dpo, not {config.method!r}")
    if config.adapter:
        raise DataError("--adapter (an SFT adapter to start from) is for --method dpo")
    return SFT


# ---------------------------------------------------------------- setup


def base_model_path(config: TrainConfig) -> str:
    """The base checkpoint: `--base`, or with `--tiny` a tiny Qwen2-VL built into the output folder."""
    if config.tiny and not config.base:
        from agent.models.tiny import build_tiny_qwen2vl

        return str(build_tiny_qwen2vl(Path(config.out) / "tiny-base"))
    return config.base


def iter_records(config: TrainConfig):
    """The run's records, one at a time: a release file's, or the store's approved trajectories."""
    from train.data import iter_release, iter_store

    return iter_release(config.data, config.images or None) if config.data else iter_store(config.db)


def describe_data(config: TrainConfig) -> str:
    return str(config.data) if config.data else f"{config.db} (approved)"


def image_reader(config: TrainConfig):
    """Where the run's images are read (every process opens its own)."""
    from train.data import FileReader, _raw_records

    if config.data and config.images:
        from review.formats import ImageSource

        return ImageSource(Path(config.images))
    if config.data:
        return _raw_records(Path(config.data))[1]
    return FileReader()


def base_model_type(base: str) -> str:
    """The checkpoint's model type; a model the agent cannot serve is refused with one line, as it cannot be
    trained either (MiniCPM-V 2.x: remote code, which we do not run)."""
    from agent.models import ModelError, model_type

    path = Path(base)
    if not path.is_dir():
        raise DataError(f"base model not found: {base} — give a local checkpoint folder")
    try:
        return model_type(path)
    except ModelError as exc:
        raise DataError(str(exc)) from None


def load_processor(base: str):
    """The processor the local backend serves the checkpoint with (train = serve)."""
    from agent.models import ModelError
    from agent.models import load_processor as serving_processor

    kind = base_model_type(base)
    try:
        return serving_processor(Path(base), kind)
    except ModelError as exc:
        raise DataError(str(exc)) from None


def packs_rows(base: str) -> bool:
    """Whether the model trains on packed rows (Qwen2-VL family) or on padded batches (MiniCPM-V)."""
    from agent.models import QWEN_TYPES

    return base_model_type(base) in QWEN_TYPES


def pick_dtype(config: TrainConfig, device):
    import torch

    if config.dtype != "auto":
        return getattr(torch, config.dtype)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_model(base: str, config: TrainConfig, dtype):
    """The base model with `config.attention` on its language model and LoRA on `config.lora_target`."""
    return prepare_for_training(load_base(base, config, dtype), config, Path(base).name)


def load_base(base: str, config: TrainConfig, dtype):
    """The base model with `config.attention` on its language model, as it is before LoRA."""
    from transformers import AutoModelForImageTextToText

    names = attention_names(config, packed=packs_rows(base))
    return AutoModelForImageTextToText.from_pretrained(base, dtype=dtype, attn_implementation=names)


def attention_names(config: TrainConfig, packed: bool = True) -> dict[str, str]:
    """attn_implementation for the language model (`config.attention`) and the vision tower.

    Padded batches carry an attention mask, so `varlen` (packed rows only) becomes sdpa there."""
    from train import attention

    text = config.attention
    if config.attention == "varlen":
        text = attention.register() if packed else "sdpa"
    return {"text_config": text, "vision_config": "eager" if config.attention == "eager" else "sdpa"}


def prepare_for_training(model, config: TrainConfig, label: str = "the model"):
    """No cache, optional checkpointing, LoRA on `config.lora_target` (never the vision tower)."""
    from peft import LoraConfig, get_peft_model

    model.config.use_cache = False
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.lora_target, bias="none", task_type="CAUSAL_LM",
                      modules_to_save=[m.strip() for m in config.modules_to_save.split(",") if m.strip()] or None)
    model = get_peft_model(model, lora)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise DataError(f"--lora-target {config.lora_target!r} matches no module of {label}")
    if any(part in name for name in trainable for part in VISION_PARTS):
        raise DataError(f"--lora-target {config.lora_target!r} reaches the vision tower; it must stay frozen")
    return model


# ---------------------------------------------------------------- the plan of steps


@dataclass
class Step:
    """One optimizer step: its rows (each a list of example indices) over all processes; rows past `real` only
    fill the run's last step to a full one (their loss weight is 0)."""

    rows: list[list[int]]
    real: int


def plan_steps(rows: list[list[int]], config: TrainConfig) -> list[Step]:
    """Every optimizer step of the run: the epochs' shuffled rows one after another, `rows_per_step` at a time,
    so each row is trained once per epoch whatever the number of processes; the last step is filled up."""
    order: list[list[int]] = []
    for epoch in range(config.epochs):
        shuffled = list(rows)
        random.Random(config.seed * 1000 + epoch).shuffle(shuffled)
        order += shuffled
    per_step = config.rows_per_step
    steps = [Step(order[i:i + per_step], min(per_step, len(order) - i)) for i in range(0, len(order), per_step)]
    last = steps[-1]
    while len(last.rows) < per_step:
        last.rows.append(last.rows[len(last.rows) % last.real])
    return steps[: config.max_steps] if config.max_steps else steps


def process_items(steps: list[Step], label_tokens: list[int], normalization: str, rank: int, world: int
                  ) -> list[Item]:
    """This process's rows of every step (rows `rank`, `rank + world`, ...) with each example's loss weight."""
    from train.loss import example_weights

    items = []
    for step in steps:
        real = [index for row in step.rows[: step.real] for index in row]
        weights = iter(example_weights([label_tokens[i] for i in real], normalization))
        per_row = [[next(weights) for _ in row] for row in step.rows[: step.real]]
        for position in range(rank, len(step.rows), world):
            row = step.rows[position]
            filler = position >= step.real
            items.append(Item(row, [0.0] * len(row) if filler else per_row[position], filler))
    return items


# ---------------------------------------------------------------- checkpoints


def _replicated(accelerator) -> bool:
    """Whether every process holds the whole model and optimizer (one process, DDP) rather than shards."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def _trainable_state(model) -> dict:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def _rng_state() -> dict:
    import torch

    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def save_checkpoint(out: Path, step: int, run: str, model, optimizer, scheduler, accelerator) -> None:
    """Write checkpoint-<step>/, point `latest` at it (atomically), then drop this run's older checkpoints.

    A checkpoint cut short (a full disk, a kill) is never pointed at; one that fails here is removed."""
    folder = out / f"checkpoint-{step}"
    try:
        with disk.writing(folder):
            _write_checkpoint(folder, step, run, model, optimizer, scheduler, accelerator)
    except BaseException:
        if latest_checkpoint(out, run) != folder:
            _remove_tree(folder)
        raise
    if accelerator.is_main_process:
        for old in out.glob("checkpoint-*"):
            if old != folder and _checkpoint_run(old) == run:
                _remove_tree(old)


def _write_checkpoint(folder: Path, step: int, run: str, model, optimizer, scheduler, accelerator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if not _replicated(accelerator):  # FSDP / DeepSpeed shard their state; accelerate saves the shards
        accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        state = {"step": step, "scheduler": scheduler.state_dict()}
        if _replicated(accelerator):
            state.update(trainable=_trainable_state(accelerator.unwrap_model(model)),
                         optimizer=optimizer.state_dict())
        _save_tensors(state, folder / "state.pt")
    _save_tensors(_rng_state(), folder / f"rng-{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (folder / "step.json").write_text(json.dumps({"step": step, "run": run}))
        with atomic_write(folder.parent / LATEST) as pointer:
            pointer.write(folder.name)


def _save_tensors(state: dict, path: Path) -> None:
    """torch.save through Python's own file writes, so a full disk is an OSError (torch's writer reports it as a
    RuntimeError about file positions)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.write_bytes(buffer.getbuffer())


def _checkpoint_run(folder: Path) -> str | None:
    try:
        return json.loads((folder / "step.json").read_text()).get("run")
    except (OSError, ValueError):
        return None


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def latest_checkpoint(out: Path, run: str) -> Path | None:
    """This run's newest complete checkpoint."""
    pointer = out / LATEST
    if not pointer.is_file():
        return None
    folder = out / pointer.read_text().strip()
    return folder if _checkpoint_run(folder) == run else None


def load_checkpoint(folder: Path, model, optimizer, scheduler, accelerator) -> int:
    """Restore a checkpoint (tensors and plain data only: `weights_only=True`); returns the steps already done."""
    import torch

    if not _replicated(accelerator):
        accelerator.load_state(str(folder))
    state = torch.load(folder / "state.pt", weights_only=True)
    if _replicated(accelerator):
        result = accelerator.unwrap_model(model).load_state_dict(state["trainable"], strict=False)
        if result.unexpected_keys:
            raise DataError(f"checkpoint {folder} does not fit this model (e.g. {result.unexpected_keys[0]}); "
                            "use a new --out")
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng_file = folder / f"rng-{accelerator.process_index}.pt"
    if rng_file.is_file():
        rng = torch.load(rng_file, weights_only=True)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
    return int(state["step"])


# ---------------------------------------------------------------- metrics


class Metrics:
    """metrics.jsonl (one line per step; on resume, lines past the checkpoint are dropped), TensorBoard optional."""

    def __init__(self, out: Path, resumed_step: int, tensorboard: bool) -> None:
        self.path = out / "metrics.jsonl"
        kept = []
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill
                    continue
                if row.get("step", 0) <= resumed_step:
                    kept.append(line)
        with disk.writing(self.path), atomic_write(self.path) as handle:
            handle.write("".join(line + "\n" for line in kept))
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise DataError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
            self.writer = SummaryWriter(str(out / "tensorboard"))

    def write(self, row: dict[str, Any]) -> None:
        with disk.writing(self.path), self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"train/{key}", value, row["step"])
            self.writer.flush()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The metrics lines of a run (lines cut by a kill skipped)."""
    rows = []
    path = Path(path)
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


# ---------------------------------------------------------------- the run


def prepare_data(config: TrainConfig, log: Callable[[str], None]) -> Prepared:
    """Read, check and encode everything before any model is loaded (or, with --tiny, built): a scan of every
    record and image (benchmark tasks refused or left out, `train.contamination`), then the token cache (built
    once per content and settings, else found)."""
    from tqdm import tqdm

    from core.jobs import progress
    from train import cache
    from train.contamination import guard_for
    from train.data import Encoder

    description = describe_data(config)
    guard = guard_for(store_path(config) or _default_store(), config.exclude_benchmark)
    try:
        found = cache.scan(guard.filter(iter_records(config)), skip_missing_images=config.skip_missing_images,
                           where=description)
    finally:
        if guard.dropped is not None:  # every record was read: say what the check found, even if none is left
            for line in guard.report():
                log(line)
                progress(stage="data", contamination=line)
    base = base_model_path(config)
    processor = load_processor(base)
    settings = cache.settings_key(base, max_pixels=config.max_pixels, max_length=config.max_length,
                                  overlong=config.overlong)
    folder = found.folder(Path(config.cache_dir) if config.cache_dir else cache.default_root(), settings)
    encoded = cache.find(folder)
    if encoded is None:
        encoder = Encoder(processor, max_pixels=config.max_pixels, max_length=config.max_length,
                          overlong=config.overlong)
        with tqdm(total=found.records, desc="encode", unit="record", dynamic_ncols=True) as bar, \
                disk.writing(folder):
            encoded = cache.build(folder, guard.filter(iter_records(config)), encoder.encode, found,
                                  max_length=config.max_length, progress=lambda n: bar.update(1))
    else:
        log(f"encoded data found in {folder}")
    log(encoded.description())
    return Prepared(encoded, description, base, found.key, settings)


def _default_store() -> str:
    """The app's store (MAT_DB, else data/mat.db), whose benchmarks a run without --db is checked against."""
    from agent.config import Settings

    return str(Settings().db)


def on_main(accelerator, work: Callable[[], Any]) -> Any:
    """`work()` on the main process, its result (or its one-line refusal) handed to every process."""
    if accelerator.num_processes == 1:
        return work()
    from accelerate.utils import broadcast_object_list

    box: list[Any] = [None, None]
    if accelerator.is_main_process:
        try:
            box = [work(), None]
        except (DataError, ValueError) as exc:
            box = [None, (type(exc).__name__, str(exc))]
    broadcast_object_list(box)
    if box[1] is not None:
        raise (DataError if box[1][0] == "DataError" else ValueError)(box[1][1])
    return box[0]


def train(config: TrainConfig, log: Callable[[str], None] = print) -> Result:
    """Run (or resume) a training run as `config` says; returns where its outputs are.

    Before any work: the output folder is checked (ours or empty, writable) and the store the run is recorded in
    is opened, so a read-only folder or database is refused before anything is written."""
    import torch
    from accelerate import Accelerator

    from core.jobs import progress
    from train import runs

    check(config)
    out = Path(config.out).resolve()
    identity.check_out(out)
    disk.check_writable(out)
    database = runs.open_database(store_path(config))
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    per_process = check_world(config, accelerator.num_processes)
    if config.merge and not _replicated(accelerator):
        raise ValueError("--merge needs the whole model in one process: merge the adapter after an FSDP or "
                         "DeepSpeed run with a one-process run of --merge, or with peft's merge_and_unload")
    accelerator.gradient_accumulation_steps = per_process
    progress(stage="data", message="reading and encoding the data")
    method = method_of(config)
    prepared = on_main(accelerator, lambda: method.prepare_data(config, log))
    if not accelerator.is_main_process:
        prepared.cache = TokenCache(prepared.cache.folder)
    current = identity.fingerprint(config, prepared.data_key, prepared.settings_key)
    with identity.hold(out, accelerator.is_main_process):  # before the folder is claimed, until the run ends
        with disk.writing(out):
            run = on_main(accelerator, lambda: identity.claim(out, current))
        processor = load_processor(prepared.base)
        rows, collate = method.layout(packs_rows(prepared.base), prepared.cache, processor, config, accelerator.device,
                                      log)
        steps = plan_steps(rows, config)
        record = None
        if database is not None and accelerator.is_main_process:
            record = runs.record_start(database, out_dir=out, base_model=prepared.base, data=prepared.description,
                                       examples=len(prepared.cache), steps_total=len(steps),
                                       config=_portable(config).to_dict(), fingerprint=current["key"])
        try:
            result = _run(config, method, out, run, prepared, processor, (rows, collate, steps), accelerator,
                          per_process, log,
                          lambda **fields: runs.record_update(database, record, **fields) if record else None)
        except KeyboardInterrupt:
            if record:
                runs.record_update(database, record, status="stopped", message="stopped; run the same command to resume")
            raise
        except BaseException as exc:
            if record:
                runs.record_update(database, record, status="failed", message=_failure(exc))
            raise
        if record:
            runs.record_update(database, record, status="done", adapter_dir=str(result.adapter),
                               merged_dir=str(result.merged) if result.merged else None, last_loss=result.last_loss,
                               steps_done=result.steps)
        result.run_id = record
        return result


def _run(config: TrainConfig, method: Method, out: Path, run: str, prepared: Prepared, processor, plan, accelerator,
         per_process: int, log: Callable[[str], None], record: Callable[..., None]) -> Result:
    """Load the model, restore the last checkpoint, train the remaining steps, write the adapter."""
    import torch
    from transformers import get_scheduler

    from core.jobs import progress
    from train.stream import Rows, loader

    rows, collate, steps = plan
    cache = prepared.cache
    dtype = pick_dtype(config, accelerator.device)
    progress(stage="model", message=f"loading {Path(prepared.base).name} ({str(dtype).removeprefix('torch.')})")
    torch.manual_seed(config.seed)
    model = method.load_model(prepared.base, config, dtype)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay,
                                  betas=(config.adam_beta1, config.adam_beta2))
    scheduler = get_scheduler(config.scheduler, optimizer, num_warmup_steps=config.warmup(len(steps)),
                              num_training_steps=len(steps))
    _fill_deepspeed_config(accelerator, config)
    model, optimizer = accelerator.prepare(model, optimizer)  # the schedule steps once per optimizer step: ours
    checkpoint = latest_checkpoint(out, run)
    done = load_checkpoint(checkpoint, model, optimizer, scheduler, accelerator) if checkpoint else 0
    if done:
        log(f"resuming from {checkpoint.name}: {done} of {len(steps)} steps done")
    metrics = None
    if accelerator.is_main_process:
        with disk.writing(out / "train_config.json"), atomic_write(out / "train_config.json") as handle:
            handle.write(json.dumps(config.to_dict(), indent=2))
        metrics = Metrics(out, done, config.tensorboard)
    items = method.items(steps[done:], cache, config, accelerator.process_index, accelerator.num_processes)
    batches = iter(loader(Rows(cache, image_reader(config), processor, config.max_pixels, items),
                          config.data_workers))
    last_loss, rope = None, packs_rows(prepared.base)
    model.train()
    with _progress_bar(len(steps), done, accelerator.is_main_process) as bar:
        for index in range(done, len(steps)):
            row = _train_step(model, optimizer, scheduler, accelerator, config, batches, per_process, collate, rope,
                              method)
            last_loss = row["loss"]
            epoch = min((index + 1) * config.rows_per_step / len(rows), config.epochs)
            row = {"step": index + 1, "epoch": round(epoch, 4), **row}
            if metrics is not None:
                metrics.write(row)
            progress(stage="train", step=index + 1, steps=len(steps), loss=row["loss"], lr=row["lr"],
                     tokens_per_s=row["tokens_per_s"], padding_fraction=row["padding_fraction"])
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", tok_s=f"{row['tokens_per_s']:.0f}")
            if (index + 1) % config.save_every == 0 or index + 1 == len(steps):
                save_checkpoint(out, index + 1, run, model, optimizer, scheduler, accelerator)
                record(steps_done=index + 1, last_loss=last_loss)
    progress(stage="save", message="writing the adapter")
    adapter, merged = method.save(out, model, processor, config, accelerator)
    if accelerator.is_main_process:
        log(f"adapter written to {adapter}" + (f"; merged model in {merged}" if merged else ""))
    return Result(out, adapter, merged, len(steps), last_loss, None)


def store_path(config: TrainConfig) -> str | None:
    """The store the run is recorded in: --db, else MAT_DB (set for the Train tab's jobs); None for neither."""
    return config.db or os.environ.get("MAT_DB") or None


def _portable(config: TrainConfig) -> TrainConfig:
    """The config with its paths absolute, so that the run's command works again from any folder (a resume)."""
    from dataclasses import replace

    paths = {name: str(Path(value).resolve()) for name in ("base", "out", "data", "images", "db", "cache_dir")
             if (value := getattr(config, name)) and Path(value).exists()}
    return replace(config, **paths)


def _failure(exc: BaseException) -> str:
    """How a run failed, in one line for its record."""
    from core.cli import describe
    from core.ui import one_line

    return (describe(exc) if isinstance(exc, OSError) else one_line(exc))[:500]


def _fill_deepspeed_config(accelerator, config: TrainConfig) -> None:
    """DeepSpeed's `auto` fields from the run: one row per micro-batch, our gradient clipping (accumulation comes
    from the accelerator, so the engine steps once per optimizer step)."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None:
        return
    settings = plugin.deepspeed_config
    if settings.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        settings["train_micro_batch_size_per_gpu"] = 1
    if settings.get("gradient_clipping", "auto") == "auto":
        settings["gradient_clipping"] = config.max_grad_norm


def _layout(packed: bool, cache: TokenCache, processor, config: TrainConfig, device, log: Callable[[str], None]):
    """(rows, collate): packed rows of `row_tokens` for the Qwen2-VL family, else length-grouped padded batches of
    at most `row_tokens` tokens (padding included), from the examples' lengths alone."""
    lengths = cache.lengths
    if packed:
        return plan_rows(lengths, config.row_tokens), collate_for(packed, processor, device)
    rows = plan_batches(lengths, config.row_tokens)
    log(f"{len(rows)} length-grouped batches of at most {config.row_tokens:,} tokens, one trajectory per row; "
        f"padding {padding_fraction(lengths, rows):.1%}")
    return rows, collate_for(packed, processor, device)


def collate_for(packed: bool, processor, device) -> Callable[..., Batch]:
    """Examples -> one packed row (Qwen2-VL family) or one padded batch (MiniCPM-V)."""
    pad_id = processor.tokenizer.pad_token_id or 0
    pad_multiple = 64 if device.type == "cuda" else 1
    if packed:
        return partial(pack, pad_id=pad_id, pad_to_multiple=pad_multiple)
    with_types = "mm_token_type_ids" in processor.model_input_names
    return partial(pad, pad_id=pad_id, pad_to_multiple=pad_multiple, with_types=with_types)


def _progress_bar(total: int, done: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="train", unit="step", disable=not enabled, dynamic_ncols=True)


def _train_step(model, optimizer, scheduler, accelerator, config: TrainConfig, batches, per_process: int,
                collate: Callable[..., Batch], rope: bool, method: Method) -> dict[str, Any]:
    """One optimizer step: this process's `per_process` rows, accumulated; returns the step's metrics (all
    processes). Each row's loss is its share of the step's loss (`train.loss`); accelerate divides by the
    accumulation and DDP averages over processes, so the backward scales by both."""
    import torch

    started = time.perf_counter()
    lr = scheduler.get_last_lr()[0]
    loss_sum = torch.zeros((), device=accelerator.device)
    counts = torch.zeros(3, device=accelerator.device)  # real tokens, padding, images
    stats_sum = None  # the method's own figures, summed over rows
    grad_norm = None
    for _ in range(per_process):
        item, examples = next(batches)
        if rope:
            add_rope_positions(examples, model)
        batch = collate(examples)
        inputs = _to_device(batch, accelerator.device)
        labels, weights = inputs.pop("labels"), batch.weights.to(accelerator.device)
        with accelerator.accumulate(model):
            loss, stats = method.loss(model, inputs, labels, weights, batch)
            accelerator.backward(loss * accelerator.num_processes * per_process)
            if accelerator.sync_gradients:
                grad_norm = accelerator.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                                        config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        loss_sum += loss.detach()
        stats_sum = stats if stats_sum is None else stats_sum + stats
        if not item.filler:
            counts += torch.tensor([batch.tokens, batch.padding, batch.images], device=accelerator.device)
    scheduler.step()
    totals = accelerator.reduce(torch.cat([loss_sum[None], counts, stats_sum.to(counts)]), "sum")
    seconds = time.perf_counter() - started
    loss_value, tokens, padding, images = (float(x) for x in totals[:4])
    return {
        "loss": loss_value,
        "lr": lr,
        "grad_norm": float("nan") if grad_norm is None else float(grad_norm),
        "tokens": int(tokens),
        "padding_fraction": padding / max(tokens + padding, 1),
        "tokens_per_s": tokens / seconds,
        "images_per_s": images / seconds,
        "seconds": round(seconds, 4),
        **method.metrics([float(x) for x in totals[4:]]),
    }


def _to_device(batch: Batch, device) -> dict[str, Any]:
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.inputs.items()}


def save_outputs(out: Path, model, processor, config: TrainConfig, accelerator) -> tuple[Path, Path | None]:
    """The PEFT adapter (adapter_config.json + adapter_model.safetensors: transformers+peft and vLLM's LoRA
    serving read it), written once, with the full weights gathered from every shard; with `--merge`, the base
    model with the adapter merged in."""
    adapter = out / "adapter"
    state = accelerator.get_state_dict(model)  # every process takes part (FSDP gathers the shards)
    unwrapped = accelerator.unwrap_model(model)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return adapter, None
    with disk.writing(adapter), atomic_folder(adapter) as partial:
        unwrapped.save_pretrained(partial, state_dict=state)
        (partial / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2))
    merged = None
    if config.merge:
        merged = out / "merged"
        with disk.writing(merged), atomic_folder(merged) as partial:
            unwrapped.merge_and_unload().save_pretrained(partial)
            processor.save_pretrained(partial)
    return adapter, merged


def _sft_items(steps: list[Step], cache: TokenCache, config: TrainConfig, rank: int, world: int) -> list[Item]:
    return process_items(steps, cache.label_tokens, config.loss_normalization, rank, world)


def _sft_loss(model, inputs, labels, weights, batch):
    import torch

    from train.loss import weighted_loss

    return weighted_loss(model(**inputs, use_cache=False).logits, labels, weights), torch.zeros(0)


SFT = Method(prepare_data=prepare_data, load_model=load_model, layout=_layout, items=_sft_items, loss=_sft_loss,
             metrics=lambda stats: {}, save=save_outputs)
