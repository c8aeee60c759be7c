"""`python -m train` fails in one line naming the path and what to do, and writes nothing halfway: a read-only
output folder or database folder is refused before any work, a full disk mid-run leaves no half checkpoint
(read-only mounts and a small disk made for real with bubblewrap, tests/support/jail.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from core.db import Database
from tests.support.jail import jailed, one_line
from tests.support.train_records import short_release
from train.runs import list_runs

pytestmark = pytest.mark.bwrap


@pytest.fixture(scope="module")
def dataset(mmtraj_records, tmp_path_factory) -> tuple[Path, Path]:
    return short_release(mmtraj_records, tmp_path_factory.mktemp("data"), 4)


def _argv(dataset, base: Path, out: Path, db: Path, cache: Path) -> list[str]:
    data, images = dataset
    return [sys.executable, "-m", "train", "--data", str(data), "--images", str(images), "--base", str(base),
            "--preset", "tiny", "--out", str(out), "--db", str(db), "--cache-dir", str(cache), "--max-length", "2048",
            "--row-tokens", "2048", "--token-budget", "2048", "--max-steps", "2", "--save-every", "1"]


def test_a_read_only_output_folder_is_refused_before_any_work(dataset, tiny_checkpoint, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    result = jailed(_argv(dataset, tiny_checkpoint, locked / "run", tmp_path / "mat.db", tmp_path / "cache"),
                    read_only=[locked])
    one_line(result, str(locked / "run"), "read-only", "writable disk")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "mat.db").exists()  # nothing encoded or recorded


def test_a_database_in_a_read_only_folder_is_refused_before_any_work(dataset, tiny_checkpoint, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    result = jailed(_argv(dataset, tiny_checkpoint, tmp_path / "run", locked / "mat.db", tmp_path / "cache"),
                    read_only=[locked])
    one_line(result, str(locked / "mat.db"), "writable")
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_a_full_disk_mid_run_is_one_line_and_leaves_no_half_checkpoint(dataset, tiny_checkpoint, tmp_path):
    disk, db = tmp_path / "disk", tmp_path / "mat.db"
    disk.mkdir()
    out = disk / "run"
    train = " ".join(_argv(dataset, tiny_checkpoint, out, db, tmp_path / "cache"))
    # The tiny run's files before its first checkpoint fit in 64 KiB; the checkpoint (~90 KiB) does not.
    result = jailed(["sh", "-c", f"{train}; code=$?; find {out} -mindepth 1 | sort; exit $code"], small=disk,
                    size=64 * 1024, timeout=240)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {out / 'checkpoint-1'}: no space left on the disk: free some space, or choose "
                      "another disk"]
    assert result.stderr.rstrip().endswith(errors[0])
    left = [Path(line).relative_to(out).as_posix() for line in result.stdout.split()]
    assert left == ["metrics.jsonl", "run.json", "run.lock", "train_config.json"]  # no half checkpoint, no pointer to one
    (run,) = list_runs(Database(db))
    assert run.run.status == "failed" and run.run.message == errors[0].removeprefix("error: ")
