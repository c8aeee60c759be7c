"""Two processes on the CPU (gloo) against one: DDP through torch.distributed.run and FSDP through accelerate
launch follow the one-process curve at the same global batch, and write one adapter that serves.

The global batch is 2 packed rows of 2,048 tokens; each process trains 1 of them per step. The learning rate
comes from a schedule stepped once per optimizer step, so it must be equal. The loss of a step is the same
weighted sum over the same tokens (`train.loss`); the processes only add it up in another order (an all-reduce
of float32 gradients and losses), which moves a float32 sum by a few ulps (~1e-7 relative) per step; Adam turns a
gradient that close into an update as close, so over 3 steps the losses agree to 1e-5 relative (measured here:
bit for bit).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.train_records import short_release
from train.trainer import read_metrics

ROOT = Path(__file__).resolve().parents[1]
FSDP_CPU = """compute_environment: LOCAL_MACHINE
distributed_type: FSDP
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_state_dict_type: SHARDED_STATE_DICT
  fsdp_cpu_ram_efficient_loading: false
  fsdp_reshard_after_forward: true
mixed_precision: 'no'
num_machines: 1
num_processes: 2
use_cpu: true
"""


@pytest.fixture(scope="module")
def dataset(mmtraj_records, tmp_path_factory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("data")
    return (*short_release(mmtraj_records, folder, 12), folder / "cache")


@pytest.fixture(scope="module")
def one_process(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "run"
    result = _run([sys.executable, "-m", "train"], dataset, out)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def _args(dataset, out: Path, token_budget: int = 4096) -> list[str]:
    data, images, cache = dataset
    return ["--data", str(data), "--images", str(images), "--tiny", "--out", str(out), "--cache-dir", str(cache),
            "--max-length", "2048", "--row-tokens", "2048", "--token-budget", str(token_budget), "--max-steps", "3",
            "--save-every", "2", "--lora-dropout", "0"]


def _run(launcher: list[str], dataset, out: Path, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(launcher + _args(dataset, out, **kwargs), capture_output=True, text=True, timeout=180,
                          cwd=ROOT, env=env)


def _port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def _torchrun() -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", _port(),
            "-m", "train"]


def _same_curve(one: Path, two: Path) -> None:
    expected, got = read_metrics(one / "metrics.jsonl"), read_metrics(two / "metrics.jsonl")
    assert [r["step"] for r in got] == [1, 2, 3]
    assert [r["lr"] for r in got] == [r["lr"] for r in expected]  # one schedule step per optimizer step
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in expected], rel=1e-5)
    assert [r["tokens"] for r in got] == [r["tokens"] for r in expected]  # every row once, none twice


def _adapter_serves(out: Path, one: Path, vlm_photo: str) -> None:
    import torch
    from safetensors.torch import load_file

    from agent.models.local_vlm import LocalVLM
    from tests.support.tiny import ask

    assert sorted(p.name for p in (out / "adapter").iterdir()).count("adapter_model.safetensors") == 1
    got, expected = load_file(out / "adapter" / "adapter_model.safetensors"), \
        load_file(one / "adapter" / "adapter_model.safetensors")
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():  # full weights, not one process's shard
        assert got[name].shape == tensor.shape
        torch.testing.assert_close(got[name], tensor, rtol=1e-4, atol=1e-6)
    tuned = LocalVLM(out / "tiny-base", adapter=out / "adapter", max_pixels=64 * 28 * 28)
    assert tuned.generate(ask(images=(vlm_photo,)), max_new_tokens=2).output_tokens > 0


def test_ddp_on_two_processes_follows_the_one_process_curve(dataset, one_process, tmp_path, vlm_photo):
    out = tmp_path / "ddp"
    result = _run(_torchrun(), dataset, out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("adapter: ") == 1
    _same_curve(one_process, out)
    _adapter_serves(out, one_process, vlm_photo)


def test_fsdp_on_two_processes_follows_the_curve_and_saves_the_full_adapter(dataset, one_process, tmp_path,
                                                                            vlm_photo):
    config = tmp_path / "fsdp.yaml"
    config.write_text(FSDP_CPU)
    out = tmp_path / "fsdp"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
                "--main_process_port", _port(), "-m", "train"]
    result = _run(launcher, dataset, out)
    assert result.returncode == 0, result.stderr[-3000:]
    _same_curve(one_process, out)
    _adapter_serves(out, one_process, vlm_photo)


def test_a_world_size_that_does_not_divide_the_step_is_refused_in_one_line(dataset, tmp_path):
    out = tmp_path / "odd"
    result = _run(_torchrun(), dataset, out, token_budget=2048)  # one row per step, two processes
    assert result.returncode != 0  # (the launcher adds its own report of the failed processes)
    assert result.stderr.count("error: 2 processes cannot share a step of 1 rows") == 1
    assert str(ROOT / "train") not in result.stderr  # no traceback from our code
    assert not (out / "tiny-base").exists()  # refused before any model was built
