"""DPO on the review's step-level preference pairs (`review.pairs`), packed as supervised tuning packs.

`python -m train --method dpo --db DB` runs the same loop as supervised tuning (`train.trainer.train`); this
module holds what differs (`method`):

- **Data.** Each pair gives two sequences, its prompt followed by the chosen step, and by the rejected step,
  encoded through the one renderer exactly as the agent is served at that step (`agent.models.encode_chat`);
  only the candidate step's own tokens (its text and turn end) are labelled. Both go into the token cache side
  by side; a pair is trained only when both sides fit `--max-length`.
- **Rows.** A pair's two sequences always share a row (packed rows for the Qwen2-VL family: several pairs per
  row, each sequence attending only to itself through `mat_varlen`; MiniCPM-V: padded rows, one sequence each),
  so a row's loss is complete and accumulation over rows and processes stays exact.
- **Reference.** The same weights with the adapter switched off (PEFT's `disable_adapter()`), no second copy.
  Starting from an SFT adapter (`--adapter`), it is merged into the base weights in memory first, so the
  reference is the SFT model and a fresh LoRA learns the preference; the adapter written at the end is the SFT
  adapter and the new one stacked (rank r_sft + r_dpo), one adapter that serves as LocalVLM and vLLM load it.
- **Loss.** The sigmoid DPO loss (Rafailov et al. 2023) on each pair's log-probabilities, summed over its
  candidate tokens, as TRL's `loss_type="sigmoid"` computes it, and TRL's rewards (beta x log-ratio): the step's
  loss is the mean over its pairs. TRL's `DPOTrainer` keeps this loss inside its `_compute_loss`, which also runs
  the model on padded [chosen; rejected] batches, so it is not callable on packed rows; the formula is a line.
- **Metrics.** Reward accuracy, margin, the chosen and rejected rewards and log-probabilities go to
  metrics.jsonl with the loss.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from train.cache import TokenCache
from train.data import DataError, Encoder, FileReader, Record
from train.presets import TrainConfig
from train.stream import Item

BASE_PREFIX = "base_model.model."  # PEFT's prefix of every saved adapter tensor
SIDES = ("chosen", "rejected")


# ---------------------------------------------------------------- the loss


def dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta: float):
    """(per-pair losses, chosen rewards, rejected rewards): -log sigmoid(beta x (chosen log-ratio - rejected
    log-ratio)), the rewards being beta x each side's log-ratio (detached)."""
    import torch.nn.functional as F

    chosen = beta * (policy_chosen - reference_chosen)
    rejected = beta * (policy_rejected - reference_rejected)
    return -F.logsigmoid(chosen - rejected), chosen.detach(), rejected.detach()


def owners(batch):
    """The example each position of the batch belongs to, -1 on padding (shaped like the labels)."""
    import torch

    inputs = batch.inputs
    labels = inputs["labels"]
    if "cu_seq_lens_q" not in inputs:  # padded rows: one example per row
        rows = torch.arange(labels.shape[0])[:, None].expand_as(labels)
        return torch.where(inputs["attention_mask"].bool().cpu(), rows, -1)
    bounds = inputs["cu_seq_lens_q"].cpu()
    lengths = (bounds[1:] - bounds[:-1])[: len(batch.ids)]
    owner = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    return torch.cat([owner, torch.full((labels.shape[1] - owner.shape[0],), -1)])[None]


def sequence_logps(logits, labels, owner, count: int):
    """Each example's log-probability of its labelled tokens, summed (a (count,) tensor). Only labelled positions
    go through the softmax, so memory is that of the candidate steps, not of the vocabulary times the row."""
    import torch
    import torch.nn.functional as F

    from train.data import IGNORE

    targets = labels[:, 1:]
    labelled = targets != IGNORE
    scores = logits[:, :-1][labelled].float()
    logps = -F.cross_entropy(scores, targets[labelled], reduction="none")
    whose = owner[:, 1:].to(logps.device)[labelled]
    return torch.zeros(count, device=logps.device, dtype=logps.dtype).index_add(0, whose, logps)


def pair_weights(weights, owner, count: int):
    """Each example's weight in the step's loss (every labelled token of an example carries it)."""
    import torch

    per_example = torch.zeros(count, dtype=weights.dtype, device=weights.device)
    labelled = weights != 0
    return per_example.index_put((owner.to(weights.device)[labelled],), weights[labelled])


