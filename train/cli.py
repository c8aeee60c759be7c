"""`python -m train`: LoRA-tune a VLM controller on MM-Traj (a release file or the store's approved trajectories).

Every field of `TrainConfig` is a flag; the preset fills the rest. A bad input ends with one line on stderr and
exit status 2; nothing is computed before the data has been read and checked.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import MISSING, fields

from train.presets import PRESETS, TrainConfig, build_config

EXAMPLES = """examples:
  python -m train --data MAT --images MAT/files.zip --base /models/Qwen2-VL-7B-Instruct --out runs/mat  # the release
  python -m train --db data/mat.db --base /models/Qwen2-VL-7B-Instruct --out runs/approved --preset fast
  python -m train --db data/mat.db --tiny --out runs/tiny --max-steps 4   # smoke test: a tiny model on the CPU
  python -m train --db data/mat.db --base /models/Qwen2-VL-7B-Instruct --out runs/clean --exclude-benchmark gta,gaia
  accelerate launch --config_file train/configs/zero2.yaml -m train --db data/mat.db --base ... --out runs/zero2
  python -m train --method dpo --db data/mat.db --base /models/Qwen2-VL-7B-Instruct --adapter runs/mat/adapter --out runs/dpo
"""


HELP = {
    "base": "base checkpoint folder (Qwen2-VL, Qwen2.5-VL, MiniCPM-V 4.6 / 4.7)",
    "out": "folder for the adapter, checkpoints and metrics.jsonl; the same --out resumes",
    "data": "a release file (JSON list, JSONL, parquet, datasets folder)",
    "images": "folder or zip the release's image paths resolve in",
    "db": "the store: its approved trajectories are the data unless --data is given; the run is recorded there",
    "tiny": "build a tiny random Qwen2-VL and train it on the CPU in seconds (smoke test); unless --preset is "
            "given, uses the tiny preset: the real records and renderer, one packed row per step, LoRA r8, lr 1e-2, "
            "2 epochs, images at most 64x28x28 pixels",
    "lora_target": "regex over module names that get LoRA (the vision tower is refused)",
    "overlong": "cut (at a turn boundary) or skip records over --max-length",
    "row_tokens": "tokens per row: a packed row (Qwen2-VL family) or a padded batch, padding included (MiniCPM-V)",
    "token_budget": "tokens per optimizer step over all processes: --token-budget / --row-tokens rows, shared "
                    "evenly by the processes",
    "attention": "varlen (packed rows, FlashAttention varlen on CUDA; sdpa for MiniCPM-V), sdpa or eager",
    "dtype": "auto (bfloat16 where supported, float32 on a CPU), bfloat16, float16 or float32",
    "save_every": "checkpoint every N optimizer steps", "merge": "also write the base model with the adapter merged",
    "max_steps": "stop after N optimizer steps (0: all epochs)",
    "loss_normalization": "token: every assistant token of a step weighs the same; sequence: every trajectory does "
                          "(MAT's scripts)",
    "modules_to_save": "comma-separated modules trained in full beside LoRA (MAT's Qwen script: lm_head)",
    "warmup_ratio": "warmup as a share of the steps, used when --warmup-steps is 0",
    "exclude_benchmark": "comma-separated benchmarks known to the store (gta,gaia): leave out every record that "
                         "overlaps one (same or near-duplicate query, a shared 13-gram, the same image); without "
                         "it a record that is a benchmark task is refused",
    "data_workers": "processes that build each step's pixels", "cache_dir": "where encoded data sets are kept",
    "method": "sft (approved trajectories) or dpo (the preference pairs the review events of --db give; "
              "unless --preset is given, uses the sport-dpo preset)",
    "adapter": "with --method dpo: the SFT adapter to start from (the reference is base + this adapter)",
    "beta": "DPO's beta: how far the policy may move from the reference",
    "pair_bleu": "drop sampled pairs (Review's step sampler) whose two sides reach this character BLEU, unless the "
                 "rejected step failed (SPORT); people's pairs are dropped only when identical once whitespace is "
                 "normalized",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n\n")[0], epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = TrainConfig()
    for field in fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name) if field.default is not MISSING else None
        text = " ".join(filter(None, [HELP.get(field.name, ""), f"(mat-paper: {default})" if default != "" else ""]))
        if field.name == "preset":
            p.add_argument(flag, choices=list(PRESETS), default="mat-paper", help="recipe to start from")
        elif field.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            kind = {"int": int, "float": float}.get(str(field.type), str)
            p.add_argument(flag, type=kind, default=None, help=text)
    return p


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    args = vars(parser().parse_args(argv))
    preset = args.pop("preset")
    if args.get("tiny") and preset == "mat-paper" and "--preset" not in (argv or sys.argv):
        preset = "tiny"
    preset = dpo_preset(preset, args, argv)
    return build_config(preset, **args)


def dpo_preset(preset: str, args: dict, argv: list[str] | None) -> str:
    """`--method dpo` without `--preset` starts from the sport-dpo recipe (with --tiny: tiny, as DPO)."""
    if args.get("method") == "dpo" and preset == "mat-paper" and "--preset" not in (argv or sys.argv):
        return "sport-dpo"
    return preset


def main(argv: list[str] | None = None) -> int:
    """Train; run under `core.cli.run_main`, which prints a refusal or an OS failure (a read-only folder or
    database, a full disk) as one line naming the path."""
    from core.errors import UserError
    from train.trainer import train

    signal.signal(signal.SIGTERM, _interrupt)  # the Train tab's stop: end as Ctrl-C does, the run resumable
    try:
        config = config_from_args(argv)
        result = train(config, log=lambda message: print(message, file=sys.stderr))
    except (UserError, OSError):
        if os.environ.get("RANK", "0") != "0":  # every process refuses alike; one says so
            return 2
        raise
    except KeyboardInterrupt:
        print("stopped; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") != "0":  # one process of several reports
        return 0
    print(f"adapter: {result.adapter}")
    if result.merged:
        print(f"merged model: {result.merged}")
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
