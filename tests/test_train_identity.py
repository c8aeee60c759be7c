"""Run identity: a resume with other inputs or beside a run still in the folder, an --out that belongs to another
run and a corrupt image are refused in one line before any model loads; a run only rotates its own checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.files import hold_lock
from tests.support.train_records import release_images, short_records, short_release, write_records
from train.identity import fingerprint, resume_differences
from train.presets import build_config
from train.trainer import read_metrics

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(mmtraj_records, tmp_path_factory) -> tuple[Path, Path]:
    return short_release(mmtraj_records, tmp_path_factory.mktemp("data"), 6)


def _train(dataset, out: Path, *extra: str, data: Path | None = None) -> subprocess.CompletedProcess:
    records, images = dataset
    argv = [sys.executable, "-m", "train", "--data", str(data or records), "--images", str(images), "--tiny",
            "--out", str(out), "--cache-dir", str(out.parent / "cache"), "--max-length", "2048", "--row-tokens",
            "2048", "--token-budget", "2048", "--max-steps", "2", "--save-every", "1", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=ROOT,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def _refused(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2 and "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_fingerprint_says_what_differs():
    base = fingerprint(build_config("tiny"), "data-a", "proc")
    assert resume_differences(base, fingerprint(build_config("tiny"), "data-a", "proc")) == []
    other = fingerprint(build_config("tiny", learning_rate=0.02, out="elsewhere", save_every=9), "data-b", "proc")
    assert resume_differences(base, other) == ["data data-a -> data-b (other records or images)",
                                               "learning_rate 0.01 -> 0.02"]


def test_resume_with_other_inputs_or_beside_a_running_one_is_refused_and_the_run_keeps_its_checkpoints(dataset, mmtraj_records, tmp_path):
    out = tmp_path / "run"
    first = _train(dataset, out)
    assert first.returncode == 0, first.stderr[-2000:]
    before = read_metrics(out / "metrics.jsonl")
    with hold_lock(out / "run.lock", "the test"):  # a run still training (or still stopping) in this folder
        line = _refused(_train(dataset, out))
    assert line.startswith(f"error: the training run in {out} is being worked on by another process "
                           f"(pid {os.getpid()})")
    line = _refused(_train(dataset, out, "--learning-rate", "0.02"))
    assert line.startswith(f"error: --out {out} holds a run with other inputs (learning_rate 0.01 -> 0.02)")
    changed = write_records(short_records(mmtraj_records[1:7]), tmp_path / "other.json")
    assert "data " in _refused(_train(dataset, out, data=changed))
    assert read_metrics(out / "metrics.jsonl") == before
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]  # its own, rotated
    again = _train(dataset, out)  # the same inputs resume (here: nothing left to do)
    assert again.returncode == 0 and "resuming from checkpoint-2: 2 of 2 steps done" in again.stderr


def test_an_out_folder_of_another_run_is_refused_and_left_alone(dataset, tmp_path):
    out = tmp_path / "theirs"
    (out / "checkpoint-5000").mkdir(parents=True)
    (out / "checkpoint-5000" / "weights.bin").write_bytes(b"someone else's")
    (out / "metrics.jsonl").write_text('{"step": 5000}\n')
    line = _refused(_train(dataset, out))
    assert line.startswith(f"error: --out {out} holds files of another run or program (checkpoint-5000)")
    assert (out / "checkpoint-5000" / "weights.bin").read_bytes() == b"someone else's"
    assert (out / "metrics.jsonl").read_text() == '{"step": 5000}\n' and not (out / "tiny-base").exists()


def test_a_corrupt_image_is_refused_before_training(dataset, mmtraj_records, tmp_path):
    records, _ = dataset
    images = release_images(mmtraj_records, tmp_path / "images")
    first = json.loads(Path(records).read_text())
    name = next(r for r in first if "<img>" in r["conversations"][1]["value"])
    from agent.steps import Trajectory

    target = images / Trajectory.from_conversations(name["conversations"]).task.images[0]
    target.write_bytes(target.read_bytes()[:60])  # a PNG cut short
    line = _refused(_train((records, images), tmp_path / "run"))
    assert line.startswith(f"error: record {name['id']!r}: an image cannot be read")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