def make_loss(beta: float) -> Callable:
    """The step objective for `train.trainer`: (model, inputs, labels, weights, batch) -> (loss, stats)."""

    def loss(model, inputs, labels, weights, batch):
        import torch
        from accelerate.utils import extract_model_from_parallel

        owner, count = owners(batch), len(batch.ids)
        with torch.no_grad(), extract_model_from_parallel(model).disable_adapter():
            reference = sequence_logps(model(**inputs, use_cache=False).logits, labels, owner, count)
        policy = sequence_logps(model(**inputs, use_cache=False).logits, labels, owner, count)
        losses, chosen, rejected = dpo_loss(policy[0::2], policy[1::2], reference[0::2], reference[1::2], beta)
        weight = pair_weights(weights, owner, count)[0::2]
        real = (weight > 0).to(chosen.dtype)
        stats = torch.stack([real.sum(), ((chosen > rejected) * real).sum(), ((chosen - rejected) * real).sum(),
                             (chosen * real).sum(), (rejected * real).sum(),
                             (policy[0::2].detach() * real).sum(), (policy[1::2].detach() * real).sum()])
        return (losses * weight).sum(), stats

    return loss


def metrics(stats: list[float]) -> dict[str, Any]:
    """The step's DPO figures from the summed stats of its rows (all processes)."""
    pairs, correct, margin, chosen, rejected, logp_chosen, logp_rejected = stats
    share = 1 / max(pairs, 1)
    return {"pairs": int(pairs), "reward_accuracy": correct * share, "reward_margin": margin * share,
            "reward_chosen": chosen * share, "reward_rejected": rejected * share,
            "logps_chosen": logp_chosen * share, "logps_rejected": logp_rejected * share}


# ---------------------------------------------------------------- data


class CandidateEncoder(Encoder):
    """Encodes a pair's side (prompt + one candidate step) with only the candidate step labelled."""

    def __init__(self, processor, *, max_pixels: int, max_length: int) -> None:
        super().__init__(processor, max_pixels=max_pixels, max_length=max_length, overlong="skip")

    def encode(self, record: Record, images: list[bytes]):
        encoded, status = super().encode(record, images)
        if encoded is not None:
            start, _ = self.assistant_spans(encoded.input_ids.tolist())[-1]
            encoded.labelled[:start] = False
        return encoded, status


def pair_records(config: TrainConfig, tally=None) -> Iterator[Record]:
    """Both sides of every pair the store's review events give, chosen first. A pair whose prompt no longer
    renders stops the run with one line naming it (or, with --skip-missing-images, is left out)."""
    from review.pairs import iter_pairs
    from review.store import Store

    if not Path(config.db).is_file():
        raise DataError(f"{config.db}: no such database")
    reader, found = FileReader(), 0
    with Store(config.db) as store:
        for pair in iter_pairs(store, threshold=config.pair_bleu, tally=tally):
            problem = pair.unrenderable()
            if problem is not None and config.skip_missing_images:
                continue
            if problem is not None:
                raise DataError(f"{pair.describe()}: its prompt no longer renders ({problem}); import the record "
                                "again with its pictures, or pass --skip-missing-images")
            found += 1
            for side in SIDES:
                yield Record(f"{pair.id}/{side}", pair.trajectory(side), pair.image_paths(), reader)
    if not found:
        raise DataError(f"{config.db}: no preference pairs to train on; edit a step's thought or code in Review, or "
                        f"approve and reject two runs of one task (python -m review pairs --db {config.db})")


def pair_indices(cache: TokenCache) -> list[tuple[int, int]]:
    """(chosen, rejected) positions in the cache of the pairs whose two sides were both encoded."""
    ids = [entry["id"] for entry in cache.index]
    return [(i, i + 1) for i in range(len(ids) - 1)
            if ids[i].endswith("/chosen") and ids[i + 1] == ids[i].removesuffix("/chosen") + "/rejected"]


