"""DPO on two processes (DDP over gloo, torch.distributed.run) follows the one-process curve at the same global
batch: each step's 2 rows (a pair's two sides always share a row) are split one per process, every pair weighs
1 / (pairs in the step) wherever it runs, and the rewards are summed over both processes. The reference forward
runs through the same wrapped model with the adapter off, so DDP sees one backward per row. As for supervised
tuning (tests/test_train_distributed.py), the sums differ only in order: 1e-5 relative (measured: bit for bit).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.preferences import preference_store
from train.trainer import read_metrics

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("loss", "lr", "tokens", "pairs", "reward_accuracy", "reward_margin", "logps_chosen", "logps_rejected")


def _run(launcher: list[str], db: Path, out: Path) -> subprocess.CompletedProcess:
    args = ["--method", "dpo", "--tiny", "--db", str(db), "--out", str(out), "--max-length", "1024",
            "--row-tokens", "1024", "--token-budget", "2048", "--max-steps", "3", "--learning-rate", "1e-2",
            "--lora-dropout", "0", "--cache-dir", str(out.parent / "cache")]
    return subprocess.run(launcher + args, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def _port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def test_dpo_on_two_processes_follows_the_one_process_curve(tmp_path, mmtraj_records, release_image_dir):
    db = preference_store(tmp_path / "mat.db", mmtraj_records, release_image_dir)
    one = _run([sys.executable, "-m", "train"], db, tmp_path / "one")
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", _port(),
                "-m", "train"]
    two = _run(torchrun, db, tmp_path / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("adapter: ") == 1
    expected, got = read_metrics(tmp_path / "one" / "metrics.jsonl"), read_metrics(tmp_path / "two" / "metrics.jsonl")
    assert [row["step"] for row in got] == [1, 2, 3] and all(row["pairs"] == 2 for row in got)
    for figure in FIGURES:
        assert [row[figure] for row in got] == pytest.approx([row[figure] for row in expected], rel=1e-5), figure
