"""Training throughput: our packed rows against the MAT recipe's padded pairs, same model, same data, same run.

    python bench/train_throughput.py --tiny            # CPU: tiny Qwen2-VL on release-shaped records
    python bench/train_throughput.py --gpu             # one GPU: Qwen2-VL-7B shape, random weights, bf16, LoRA r64
    python bench/train_throughput.py --gpu --dry-run   # the --gpu code path on a CPU with a tiny shape
    python bench/train_throughput.py --dpo             # CPU: DPO pairs from review edits, packed vs padded

Each configuration prints one JSON line (real tokens/s, padding fraction, MFU and peak memory on a GPU); the last
line is a JSON summary. Real tokens exclude padding. Every configuration trains LoRA on q/k/v of the language model
with AdamW: forward, backward, optimizer step. `--gpu` needs only torch, transformers, peft and accelerate, nothing
from the network; liger-kernel's fused linear cross-entropy is added as a configuration when it is installed.

Configurations:
  mat-recipe      batches of 2 trajectories padded to the max length (10,240), gradient checkpointing
  pad-longer      batches of 2 padded to the longer of the two (--tiny)
  packed-sdpa     rows packed to 10,240 tokens, sdpa with the block mask transformers builds from the positions
  packed-varlen   the same rows, `mat_varlen` (FlashAttention varlen on CUDA; per-segment sdpa on a CPU)
  packed-varlen-ckpt   the same with gradient checkpointing (fits longer rows)

`--dpo` (tiny Qwen2-VL, CPU): the sample's records imported into a review store, each with a reviewer's edit of
its middle step (another record's step of that index), give the pairs (`review.pairs`, every pair kept); a step
is a DPO step (a reference forward with the adapter off, a policy forward, backward, AdamW); the configurations
take turns for `--repeats` passes over the pairs and the fastest pass of each counts:
  dpo-packed      pairs packed into rows of 2 x 10,240 tokens, both sides of a pair in one row, `mat_varlen`
  dpo-padded      TRL's layout: batches of 2 pairs, their 4 sequences padded to the longest, sdpa
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAX_LENGTH = 10_240
# Qwen2-VL-7B-Instruct's shape (config.json of the release), for random weights.
QWEN2VL_7B = {
    "text": {"vocab_size": 152_064, "hidden_size": 3584, "intermediate_size": 18_944, "num_hidden_layers": 28,
             "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 32_768,
             "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]}},
    "vision": {"depth": 32, "embed_dim": 1280, "hidden_size": 3584, "num_heads": 16, "mlp_ratio": 4},
}
# The same code path at a size a CPU runs in seconds (--dry-run).
DRY_RUN = {
    "text": {"vocab_size": 4096, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32_768,
             "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [4, 6, 6]}},
    "vision": {"depth": 1, "embed_dim": 32, "hidden_size": 128, "num_heads": 2, "mlp_ratio": 2},
}
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "4090": 165.0}


def emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


# ---------------------------------------------------------------- batches


def padded_batches(examples, size: int, pad_to: int | None, pad_id: int):
    """Batches of `size` examples in data order, right-padded to `pad_to` (or the longest), with a padding mask."""
    import torch

    from train.data import IGNORE

    batches = []
    for start in range(0, len(examples), size):
        group = examples[start:start + size]
        width = pad_to or max(len(e) for e in group)
        ids = torch.full((len(group), width), pad_id, dtype=torch.long)
        labels = torch.full((len(group), width), IGNORE, dtype=torch.long)
        types = torch.zeros((len(group), width), dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, example in enumerate(group):
            n = len(example)
            ids[row, :n], labels[row, :n], mask[row, :n] = example.input_ids, example.labels, 1
            types[row, :n] = example.mm_token_type_ids
        inputs = {"input_ids": ids, "labels": labels, "mm_token_type_ids": types, "attention_mask": mask}
        with_images = [e for e in group if e.pixel_values is not None]
        if with_images:
            inputs["pixel_values"] = torch.cat([e.pixel_values for e in with_images])
            inputs["image_grid_thw"] = torch.cat([e.image_grid_thw for e in with_images])
        real = sum(len(e) for e in group)
        batches.append((inputs, real, width * len(group) - real))
    return batches


def packed_batches(examples, row_tokens: int, pad_id: int, pad_multiple: int):
    from train.packing import pack, plan_rows

    rows = plan_rows(examples, row_tokens)
    out = []
    for row in rows:
        batch = pack([examples[i] for i in row], pad_id=pad_id, pad_to_multiple=pad_multiple)
        out.append((batch.inputs, batch.tokens, batch.padding))
    return out


# ---------------------------------------------------------------- one measured configuration


def measure(name: str, model, batches, device, *, steps: int, warmup: int, flops_per_token: float | None,
            peak_flops: float | None, objective=None) -> dict:
    """Train on `batches` (cycled): `warmup` untimed steps, then `steps` timed ones; the model's own loss, or
    `objective(model, inputs, batch)` for batches that carry a fourth item."""
    import torch

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    model.train()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    def step(batch):
        inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch[0].items()}
        loss = objective(model, inputs, batch[3]) if objective else model(**inputs, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for index in range(warmup):
        step(batches[index % len(batches)])
    if cuda:
        torch.cuda.synchronize()
    real = padding = 0
    started = time.perf_counter()
    for index in range(steps):
        batch = batches[(warmup + index) % len(batches)]
        step(batch)
        real, padding = real + batch[1], padding + batch[2]
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    row = {"config": name, "tokens_per_s": round(real / seconds, 1), "padding_fraction": round(padding /
           (real + padding), 4), "real_tokens": real, "steps": steps, "seconds": round(seconds, 2)}
    if flops_per_token and peak_flops:
        row["mfu"] = round(real / seconds * flops_per_token / peak_flops, 4)
    if cuda:
        row["peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    return row


def lora_model(build, attention: str, checkpointing: bool):
    from train.presets import build_config
    from train.trainer import attention_names, prepare_for_training

    config = build_config("mat-paper", attention=attention, gradient_checkpointing=checkpointing, lora_dropout=0.0)
    return prepare_for_training(build(attention_names(config)), config)


# ---------------------------------------------------------------- --tiny


def tiny_examples(count: int, sample: Path | None = None):
    """Release records (the repository's fixtures, or `--sample`) through the real encoder (tiny tokenizer),
    with a picture drawn at every path they name."""
    from train.data import Encoder, iter_release

    work, checkpoint, processor = tiny_workspace(count, sample)
    loaded = list(iter_release(work / "sample.json", work / "images"))
    examples = Encoder(processor, max_pixels=64 * 28 * 28).examples(loaded)
    return checkpoint, processor, examples


def tiny_workspace(count: int, sample: Path | None = None):
    """(folder, tiny checkpoint, its processor): the folder holds the first `count` records (sample.json) and
    their pictures (images/)."""
    from PIL import Image

    from agent.models.tiny import build_tiny_qwen2vl
    from agent.steps import Trajectory
    from tests.support.train_records import sample_records
    from train.trainer import load_processor

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    records = sample_records(sample)[:count]
    for record in records:
        for name in Trajectory.from_conversations(record["conversations"]).task.images:
            (work / "images" / name).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (320, 240), (90, 140, 200)).save(work / "images" / name, format="PNG")
    (work / "sample.json").write_text(json.dumps(records))
    checkpoint = build_tiny_qwen2vl(work / "tiny")
    return work, checkpoint, load_processor(str(checkpoint))


def run_tiny(args) -> list[dict]:
    import torch
    from transformers import AutoModelForImageTextToText

    from train.packing import add_rope_positions

    torch.manual_seed(0)
    checkpoint, processor, examples = tiny_examples(args.examples, args.sample)
    pad_id = processor.tokenizer.pad_token_id

    def build(attn):
        return AutoModelForImageTextToText.from_pretrained(checkpoint, attn_implementation=attn)

    configs = [
        ("packed-varlen", "varlen", False, None),
        ("pad-longer", "sdpa", False, "longer"),
        ("mat-recipe", "sdpa", True, "max"),
    ]
    rows = []
    device = torch.device("cpu")
    for name, attention, checkpointing, padding in configs:
        model = lora_model(build, attention, checkpointing)
        if padding is None:
            add_rope_positions(examples, model)
            batches = packed_batches(examples, MAX_LENGTH, pad_id, 1)
        else:
            batches = padded_batches(examples, 2, MAX_LENGTH if padding == "max" else None, pad_id)
        row = measure(name, model, batches, device, steps=len(batches), warmup=0, flops_per_token=None,
                      peak_flops=None)
        emit(row)
        rows.append(row)
    return rows


# ---------------------------------------------------------------- --dpo


def dpo_examples(count: int):
    """Both sides of the pairs a review store gives once a reviewer edited each record's middle step."""
    from review.pairs import iter_pairs
    from review.store import Store
    from train.data import FileReader, Record
    from train.dpo import SIDES, CandidateEncoder

    work, checkpoint, processor = tiny_workspace(count)
    records = json.loads((work / "sample.json").read_text())
    with Store(work / "mat.db") as store:
        store.import_records(records, source="sample", images=work / "images")
        details = [store.detail(str(record["id"])) for record in records]
        for detail, other in zip(details, details[1:] + details[:1], strict=True):
            middle = len(detail.trajectory.steps) // 2
            donor = other.trajectory.steps[min(middle, len(other.trajectory.steps) - 1)]
            for field in ("thought", "code"):
                store.edit(detail.id, "bench", step=middle, field=field, value=getattr(donor, field) or "pass")
        pairs = list(iter_pairs(store, threshold=2.0))  # keep every pair: lengths matter here, not the filter
    sides = [Record(f"{pair.id}/{side}", pair.trajectory(side), pair.image_paths(), FileReader())
             for pair in pairs for side in SIDES]
    examples = CandidateEncoder(processor, max_pixels=64 * 28 * 28, max_length=MAX_LENGTH).examples(sides)
    return checkpoint, processor, examples


def dpo_batches(examples, packed: bool, pad_id: int):
    """(inputs, real tokens, padding, Batch) per step: packed rows of whole pairs, or padded batches of 2 pairs;
    each pair weighs 1 / (pairs in its step)."""
    import torch

    from train.packing import Batch, first_fit_decreasing, pack, token_weights

    pairs = [examples[i:i + 2] for i in range(0, len(examples), 2)]
    if packed:
        groups = first_fit_decreasing([len(c) + len(r) for c, r in pairs], 2 * MAX_LENGTH)
    else:
        groups = [list(range(i, min(i + 2, len(pairs)))) for i in range(0, len(pairs), 2)]
    out = []
    for group in groups:
        row = [side for index in group for side in pairs[index]]
        for example in row:
            example.weight = 1 / len(group)
        if packed:
            batch = pack(row, pad_id=pad_id)
        else:
            inputs, real, padding = padded_batches(row, len(row), None, pad_id)[0]
            weights = [token_weights([e], labels) for e, labels in zip(row, inputs["labels"], strict=True)]
            batch = Batch(inputs, [e.id for e in row], real, padding, 0, 0, weights=torch.stack(weights))
        out.append((batch.inputs, batch.tokens, batch.padding, batch))
    return out


def run_dpo(args) -> list[dict]:
    import torch
    from transformers import AutoModelForImageTextToText

    from train.dpo import make_loss
    from train.packing import add_rope_positions

    torch.manual_seed(0)
    checkpoint, processor, examples = dpo_examples(args.examples)
    pad_id = processor.tokenizer.pad_token_id
    loss = make_loss(0.1)

    def objective(model, inputs, batch):
        inputs = dict(inputs)
        return loss(model, inputs, inputs.pop("labels"), batch.weights, batch)[0]

    def build(attn):
        return AutoModelForImageTextToText.from_pretrained(checkpoint, attn_implementation=attn)

    configs = []
    for name, attention, packed in (("dpo-packed", "varlen", True), ("dpo-padded", "sdpa", False)):
        model = lora_model(build, attention, False)
        if packed:
            add_rope_positions(examples, model)
        configs.append((name, model, dpo_batches(examples, packed, pad_id)))
    best: dict[str, dict] = {}
    for _ in range(args.repeats):  # interleaved, the best of each kept: other jobs on the box only slow a pass
        for name, model, batches in configs:
            row = measure(name, model, batches, torch.device("cpu"), steps=len(batches), warmup=0,
                          flops_per_token=None, peak_flops=None, objective=objective)
            row.update(pairs=len(examples) // 2, pairs_per_s=round(len(examples) / 2 / row["seconds"], 2))
            emit(row)
            if row["tokens_per_s"] > best.get(name, {}).get("tokens_per_s", 0):
                best[name] = row
    return list(best.values())


# ---------------------------------------------------------------- --gpu


def synthetic_examples(count: int, vocab: int, low: int, high: int, seed: int = 0):
    """Text-only trajectories with MM-Traj-like lengths (uniform in [low, high]) and the last 40% labelled."""
    import torch

    from train.data import IGNORE, Example

    rng = random.Random(seed)
    examples = []
    for index in range(count):
        length = rng.randint(low, high)
        ids = torch.randint(1000, vocab - 1000, (length,), generator=torch.Generator().manual_seed(seed + index))
        labels = ids.clone()
        labels[: int(length * 0.6)] = IGNORE
        examples.append(Example(id=str(index), input_ids=ids, labels=labels,
                                mm_token_type_ids=torch.zeros(length, dtype=torch.long)))
    return examples


def qwen2vl_config(shape: dict):
    import transformers

    vocab = shape["text"]["vocab_size"]

    def special(qwen_id: int) -> int:  # Qwen2-VL's special ids sit at the top of its vocabulary; keep them there
        return qwen_id - 152_064 + vocab

    return transformers.Qwen2VLConfig(
        text_config={**shape["text"], "bos_token_id": special(151_643), "eos_token_id": special(151_645),
                     "pad_token_id": special(151_643)},
        vision_config=shape["vision"], image_token_id=special(151_655), video_token_id=special(151_656),
        vision_start_token_id=special(151_652), vision_end_token_id=special(151_653),
    )


def flops_per_token(config, context: float) -> float:
    """Model FLOPs per trained token for LoRA on a frozen base: forward (2N) + input gradients (2N) of the
    language model's matmuls, plus attention (forward and backward) at the mean causal context length."""
    text = config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    kv = text.num_key_value_heads * head_dim
    per_layer = 2 * text.hidden_size * (text.hidden_size + 2 * kv) + 2 * text.hidden_size * text.hidden_size \
        + 3 * 2 * text.hidden_size * text.intermediate_size
    linear = text.num_hidden_layers * per_layer + 2 * text.hidden_size * text.vocab_size
    attention = text.num_hidden_layers * 4 * context * text.hidden_size  # QK^T and AV over the causal context
    return 2 * linear + 3 * attention  # linear: forward + input gradients (frozen base); attention: fwd + 2x bwd


def peak_flops(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return None


def run_gpu(args) -> list[dict]:
    import torch
    from transformers import AutoModelForImageTextToText

    from train.packing import add_rope_positions

    device = torch.device("cpu" if args.dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device (use --dry-run to check the code path on a CPU)")
    shape = DRY_RUN if args.dry_run else QWEN2VL_7B
    dtype = torch.float32 if args.dry_run else torch.bfloat16
    config = qwen2vl_config(shape)
    low, high = (200, 600) if args.dry_run else (2_600, 6_000)
    max_length = 1_024 if args.dry_run else MAX_LENGTH
    examples = synthetic_examples(args.examples, config.text_config.vocab_size, low, high)
    context = sum(len(e) ** 2 for e in examples) / sum(len(e) for e in examples) / 2
    flops = flops_per_token(config, context)
    peak = peak_flops(device)

    def build(attn):
        config._attn_implementation_internal = None
        torch.manual_seed(0)
        with torch.device(device):
            return AutoModelForImageTextToText.from_config(config, dtype=dtype, attn_implementation=attn)

    configs = [
        ("mat-recipe", "sdpa", True, "max"),
        ("packed-sdpa", "sdpa", False, None),
        ("packed-varlen", "varlen", False, None),
        ("packed-varlen-ckpt", "varlen", True, None),
    ]
    rows = []
    for name, attention, checkpointing, padding in configs:
        model = lora_model(build, attention, checkpointing)
        if padding is None:
            add_rope_positions(examples, model)
            batches = packed_batches(examples, max_length, config.text_config.pad_token_id, 64)
        else:
            batches = padded_batches(examples, 2, max_length, config.text_config.pad_token_id)
        row = measure(name, model, batches, device, steps=args.steps, warmup=1, flops_per_token=flops,
                      peak_flops=peak)
        emit(row)
        rows.append(row)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    liger = liger_row(args, build, examples, device, max_length, config, flops, peak)
    if liger:
        rows.append(liger)
    return rows


def liger_row(args, build, examples, device, max_length, config, flops, peak) -> dict | None:
    """packed-varlen with liger-kernel's fused linear cross-entropy, when liger-kernel is installed."""
    try:
        from liger_kernel.transformers import apply_liger_kernel_to_qwen2_vl
    except ImportError:
        emit({"config": "packed-varlen-liger", "skipped": "liger-kernel is not installed"})
        return None
    apply_liger_kernel_to_qwen2_vl(fused_linear_cross_entropy=True, cross_entropy=False)
    model = lora_model(build, "varlen", False)
    batches = packed_batches(examples, max_length, config.text_config.pad_token_id, 64)
    row = measure("packed-varlen-liger", model, batches, device, steps=args.steps, warmup=1,
                  flops_per_token=flops, peak_flops=peak)
    emit(row)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--tiny", action="store_true", help="tiny Qwen2-VL on the CPU, release-shaped records")
    mode.add_argument("--gpu", action="store_true", help="Qwen2-VL-7B shape, random weights, bf16, one GPU")
    mode.add_argument("--dpo", action="store_true", help="DPO pairs from review edits, packed vs padded, CPU")
    parser.add_argument("--dry-run", action="store_true", help="with --gpu: a tiny shape on the CPU")
    parser.add_argument("--examples", type=int, default=None, help="trajectories (tiny: 8, gpu: 64)")
    parser.add_argument("--sample", type=Path, help="with --tiny: release records to use (default: the fixtures)")
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps per configuration (gpu)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the pairs per configuration (dpo)")
    args = parser.parse_args()
    args.examples = args.examples or (64 if args.gpu else (30 if args.dpo else 8))
    rows = run_tiny(args) if args.tiny else run_dpo(args) if args.dpo else run_gpu(args)
    by_name = {row["config"]: row for row in rows}
    mode = "tiny-cpu" if args.tiny else "dpo-tiny-cpu" if args.dpo else ("gpu-dry-run-cpu" if args.dry_run else "gpu")
    summary = {"mode": mode,
               **{f"{name}_tokens_per_s": row["tokens_per_s"] for name, row in by_name.items()},
               **{f"{name}_padding": row["padding_fraction"] for name, row in by_name.items()}}
    if args.dpo:
        summary["dpo-packed_speedup"] = round(by_name["dpo-packed"]["tokens_per_s"] /
                                              by_name["dpo-padded"]["tokens_per_s"], 2)
    base = by_name.get("mat-recipe")
    if base:
        for name, row in by_name.items():
            if name != "mat-recipe":
                summary[f"{name}_speedup"] = round(row["tokens_per_s"] / base["tokens_per_s"], 2)
    for name, row in by_name.items():
        if "mfu" in row:
            summary[f"{name}_mfu"] = row["mfu"]
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
