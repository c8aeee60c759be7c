"""The run configuration and its presets; every field is also a CLI flag (`--lora-r 32`) and a Train-tab field.

`mat-paper` is the paper's recipe: LoRA rank 64 on q/k/v of the language model (the regex keeps the vision tower
out, and the vision tower is frozen; in MiniCPM-V's hybrid language model the linear-attention layers project q/k/v
through one fused `in_proj_qkv`, which counts as q/k/v), AdamW, cosine schedule, lr 1e-6, 5 epochs, max length 10,240. The paper's
batch of 2 padded rows becomes a token budget of the same size, 2 x 10,240 tokens per optimizer step, filled by
packed rows. The paper does not state LoRA alpha or dropout; we use alpha = 2 x rank and dropout 0.05.

`mat-qwen2vl` and `mat-minicpmv` are MAT's released training scripts field by field (mat-agent/MAT-Agent,
`experiments/Qwen-VL/finetune/finetune_lora_ds.sh` with `finetune.py`, and
`experiments/CPM-FT/slurm_jobs/job_lora_5_gta_with_verifier.sh` with `finetune/finetune.py`); the README's
training section tabulates each field, its source, and where the paper and the scripts disagree. A global batch
of B trajectories padded to 10,240 tokens becomes a token budget of B x 10,240 tokens, as for `mat-paper`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from core import defaults
from core.errors import UserError
from train.data import MAX_LENGTH

LANGUAGE_QKV = r".*language_model.*\.(q_proj|k_proj|v_proj|in_proj_qkv)"
LANGUAGE_QKVO = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"  # MAT's scripts: self_attn q/k/v/o
LANGUAGE_ALL = (r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj"
                r"|in_proj_qkv|in_proj_z|out_proj)")


@dataclass
class TrainConfig:
    """Everything a run needs; `python -m train --help` lists each field with its flag."""

    base: str = ""
    out: str = ""
    data: str = ""
    images: str = ""
    db: str = ""
    preset: str = "mat-paper"
    tiny: bool = False
    # LoRA
    lora_r: int = 64
    lora_alpha: int = 128
    lora_dropout: float = 0.05
    lora_target: str = LANGUAGE_QKV
    modules_to_save: str = ""  # comma-separated modules trained in full beside LoRA (MAT's Qwen script: lm_head)
    # optimization
    learning_rate: float = 1e-6
    epochs: int = 5
    scheduler: str = "cosine"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # used when warmup_steps is 0: ceil(ratio x steps), as transformers' Trainer
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    loss_normalization: str = "token"  # token | sequence (train.loss)
    max_steps: int = 0  # 0: all epochs
    seed: int = 0
    # data and batching
    max_length: int = MAX_LENGTH
    overlong: str = "cut"
    max_pixels: int = defaults.MAX_PIXELS
    row_tokens: int = MAX_LENGTH
    token_budget: int = 2 * MAX_LENGTH
    skip_missing_images: bool = False
    exclude_benchmark: str = ""  # comma-separated benchmarks whose overlapping records are left out (gta,gaia)
    data_workers: int = 2  # DataLoader processes that build each step's pixels
    cache_dir: str = ""  # encoded data sets (default $MAT_TRAIN_CACHE or ~/.cache/mat-studio/train-tokens)
    # speed and precision
    attention: str = "varlen"  # varlen | sdpa | eager
    gradient_checkpointing: bool = True
    dtype: str = "auto"  # auto: bfloat16 where supported, float32 on the CPU
    # preference tuning (train.dpo)
    method: str = "sft"  # sft | dpo
    adapter: str = ""  # the SFT adapter DPO starts from (empty: the base)
    beta: float = 0.1
    pair_bleu: float = 0.3  # pairs whose sides reach this BLEU are dropped, as SPORT drops them (review.pairs)
    # outputs
    save_every: int = 50
    merge: bool = False
    tensorboard: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def rows_per_step(self) -> int:
        """Rows (packed rows, or padded batches of at most `row_tokens`) per optimizer step, over all processes."""
        return max(1, self.token_budget // self.row_tokens)

    def warmup(self, steps: int) -> int:
        import math

        return self.warmup_steps if self.warmup_steps > 0 else math.ceil(steps * self.warmup_ratio)


PRESETS: dict[str, dict[str, Any]] = {
    "mat-paper": {},
    # The paper's adapter and data, a learning rate that moves a LoRA in few epochs, no checkpointing (needs ~96 GB
    # at 10,240-token rows on an H200 for the 7B model).
    "fast": {"learning_rate": 1e-4, "epochs": 3, "warmup_steps": 10, "gradient_checkpointing": False},
    # Every projection of the language model, for a larger change of behaviour.
    "all-linear": {"lora_r": 16, "lora_alpha": 32, "lora_target": LANGUAGE_ALL, "learning_rate": 1e-4, "epochs": 3,
                   "warmup_steps": 10},
    # `--tiny`: seconds on a CPU, enough steps to see the loss fall. The records, renderer, max length and packed
    # 10,240-token rows are the real ones; a step takes one row instead of two, and an image at most 64 tokens.
    # MAT's Qwen2-VL script (GTA): 8 GPUs x 2 per device x 8 accumulation = 128 trajectories per step.
    "mat-qwen2vl": {"lora_r": 128, "lora_alpha": 16, "lora_dropout": 0.05, "lora_target": LANGUAGE_QKVO,
                    "modules_to_save": "lm_head", "learning_rate": 1e-5, "epochs": 7, "warmup_ratio": 0.01,
                    "weight_decay": 0.1, "adam_beta2": 0.95, "token_budget": 128 * MAX_LENGTH,
                    "loss_normalization": "sequence"},
    # MAT's MiniCPM-V script (GTA): 4 GPUs x 2 per device x 1 accumulation = 8 trajectories per step.
    "mat-minicpmv": {"lora_r": 64, "lora_alpha": 64, "lora_dropout": 0.05, "lora_target": LANGUAGE_QKVO,
                     "learning_rate": 1e-6, "epochs": 5, "warmup_ratio": 0.01, "weight_decay": 0.1,
                     "adam_beta2": 0.95, "row_tokens": 2 * MAX_LENGTH, "token_budget": 8 * MAX_LENGTH,
                     "loss_normalization": "sequence"},
    # DPO on the review's pairs, after SPORT (rkoonireddy/SPORT-Agents): their released LoRA is rank 64, alpha 16
    # (the model card of PengxiangLi/SPORT-Qwen2-VL-7B-Lora), their pair filter BLEU 0.3 (their code). beta 0.1 and
    # lr 1e-6 are TRL's DPOConfig defaults; 3 epochs transformers' default. A row holds whole pairs: 2 x max length.
    "sport-dpo": {"method": "dpo", "lora_r": 64, "lora_alpha": 16, "learning_rate": 1e-6, "epochs": 3,
                  "beta": 0.1, "pair_bleu": 0.3, "row_tokens": 2 * MAX_LENGTH, "token_budget": 4 * MAX_LENGTH},
    "tiny": {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "learning_rate": 1e-2, "epochs": 2,
             "max_pixels": 64 * 28 * 28, "token_budget": MAX_LENGTH, "gradient_checkpointing": False,
             "save_every": 2, "data_workers": 1},
}


def build_config(preset: str = "mat-paper", **overrides: Any) -> TrainConfig:
    """The preset's config with `overrides` (None values are ignored) on top. UserError for unknown names."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserError(f"unknown config fields: {', '.join(unknown)}")
    config = replace(TrainConfig(preset=preset), **PRESETS[preset])
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