def prepare_pairs(config: TrainConfig, log: Callable[[str], None]):
    """Check the adapter, derive the pairs, encode both sides of each into the token cache (built once per
    content and settings), all before any model loads."""
    from tqdm import tqdm

    from review.pairs import Tally, describe_counts
    from train import cache
    from train.trainer import Prepared, base_model_path, load_processor

    check(config)
    base = base_model_path(config)
    adapter_key = check_adapter(Path(config.adapter), base) if config.adapter else ""
    processor = load_processor(base)
    description = f"{config.db} (preference pairs)"
    tally = Tally()
    found = cache.scan(pair_records(config, tally), skip_missing_images=config.skip_missing_images,
                       where=description)
    log("; ".join(describe_counts(tally.as_dict(), config.pair_bleu)))
    settings = cache.settings_key(base, max_pixels=config.max_pixels, max_length=config.max_length,
                                  overlong="skip", labels="candidate step")
    folder = found.folder(Path(config.cache_dir) if config.cache_dir else cache.default_root(), settings)
    encoded = cache.find(folder)
    if encoded is None:
        encoder = CandidateEncoder(processor, max_pixels=config.max_pixels, max_length=config.max_length)
        with tqdm(total=found.records, desc="encode", unit="sequence", dynamic_ncols=True) as bar:
            encoded = cache.build(folder, pair_records(config), encoder.encode, found, max_length=config.max_length,
                                  progress=lambda n: bar.update(1))
    pairs = len(pair_indices(encoded))
    if not pairs:
        raise DataError(f"no preference pair fits --max-length {config.max_length} on both sides")
    log(f"{pairs} pairs of {found.records // 2} fit --max-length {config.max_length} on both sides")
    data_key = hashlib.sha256(f"{found.key}:{adapter_key}".encode()).hexdigest()
    return Prepared(encoded, description, base, data_key, settings)


def check(config: TrainConfig) -> None:
    if config.data:
        raise DataError("--method dpo trains on the pairs the store's review events give: give --db, not --data")
    if not config.db:
        raise DataError("--method dpo needs --db: the store whose review events give the preference pairs")
    if config.beta <= 0:
        raise DataError("--beta must be positive")


# ---------------------------------------------------------------- rows and weights


def layout(packed: bool, cache: TokenCache, processor, config: TrainConfig, device, log: Callable[[str], None]):
    """(rows, collate): each pair's two sequences side by side in one row; packed rows of `row_tokens` for the
    Qwen2-VL family, padded rows (pairs of similar length, `row_tokens` in all) for MiniCPM-V."""
    from train.packing import first_fit_decreasing
    from train.padding import plan_batches
    from train.trainer import collate_for

    pairs = pair_indices(cache)
    lengths = cache.lengths
    if packed:
        plan = first_fit_decreasing([lengths[c] + lengths[r] for c, r in pairs], config.row_tokens)
    else:
        plan = plan_batches([max(lengths[c], lengths[r]) for c, r in pairs], config.row_tokens // 2)
    log(f"{len(pairs)} pairs in {len(plan)} rows of at most {config.row_tokens:,} tokens")
    return [[index for pair in row for index in pairs[pair]] for row in plan], collate_for(packed, processor, device)


def pair_items(steps, cache: TokenCache, config: TrainConfig, rank: int, world: int) -> list[Item]:
    """This process's rows of every step, each sequence weighted 1 / (pairs in the step)."""
    items = []
    for step in steps:
        share = 2.0 / sum(len(row) for row in step.rows[: step.real])
        for position in range(rank, len(step.rows), world):
            row, filler = step.rows[position], position >= step.real
            items.append(Item(row, [0.0 if filler else share] * len(row), filler))
    return items


# ---------------------------------------------------------------- the model and the adapter


def load_policy(base: str, config: TrainConfig, dtype):
    """The base (with the SFT adapter merged into its weights when `--adapter` is given) and a fresh LoRA."""
    from train.trainer import load_base, prepare_for_training

    model = load_base(base, config, dtype)
    if config.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, config.adapter).merge_and_unload()
    return prepare_for_training(model, config, Path(base).name)


