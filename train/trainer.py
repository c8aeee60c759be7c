"""LoRA training of the controller on MM-Traj, resumable, one GPU or several through `accelerate`.

The order of work: read and check the data, encode it (a bad record stops here, before any model is loaded), load
the base model, wrap it with LoRA on the language model only, then train. Qwen2-VL and Qwen2.5-VL train on packed
rows (`train.packing`, each trajectory attending only to itself): each optimizer step takes `rows_per_step` of
them (the token budget). MiniCPM-V 4.6/4.7 train on padded batches (`train.padding`, one trajectory per row, an
attention mask), one length-grouped batch of at most the token budget per step. Either way the loss is the mean
over every assistant token of the step, whichever row it sits in. Checkpoints hold the trainable weights,
optimizer, schedule, RNG and step, so a run killed at any moment resumes from its last checkpoint on the same loss
curve.
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

from train.data import DataError, Encoder, Prepared, load_release, load_store
from train.packing import Batch, add_rope_positions, pack, plan_rows
from train.padding import pad, padding_fraction, plan_batches
from train.presets import TrainConfig, check

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


# ---------------------------------------------------------------- setup


def base_model_path(config: TrainConfig) -> str:
    """The base checkpoint: `--base`, or with `--tiny` a tiny Qwen2-VL built into the output folder."""
    if config.tiny and not config.base:
        from agent.models.tiny import build_tiny_qwen2vl

        return str(build_tiny_qwen2vl(Path(config.out) / "tiny-base"))
    return config.base


def load_records(config: TrainConfig):
    """(records, description of the data, records dropped for missing images)."""
    if config.data:
        records, dropped = load_release(config.data, config.images or None,
                                        skip_missing_images=config.skip_missing_images)
        return records, str(config.data), dropped
    records, dropped = load_store(config.db, skip_missing_images=config.skip_missing_images)
    return records, f"{config.db} (approved)", dropped


def base_model_type(base: str) -> str:
    """The checkpoint's model type; a model the agent cannot serve is refused with one line, as it cannot be
    trained either (MiniCPM-V 2.x: remote code, which we do not run)."""
    from agent.models.base import ModelError
    from agent.models.local_vlm import _model_type

    path = Path(base)
    if not path.is_dir():
        raise DataError(f"base model not found: {base} — give a local checkpoint folder")
    try:
        return _model_type(path)
    except ModelError as exc:
        raise DataError(str(exc)) from None


def load_processor(base: str):
    """The processor the local backend serves the checkpoint with (train = serve)."""
    from agent.models.base import ModelError
    from agent.models.local_vlm import _load_processor

    model_type = base_model_type(base)
    try:
        return _load_processor(Path(base), model_type)
    except ModelError as exc:
        raise DataError(str(exc)) from None


def packs_rows(base: str) -> bool:
    """Whether the model trains on packed rows (Qwen2-VL family) or on padded batches (MiniCPM-V)."""
    from agent.models.local_vlm import QWEN_TYPES

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
    from transformers import AutoModelForImageTextToText

    names = attention_names(config, packed=packs_rows(base))
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=dtype, attn_implementation=names)
    return prepare_for_training(model, config, Path(base).name)


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
                      target_modules=config.lora_target, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise DataError(f"--lora-target {config.lora_target!r} matches no module of {label}")
    if any(part in name for name in trainable for part in VISION_PARTS):
        raise DataError(f"--lora-target {config.lora_target!r} reaches the vision tower; it must stay frozen")
    return model


# ---------------------------------------------------------------- the plan of steps


def plan_steps(rows: list[list[int]], config: TrainConfig, world: int, rows_per_step: int | None = None
               ) -> list[list[list[int]]]:
    """Every optimizer step of the run: epochs of shuffled rows, `rows_per_step x world` rows per step
    (a row: example indices packed together, or padded together into one batch)."""
    per_step = (rows_per_step or config.rows_per_step) * world
    steps = []
    for epoch in range(config.epochs):
        order = list(rows)
        random.Random(config.seed * 1000 + epoch).shuffle(order)
        steps += [order[i:i + per_step] for i in range(0, len(order), per_step)]
    return steps[: config.max_steps] if config.max_steps else steps


# ---------------------------------------------------------------- checkpoints


def _trainable_state(model) -> dict:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(out: Path, step: int, model, optimizer, scheduler, accelerator) -> None:
    """Write checkpoint-<step>/, then point `latest` at it (atomically), then drop older checkpoints."""
    import torch

    folder = out / f"checkpoint-{step}"
    if accelerator.num_processes > 1:  # DeepSpeed / FSDP shard their state; accelerate knows how to save it
        accelerator.save_state(str(folder))
    elif accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            "step": step,
            "trainable": _trainable_state(accelerator.unwrap_model(model)),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        }
        torch.save(state, folder / "state.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (folder / "step.json").write_text(json.dumps({"step": step}))
        pointer = out / (LATEST + ".tmp")
        pointer.write_text(folder.name)
        os.replace(pointer, out / LATEST)
        for old in out.glob("checkpoint-*"):
            if old != folder:
                _remove_tree(old)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def latest_checkpoint(out: Path) -> Path | None:
    pointer = out / LATEST
    if not pointer.is_file():
        return None
    folder = out / pointer.read_text().strip()
    return folder if (folder / "step.json").is_file() else None


def load_checkpoint(folder: Path, model, optimizer, scheduler, accelerator) -> int:
    """Restore a checkpoint; returns the number of optimizer steps already done."""
    import torch

    step = json.loads((folder / "step.json").read_text())["step"]
    if accelerator.num_processes > 1:
        accelerator.load_state(str(folder))
        return step
    state = torch.load(folder / "state.pt", weights_only=False)
    unexpected = accelerator.unwrap_model(model).load_state_dict(state["trainable"], strict=False).unexpected_keys
    if unexpected:
        raise DataError(f"checkpoint {folder} does not fit this model (e.g. {unexpected[0]}); use a new --out")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return step


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
        self.path.write_text("".join(line + "\n" for line in kept))
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise DataError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
            self.writer = SummaryWriter(str(out / "tensorboard"))

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
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


def prepare_data(config: TrainConfig, log: Callable[[str], None]) -> tuple[Prepared, str, str, Any]:
    """Read, check and encode everything before any model is loaded (or, with --tiny, built).

    Returns (examples, description of the data, base model path, processor)."""
    records, description, dropped = load_records(config)
    base = base_model_path(config)
    processor = load_processor(base)
    encoder = Encoder(processor, max_pixels=config.max_pixels, max_length=config.max_length,
                      overlong=config.overlong)
    prepared = encoder.prepare(records)
    prepared.skipped_missing_images = dropped
    log(prepared.summary())
    return prepared, description, base, processor


def train(config: TrainConfig, log: Callable[[str], None] = print) -> Result:
    """Run (or resume) a training run as `config` says; returns where its outputs are."""
    import torch
    from accelerate import Accelerator
    from transformers import get_scheduler

    from core.jobs import progress
    from train import runs

    check(config)
    out = Path(config.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    progress(stage="data", message="reading and encoding the data")
    prepared, description, base, processor = prepare_data(config, log)

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    dtype = pick_dtype(config, accelerator.device)
    progress(stage="model", message=f"loading {Path(base).name} ({str(dtype).removeprefix('torch.')})")
    torch.manual_seed(config.seed)
    model = load_model(base, config, dtype)
    examples = prepared.examples
    pad_id = processor.tokenizer.pad_token_id or 0
    pad_multiple = 64 if accelerator.device.type == "cuda" else 1
    rows, rows_per_step, collate = _layout(base, examples, model, processor, config, pad_id, pad_multiple, log)
    steps = plan_steps(rows, config, accelerator.num_processes, rows_per_step)
    steps_per_epoch = -(-len(rows) // (rows_per_step * accelerator.num_processes))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_scheduler(config.scheduler, optimizer, num_warmup_steps=config.warmup_steps,
                              num_training_steps=len(steps))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    checkpoint = latest_checkpoint(out)
    done = load_checkpoint(checkpoint, model, optimizer, scheduler, accelerator) if checkpoint else 0
    if done:
        log(f"resuming from {checkpoint.name}: {done} of {len(steps)} steps done")
    (out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2))
    metrics = Metrics(out, done, config.tensorboard) if accelerator.is_main_process else None
    db = config.db or os.environ.get("MAT_DB")
    run_id = None
    if db and accelerator.is_main_process:
        run_id = runs.record_start(db, out_dir=out, base_model=base, data=description, examples=len(examples),
                                   steps_total=len(steps), config=config.to_dict())
    last_loss = None
    model.train()
    try:
        bar = _progress_bar(len(steps), done, accelerator.is_main_process)
        for index in range(done, len(steps)):
            row = _train_step(model, optimizer, scheduler, accelerator, config, steps[index], examples, collate)
            last_loss = row["loss"]
            row = {"step": index + 1, "epoch": round((index + 1) / steps_per_epoch, 4), **row}
            if metrics is not None:
                metrics.write(row)
            progress(stage="train", step=index + 1, steps=len(steps), loss=row["loss"], lr=row["lr"],
                     tokens_per_s=row["tokens_per_s"], padding_fraction=row["padding_fraction"])
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", tok_s=f"{row['tokens_per_s']:.0f}")
            if (index + 1) % config.save_every == 0 or index + 1 == len(steps):
                save_checkpoint(out, index + 1, model, optimizer, scheduler, accelerator)
                if run_id:
                    runs.record_update(db, run_id, steps_done=index + 1, last_loss=last_loss)
        bar.close()
        progress(stage="save", message="writing the adapter")
        adapter, merged = _save_outputs(out, model, processor, config, accelerator)
    except KeyboardInterrupt:
        if run_id:
            runs.record_update(db, run_id, status="stopped", message="stopped; run the same command to resume")
        raise
    except BaseException as exc:
        if run_id:
            runs.record_update(db, run_id, status="failed", message=f"{type(exc).__name__}: {exc}"[:500])
        raise
    if run_id:
        runs.record_update(db, run_id, status="done", adapter_dir=str(adapter),
                           merged_dir=str(merged) if merged else None, last_loss=last_loss, steps_done=len(steps))
    log(f"adapter written to {adapter}" + (f"; merged model in {merged}" if merged else ""))
    return Result(out, adapter, merged, len(steps), last_loss, run_id)


def _layout(base: str, examples, model, processor, config: TrainConfig, pad_id: int, pad_multiple: int,
            log: Callable[[str], None]):
    """(rows, rows per step, collate): packed rows of `row_tokens` for the Qwen2-VL family, else length-grouped
    padded batches of at most `token_budget` tokens, one per step."""
    if packs_rows(base):
        add_rope_positions(examples, model)
        rows = plan_rows(examples, config.row_tokens)
        return rows, config.rows_per_step, partial(pack, pad_id=pad_id, pad_to_multiple=pad_multiple)
    with_types = "mm_token_type_ids" in processor.model_input_names
    rows = plan_batches(examples, config.token_budget)
    log(f"{len(rows)} length-grouped batches of at most {config.token_budget:,} tokens, one trajectory per row; "
        f"padding {padding_fraction(examples, rows):.1%}")
    return rows, 1, partial(pad, pad_id=pad_id, pad_to_multiple=pad_multiple, with_types=with_types)


def _progress_bar(total: int, done: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="train", unit="step", disable=not enabled, dynamic_ncols=True)


def _train_step(model, optimizer, scheduler, accelerator, config: TrainConfig, step_rows: list[list[int]],
                examples, collate: Callable[..., Batch]) -> dict[str, Any]:
    """One optimizer step over this process's share of `step_rows`; returns the step's metrics (all processes)."""
    import torch

    started = time.perf_counter()
    world, rank = accelerator.num_processes, accelerator.process_index
    mine = step_rows[rank::world] or [step_rows[-1]]  # a rank without a row repeats one, weighted 0
    weight = 1.0 if step_rows[rank::world] else 0.0
    batches = [collate([examples[i] for i in row]) for row in mine]
    label_total = sum(sum(int((examples[i].labels != -100).sum()) for i in row) for row in step_rows)
    lr = scheduler.get_last_lr()[0]
    loss_sum = torch.zeros((), device=accelerator.device)
    for position, batch in enumerate(batches):
        inputs = _to_device(batch, accelerator.device)
        sync = position == len(batches) - 1
        context = accelerator.no_sync(model) if not sync and world > 1 else _nothing()
        with context:
            output = model(**inputs, use_cache=False, num_items_in_batch=torch.tensor(label_total))
            loss = output.loss * weight
            accelerator.backward(loss * world)  # DDP averages gradients over processes; the loss is a global mean
        loss_sum += loss.detach()
    grad_norm = accelerator.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                            config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    totals = torch.tensor([float(loss_sum), sum(b.tokens for b in batches) * weight,
                           sum(b.padding for b in batches) * weight, sum(b.images for b in batches) * weight],
                          device=accelerator.device)
    totals = accelerator.reduce(totals, "sum")
    seconds = time.perf_counter() - started
    loss_value, tokens, padding, images = (float(x) for x in totals)
    return {
        "loss": loss_value,
        "lr": lr,
        "grad_norm": float(grad_norm),
        "tokens": int(tokens),
        "padding_fraction": padding / max(tokens + padding, 1),
        "tokens_per_s": tokens / seconds,
        "images_per_s": images / seconds,
        "seconds": round(seconds, 4),
    }


def _to_device(batch: Batch, device) -> dict[str, Any]:
    return {k: v.to(device) for k, v in batch.inputs.items()}


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _save_outputs(out: Path, model, processor, config: TrainConfig, accelerator) -> tuple[Path, Path | None]:
    """The PEFT adapter (adapter_config.json + adapter_model.safetensors: transformers+peft and vLLM's LoRA
    serving read it) and, with `--merge`, the base model with the adapter merged in."""
    adapter = out / "adapter"
    unwrapped = accelerator.unwrap_model(model)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return adapter, None
    unwrapped.save_pretrained(adapter)
    (adapter / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2))
    merged = None
    if config.merge:
        merged = out / "merged"
        unwrapped.merge_and_unload().save_pretrained(merged)
        processor.save_pretrained(merged)
    return adapter, merged