def check(config: TrainConfig) -> None:
    """Refuse a config that cannot run, with the field to fix."""
    if not config.out:
        raise UserError("--out is required: the folder for the adapter, checkpoints and metrics")
    if not (config.data or config.db):
        raise UserError("give training data: --data FILE (a release file) or --db DB (approved trajectories)")
    if not (config.base or config.tiny):
        raise UserError("give --base MODEL (a local checkpoint folder or Hub id), or --tiny")
    if config.attention not in ("varlen", "sdpa", "eager"):
        raise UserError(f"--attention must be varlen, sdpa or eager, not {config.attention!r}")
    if config.overlong not in ("cut", "skip"):
        raise UserError(f"--overlong must be cut or skip, not {config.overlong!r}")
    if config.row_tokens < config.max_length:
        raise UserError(f"--row-tokens ({config.row_tokens}) must be at least --max-length ({config.max_length})")
    for name in ("lora_r", "epochs", "max_length", "save_every", "max_pixels"):
        if getattr(config, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive")
    if config.learning_rate <= 0:
        raise UserError("--learning-rate must be positive")
    if config.loss_normalization not in ("token", "sequence"):
        raise UserError(f"--loss-normalization must be token or sequence, not {config.loss_normalization!r}")
    if not 0 <= config.warmup_ratio < 1:
        raise UserError("--warmup-ratio must be in [0, 1)")
    if config.data_workers < 0:
        raise UserError("--data-workers must be 0 or more")


def check_world(config: TrainConfig, world: int) -> int:
    """Rows each process trains per optimizer step; ValueError when the processes cannot share a step evenly."""
    if config.rows_per_step % world:
        raise UserError(f"{world} processes cannot share a step of {config.rows_per_step} rows (--token-budget "
                         f"{config.token_budget} / --row-tokens {config.row_tokens}); use a process count that "
                         f"divides {config.rows_per_step}, or a --token-budget of a multiple of "
                         f"{world} x {config.row_tokens}")
    return config.rows_per_step // world
