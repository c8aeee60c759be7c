"""`python -m train --method dpo` end to end on pairs made from review events in a real store: from the base, on
two processes against one, from an SFT adapter; its refusals (one line, nothing stored changes).

Two processes (DDP over gloo, torch.distributed.run) follow the one-process curve at the same global batch: each
step's 2 rows (a pair's two sides always share a row) are split one per process, every pair weighs
1 / (pairs in the step) wherever it runs, and the rewards are summed over both processes. The reference forward
runs through the same wrapped model with the adapter off, so DDP sees one backward per row. As for supervised
tuning (tests/test_train_distributed.py), the sums differ only in order: 1e-5 relative (measured: bit for bit).
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from review.store import Store
from tests.support.preferences import preference_store
from tests.support.train_records import TINY_PIXELS
from core.db import Database
from train.runs import list_runs
from train.trainer import read_metrics

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--max-length", "2048", "--row-tokens", "4096", "--token-budget", "4096", "--learning-rate", "1e-2"]
# one pair per row, two rows per step: 3 pairs x 2 epochs = 3 steps of 2 pairs, which 2 processes can share
SPLIT = ["--max-length", "1024", "--row-tokens", "1024", "--token-budget", "2048", "--max-steps", "3",
         "--learning-rate", "1e-2", "--lora-dropout", "0"]
FIGURES = ("loss", "lr", "tokens", "pairs", "reward_accuracy", "reward_margin", "logps_chosen", "logps_rejected")


@pytest.fixture()
def db(tmp_path, mmtraj_records, release_image_dir) -> Path:
    return preference_store(tmp_path / "mat.db", mmtraj_records, release_image_dir)


@pytest.fixture(scope="module")
def one_process(mmtraj_records, release_image_dir, tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """(store, output folder, the finished run) of `--method dpo --tiny` on one process."""
    folder = tmp_path_factory.mktemp("dpo")
    db = preference_store(folder / "mat.db", mmtraj_records, release_image_dir)
    result = train("--method", "dpo", "--tiny", "--db", db, "--out", folder / "one", *SPLIT,
                   "--cache-dir", folder / "cache")
    assert result.returncode == 0, result.stderr[-2000:]
    return db, folder / "one", result


def train(*args, launcher: tuple[str, ...] = ("-m", "train")) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *launcher, *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)


def stored(db: Path) -> list:
    with Store(db) as store:
        return store.db.read("SELECT * FROM events ORDER BY id") + store.db.read(
            "SELECT id, status, record FROM trajectories ORDER BY seq")


def test_tiny_dpo_from_the_base_learns_the_preferences_and_logs_rewards(one_process, vlm_photo):
    db, out, result = one_process
    assert "edit: 2 pairs; 1 near-duplicate dropped" in result.stderr and "total: 3 pairs" in result.stderr
    rows = read_metrics(out / "metrics.jsonl")
    assert [row["step"] for row in rows] == [1, 2, 3] and all(row["pairs"] == 2 for row in rows)
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # the policy starts as its reference
    assert rows[0]["reward_margin"] == pytest.approx(0, abs=1e-6)
    assert rows[-1]["loss"] < rows[0]["loss"] and rows[-1]["reward_margin"] > 0
    assert rows[-1]["reward_accuracy"] == 1.0 and rows[-1]["reward_chosen"] > rows[-1]["reward_rejected"]
    (run,) = list_runs(Database(db))
    assert run.run.status == "done" and run.run.config["method"] == "dpo" and run.data.endswith("(preference pairs)")

    from agent.models.local_vlm import LocalVLM
    from tests.support.tiny import ask

    tuned = LocalVLM(out / "tiny-base", adapter=out / "adapter", max_pixels=TINY_PIXELS)
    assert tuned.generate(ask(images=(vlm_photo,)), max_new_tokens=3).output_tokens > 0


def test_dpo_on_two_processes_follows_the_one_process_curve(one_process):
    db, one, _ = one_process
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    two = one.parent / "two"
    result = train("--method", "dpo", "--tiny", "--db", db, "--out", two, *SPLIT, "--cache-dir", one.parent / "cache",
                   launcher=("-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port, "-m",
                             "train"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("adapter: ") == 1
    expected, got = read_metrics(one / "metrics.jsonl"), read_metrics(two / "metrics.jsonl")
    assert [row["step"] for row in got] == [1, 2, 3]
    for figure in FIGURES:
        assert [row[figure] for row in got] == pytest.approx([row[figure] for row in expected], rel=1e-5), figure


def test_dpo_from_an_sft_adapter_has_it_as_reference_and_serves_as_one_stacked_adapter(db, tmp_path):
    sft = tmp_path / "sft"
    first = train("--tiny", "--db", db, "--out", sft, "--max-steps", "2", *SMALL, "--cache-dir", tmp_path / "cache")
    assert first.returncode == 0, first.stderr[-2000:]
    out = tmp_path / "dpo"
    result = train("--method", "dpo", "--preset", "tiny", "--base", sft / "tiny-base", "--adapter", sft / "adapter",
                   "--db", db, "--out", out, "--merge", "--epochs", "2", *SMALL, "--cache-dir", tmp_path / "cache")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = read_metrics(out / "metrics.jsonl")
    # a fresh LoRA on base + SFT: the policy starts equal to the reference only if the reference is base + SFT
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-6) and rows[-1]["loss"] < rows[0]["loss"]
    stacked = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert stacked["r"] == stacked["lora_alpha"] == 16  # rank 8 (SFT) + 8 (DPO), scale 1

    from agent.models.local_vlm import LocalVLM

    def logits(model) -> torch.Tensor:
        with torch.no_grad():
            inputs = model._inputs([{"role": "user", "content": [{"type": "text", "text": "Thought: I will"}]}])
            return model.model(**inputs).logits[0, -1]

    served = logits(LocalVLM(sft / "tiny-base", adapter=out / "adapter", max_pixels=TINY_PIXELS))
    merged = logits(LocalVLM(out / "merged", max_pixels=TINY_PIXELS))  # base + SFT + DPO, merged in training
    sft_only = logits(LocalVLM(sft / "tiny-base", adapter=sft / "adapter", max_pixels=TINY_PIXELS))
    torch.testing.assert_close(served, merged, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(served, sft_only, atol=1e-3)


def run_refused(argv: list, capsys) -> str:
    from core.cli import run_main
    from train.cli import main

    capsys.readouterr()  # what the test printed before
    assert run_main(lambda: main([str(arg) for arg in argv])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_an_adapter_for_another_base_is_refused_in_one_line_before_anything_is_stored(
        db, tmp_path, tiny_checkpoint, capsys):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from agent.models.tiny import build_tiny_minicpmv
    from train.presets import LANGUAGE_QKV

    other = AutoModelForImageTextToText.from_pretrained(build_tiny_minicpmv(tmp_path / "minicpmv"))
    get_peft_model(other, LoraConfig(r=4, target_modules=LANGUAGE_QKV)).save_pretrained(tmp_path / "other")
    before, out = stored(db), tmp_path / "dpo"
    err = run_refused(["--method", "dpo", "--preset", "tiny", "--base", tiny_checkpoint, "--adapter",
                       tmp_path / "other", "--db", db, "--out", out], capsys)
    assert f"adapter {tmp_path / 'other'} was trained for another base (minicpmv): it adapts " in err
    assert not out.exists() and stored(db) == before and list_runs(Database(db)) == []


def test_a_pair_whose_prompt_no_longer_renders_is_refused_in_one_line(db, tmp_path, tiny_checkpoint, capsys):
    with Store(db) as store:
        picture = next(ref.path for ref in store.detail("Tp3nWc8e").images if ref.path is not None)
    picture.unlink()
    before, out = stored(db), tmp_path / "dpo"
    err = run_refused(["--method", "dpo", "--preset", "tiny", "--base", tiny_checkpoint, "--db", db, "--out", out],
                      capsys)
    assert ("error: the edit pair at step 2 of Tp3nWc8e: its prompt no longer renders (its picture "
            "'data/open_llava_next/chartqa/train/png/multi_col_2841.png' is missing from the store)") in err
    assert not out.exists() and stored(db) == before and list_runs(Database(db)) == []