def check_adapter(adapter: Path, base: str) -> str:
    """Refuse, in one line, an adapter that is not a plain LoRA or that another base was trained with (a module
    it adapts is missing from `base`, or has other shapes); returns a digest of its weights. Reads only the
    adapter's header and the base's config (the model is built on the meta device)."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForImageTextToText

    settings_file, weights_file = adapter / "adapter_config.json", adapter / "adapter_model.safetensors"
    if not (settings_file.is_file() and weights_file.is_file()):
        raise DataError(f"no PEFT adapter at {adapter} (adapter_config.json and adapter_model.safetensors)")
    settings = json.loads(settings_file.read_text())
    if settings.get("peft_type") != "LORA" or settings.get("use_dora") or settings.get("use_rslora") \
            or settings.get("rank_pattern") or settings.get("alpha_pattern"):
        raise DataError(f"{adapter} is not a plain LoRA adapter; DPO starts from the base or from a plain LoRA")
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(base))
    modules, parameters = dict(model.named_modules()), dict(model.named_parameters(remove_duplicate=False))
    trained_for = settings.get("base_model_name_or_path") or "another model"
    with safe_open(weights_file, "pt") as weights:
        for key in weights.keys():
            shape = tuple(weights.get_slice(key).get_shape())
            problem = _misfit(key.removeprefix(BASE_PREFIX), shape, modules, parameters, Path(base).name)
            if problem:
                raise DataError(f"adapter {adapter} was trained for another base ({Path(trained_for).name}): "
                                f"{problem}; give the base it was trained on, or start from the base (no --adapter)")
    digest = hashlib.sha256()
    with weights_file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _misfit(name: str, shape: tuple, modules: dict, parameters: dict, base: str) -> str | None:
    """How one adapter tensor does not fit the base, or None."""
    found = re.fullmatch(r"(.+)\.lora_([AB])\.weight", name)
    if found is None:  # a module trained in full (modules_to_save)
        if name not in parameters:
            return f"it holds {name}, which {base} has not"
        wanted = tuple(parameters[name].shape)
        return None if wanted == shape else f"its {name} is {shape}, {base}'s is {wanted}"
    module = modules.get(found.group(1))
    if module is None or not hasattr(module, "in_features"):
        return f"it adapts {found.group(1)}, which {base} has not as a linear layer"
    size, wanted = (shape[1], module.in_features) if found.group(2) == "A" else (shape[0], module.out_features)
    return None if size == wanted else f"its {found.group(1)} is {size} wide, {base}'s is {wanted}"


def stack_adapters(first: Path, second: Path) -> None:
    """Rewrite the adapter in `second` as `first` and `second` in one LoRA of rank r1 + r2: base + result equals
    base + first (merged) + second. Modules only one adapts get zeros for the other's part; modules trained in
    full come from `second` where it has them, else from `first`."""
    import torch
    from safetensors.torch import load_file, save_file

    from core.files import atomic_write

    configs = [json.loads((folder / "adapter_config.json").read_text()) for folder in (first, second)]
    tensors = [load_file(folder / "adapter_model.safetensors") for folder in (first, second)]
    ranks = [config["r"] for config in configs]
    scales = [config["lora_alpha"] / config["r"] for config in configs]
    adapted = sorted({key.removesuffix(".lora_A.weight") for part in tensors for key in part
                      if key.endswith(".lora_A.weight")})
    stacked: dict[str, Any] = {}
    for module in adapted:
        a_parts, b_parts = [], []
        template = next(part for part in tensors if f"{module}.lora_A.weight" in part)
        width, height = template[f"{module}.lora_A.weight"].shape[1], template[f"{module}.lora_B.weight"].shape[0]
        for part, rank, scale in zip(tensors, ranks, scales, strict=True):
            a = part.get(f"{module}.lora_A.weight", torch.zeros(rank, width))
            b = part.get(f"{module}.lora_B.weight", torch.zeros(height, rank))
            a_parts.append(a)
            b_parts.append(b * scale)
        stacked[f"{module}.lora_A.weight"] = torch.cat(a_parts).contiguous()
        stacked[f"{module}.lora_B.weight"] = torch.cat(b_parts, dim=1).contiguous()
    for part in tensors:  # second last: its full modules win
        stacked.update({key: value for key, value in part.items() if ".lora_" not in key})
    config = dict(configs[1], r=sum(ranks), lora_alpha=sum(ranks),
                  target_modules=_either(configs[0]["target_modules"], configs[1]["target_modules"]),
                  modules_to_save=configs[1].get("modules_to_save") or configs[0].get("modules_to_save"))
    save_file(stacked, second / "adapter_model.safetensors.tmp", metadata={"format": "pt"})
    (second / "adapter_model.safetensors.tmp").replace(second / "adapter_model.safetensors")
    with atomic_write(second / "adapter_config.json") as handle:
        json.dump(config, handle, indent=2)


def _either(first, second) -> str:
    """One PEFT `target_modules` regex matching what either adapter targets (a regex, or a list of names)."""
    def regex(targets) -> str:
        if isinstance(targets, str):
            return targets
        return rf"(?:.*\.)?(?:{'|'.join(re.escape(name) for name in targets)})"

    return f"(?:{regex(first)})|(?:{regex(second)})"


def save(out: Path, model, processor, config: TrainConfig, accelerator):
    """The adapter (stacked on the SFT adapter it started from), and with --merge the merged model."""
    from train.trainer import save_outputs

    adapter, merged = save_outputs(out, model, processor, config, accelerator)
    if config.adapter and accelerator.is_main_process:
        stack_adapters(Path(config.adapter), adapter)
    return adapter, merged


def method(config: TrainConfig):
    """What DPO does differently from supervised tuning, for `train.trainer.train`."""
    from train.trainer import Method

    return Method(prepare_data=prepare_pairs, load_model=load_policy, layout=layout, items=pair_items,
                  loss=make_loss(config.beta), metrics=metrics, save=save)
