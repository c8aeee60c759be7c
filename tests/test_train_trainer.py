"""The trainer end to end on a tiny Qwen2-VL on the CPU: CLI, metrics, run record, adapter, merge, kill -9 resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.db import Database
from tests.support.train_records import short_release
from train.runs import list_runs
from train.trainer import read_metrics

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(mmtraj_records, tmp_path_factory) -> tuple[Path, Path]:
    return short_release(mmtraj_records, tmp_path_factory.mktemp("data"), 12)


def _argv(dataset, out: Path, db: Path, *extra: str, steps: int = 4) -> list[str]:
    data, images = dataset
    return [sys.executable, "-m", "train", "--data", str(data), "--images", str(images), "--tiny",
            "--out", str(out), "--db", str(db), "--max-length", "2048", "--row-tokens", "2048",
            "--token-budget", "2048", "--max-steps", str(steps), "--save-every", "1", "--learning-rate", "1e-2",
            "--lora-dropout", "0.1", "--cache-dir", str(out.parent / "token-cache"), *extra]


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)


def test_tiny_run_writes_metrics_a_run_record_an_adapter_chat_loads_and_a_merged_model(dataset, tmp_path, vlm_photo):
    out, db = tmp_path / "run", tmp_path / "mat.db"
    result = _run(_argv(dataset, out, db, "--merge"))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for key in ("loss", "lr", "grad_norm", "tokens_per_s", "padding_fraction", "images_per_s"):
        assert all(isinstance(r[key], float) for r in rows), key
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[0]["lr"] == pytest.approx(1e-2) and rows[-1]["lr"] < rows[0]["lr"]  # cosine
    assert sum(r["images_per_s"] > 0 for r in rows) >= 1
    (run,) = list_runs(Database(db))
    assert (run.run.status, run.run.done, run.run.total) == ("done", 4, 4)
    assert run.adapter_dir == str(out / "adapter") and run.run.config["lora_r"] == 8
    assert run.last_loss == pytest.approx(rows[-1]["loss"])
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == "LORA" and (out / "adapter" / "adapter_model.safetensors").is_file()

    from safetensors.torch import load_file

    from agent.models.local_vlm import LocalVLM
    from tests.support.tiny import ask

    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    assert weights and all("language_model" in name and "visual" not in name for name in weights)
    assert any(name.endswith("lora_B.weight") and tensor.abs().sum() > 0 for name, tensor in weights.items())
    tuned = LocalVLM(out / "tiny-base", adapter=out / "adapter", max_pixels=64 * 28 * 28)
    assert tuned.generate(ask(images=(vlm_photo,)), max_new_tokens=3).output_tokens > 0
    merged = LocalVLM(out / "merged", max_pixels=64 * 28 * 28)
    assert merged.generate(ask(), max_new_tokens=4).text == tuned.generate(ask(), max_new_tokens=4).text


def test_kill_9_then_resume_continues_the_same_loss_curve(dataset, tmp_path):
    db = tmp_path / "mat.db"
    straight = _run(_argv(dataset, tmp_path / "straight", db, steps=8))
    assert straight.returncode == 0, straight.stderr[-2000:]
    expected = [r["loss"] for r in read_metrics(tmp_path / "straight" / "metrics.jsonl")]

    out = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(_argv(dataset, out, db, steps=8), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 200
    while len(read_metrics(out / "metrics.jsonl")) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = len(read_metrics(out / "metrics.jsonl"))
    assert 2 <= done_before < 8, "the run must be killed mid-way"

    resumed = _run(_argv(dataset, out, db, steps=8))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from checkpoint-" in resumed.stderr
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert [r["loss"] for r in rows] == pytest.approx(expected, rel=1e-5)
    assert {run.run.status for run in list_runs(Database(db))} == {"done"}
