"""Training MiniCPM-V 4.6 / 4.7 (native transformers classes) on tiny checkpoints: the served prompt and
processor, labels on assistant turns only, padded length-grouped batches whose rows get the logits they get alone,
LoRA on the language model's q/k/v, and `python -m train` end to end with the adapter served by LocalVLM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agent.models.tiny import MINICPMV_TILE, build_tiny_minicpmv
from agent.render import assistant_text, render_messages
from tests.support.train_records import release_images, short_records, write_records
from train.data import IGNORE, Encoder, iter_release
from train.padding import pad, padding_fraction, plan_batches
from train.presets import build_config
from train.trainer import load_model, load_processor

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 4 * MINICPMV_TILE * MINICPMV_TILE  # the pixel budget: an image becomes an overview and slices


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tiny")
    return {arch: build_tiny_minicpmv(folder / arch, arch=arch) for arch in ("minicpmv4_6", "minicpmv4_7")}


@pytest.fixture(scope="module")
def three(mmtraj_records, tmp_path_factory) -> tuple[Path, Path]:
    """Two release records with pictures and one without, system prompts shortened, their images drawn."""
    folder = tmp_path_factory.mktemp("data")
    pictures = [r for r in mmtraj_records if "<img>" in r["conversations"][1]["value"]][:2]
    text_only = [r for r in mmtraj_records if "<img>" not in r["conversations"][1]["value"]][:1]
    images = release_images(pictures, folder / "images")
    return write_records(short_records(pictures + text_only), folder / "three.json"), images


def _examples(checkpoint: Path, three):
    processor = load_processor(str(checkpoint))
    records = list(iter_release(*three))
    return processor, records, Encoder(processor, max_pixels=BUDGET).examples(records)


@pytest.mark.parametrize("arch", ["minicpmv4_6", "minicpmv4_7"])
def test_training_input_is_what_local_vlm_serves_and_labels_are_the_assistant_turns(arch, checkpoints, three):
    from agent.models.local_vlm import LocalVLM

    processor, records, examples = _examples(checkpoints[arch], three)
    served_by = LocalVLM(checkpoints[arch], max_pixels=BUDGET)
    raw = json.loads(three[0].read_text())
    for record, example, original in zip(records, examples, raw, strict=True):
        files = [three[1] / name for name in record.trajectory.task.images]
        served = served_by._inputs(render_messages(record.trajectory, files)[:2])
        first_label = int((example.labels != IGNORE).nonzero()[0])
        assert torch.equal(example.input_ids[:first_label], served["input_ids"][0])
        if record.images:
            assert "<image>" in processor.tokenizer.decode(example.input_ids)
            torch.testing.assert_close(example.pixel_values, served["pixel_values"])
            assert torch.equal(example.target_sizes, served["target_sizes"]) and example.n_images == len(record.images)
        labelled = example.labels.tolist()
        runs, current = [], []
        for token in labelled + [IGNORE]:
            if token == IGNORE and current:
                runs.append(processor.tokenizer.decode(current))
                current = []
            elif token != IGNORE:
                current.append(token)
        expected = [assistant_text(turn["value"]) + "<|im_end|>"
                    for turn in original["conversations"] if turn["from"] == "assistant"]
        assert runs == expected, original["id"]


@pytest.mark.parametrize("arch", ["minicpmv4_6", "minicpmv4_7"])
def test_a_padded_batch_gives_each_row_the_logits_and_loss_it_gets_alone(arch, checkpoints, three):
    processor, records, examples = _examples(checkpoints[arch], three)
    model = load_model(str(checkpoints[arch]), build_config("tiny", lora_dropout=0.0), torch.float32).eval()
    with_types = "mm_token_type_ids" in processor.model_input_names
    pad_id = processor.tokenizer.pad_token_id
    batch = pad(examples, pad_id=pad_id, pad_to_multiple=64, with_types=with_types)
    assert batch.images == sum(len(r.images) for r in records) >= 2 and batch.padding > 0 and batch.inputs["attention_mask"].sum() == batch.tokens
    labels = batch.label_tokens
    with torch.no_grad():
        together = model(**batch.inputs, use_cache=False, num_items_in_batch=torch.tensor(labels))
        summed = 0.0
        for row, example in enumerate(examples):
            alone = model(**pad([example], pad_id=pad_id, with_types=with_types).inputs, use_cache=False,
                          num_items_in_batch=torch.tensor(labels))
            torch.testing.assert_close(together.logits[row, : len(example)], alone.logits[0], atol=1e-4, rtol=1e-4)
            summed += float(alone.loss)
    assert float(together.loss) == pytest.approx(summed, rel=1e-4)


def test_length_grouping_keeps_batches_in_the_budget_and_padding_small(checkpoints, mmtraj_records, tmp_path):
    records_file = write_records(short_records(mmtraj_records), tmp_path / "all.json")
    processor = load_processor(str(checkpoints["minicpmv4_6"]))
    records = list(iter_release(records_file, release_images(mmtraj_records, tmp_path / "images")))
    examples = Encoder(processor, max_pixels=BUDGET).examples(records)
    budget = 2 * max(len(e) for e in examples)
    groups = plan_batches(examples, budget)
    assert sorted(i for g in groups for i in g) == list(range(len(examples)))
    assert all(len(g) * max(len(examples[i]) for i in g) <= budget for g in groups)
    in_order = [[i] for i in range(len(examples))]  # no grouping: one row per step, nothing padded
    random_pairs = [list(range(len(examples)))[i:i + 2] for i in range(0, len(examples), 2)]
    assert padding_fraction(examples, in_order) == 0
    assert padding_fraction(examples, groups) < padding_fraction(examples, random_pairs)
    print(f"padding fraction over {len(examples)} release records, budget {budget}: "
          f"{padding_fraction(examples, groups):.3f} (unsorted pairs {padding_fraction(examples, random_pairs):.3f})")


def test_python_m_train_tunes_minicpmv_and_local_vlm_serves_the_adapter(checkpoints, three, tmp_path, vlm_photo):
    from safetensors.torch import load_file

    from agent.models.local_vlm import LocalVLM
    from tests.support.tiny import ask
    from train.trainer import read_metrics

    data, images = three
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "train", "--data", str(data), "--images", str(images),
         "--base", str(checkpoints["minicpmv4_6"]), "--preset", "tiny", "--out", str(out), "--max-steps", "2",
         "--max-length", "2048", "--row-tokens", "2048", "--token-budget", "2048", "--epochs", "2",
         "--learning-rate", "1e-2", "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=240, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and all(0 <= r["padding_fraction"] < 0.5 for r in rows)
    assert any(r["images_per_s"] > 0 for r in rows) and "length-grouped batches" in result.stderr
    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    adapted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in weights}
    assert adapted == {"q_proj", "k_proj", "v_proj", "in_proj_qkv"}
    assert all("language_model" in name for name in weights)
    assert any(name.endswith("lora_B.weight") and tensor.abs().sum() > 0 for name, tensor in weights.items())
    tuned = LocalVLM(checkpoints["minicpmv4_6"], adapter=out / "adapter", max_pixels=BUDGET)
    assert type(tuned.model).__name__ .startswith("PeftModel")
    assert tuned.generate(ask(images=(vlm_photo,)), max_new_tokens=3).output_tokens == 3


def test_minicpmv_2_remote_code_checkpoints_are_refused_in_one_line(three, tmp_path):
    base = tmp_path / "MiniCPM-V-2_6"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "minicpmv", "auto_map": {}}))
    data, images = three
    result = subprocess.run(
        [sys.executable, "-m", "train", "--data", str(data), "--images", str(images), "--base", str(base),
         "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: MiniCPM-V-2_6 is a 'minicpmv' checkpoint") and "trust_remote_code" in last
    assert "MiniCPM-V 4.6 / 4.7" in last
