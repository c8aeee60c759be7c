"""`python -m review` as a user runs it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def review(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "review", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_import_export_and_stats(tmp_path: Path, mmtraj_path: Path):
    db = tmp_path / "mat.db"
    first = review("import", mmtraj_path, "--db", db, "--source", "release")
    assert first.returncode == 0, first.stderr
    assert "30 added, 0 already present (skipped)" in first.stdout
    again = review("import", mmtraj_path, "--db", db)
    assert "0 added, 30 already present (skipped)" in again.stdout

    out = tmp_path / "all.json"
    exported = review("export", "--db", db, "--format", "mmtraj", "--out", out)
    assert exported.returncode == 0 and "30 trajectories written" in exported.stdout
    assert json.loads(out.read_text()) == json.loads(mmtraj_path.read_text())

    none_approved = review("export", "--db", db, "--format", "mmtraj", "--out", tmp_path / "ok.json",
                           "--status", "approved")
    assert "0 trajectories written" in none_approved.stdout
    assert json.loads((tmp_path / "ok.json").read_text()) == []

    stats = review("stats", "--db", db)
    assert stats.returncode == 0
    data = json.loads(stats.stdout)
    assert data["counts"]["pending"] == 30 and data["tools"]["final_answer"] == 30


def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path: Path, mmtraj_path: Path):
    db = tmp_path / "mat.db"
    truncated = tmp_path / "cut.json"
    truncated.write_text(mmtraj_path.read_text()[:3000])
    cases = [
        (("import", truncated, "--db", db), "cut.json: the file ends early: truncated JSON at line"),
        (("import", tmp_path / "absent.json", "--db", db), "absent.json: no such file or folder"),
        (("import", "owner/dataset", "--db", db), "Hugging Face Hub is offline"),
        (("export", "--db", tmp_path / "nothing.db", "--format", "hf", "--out", tmp_path / "x"), "no such database"),
    ]
    for args, message in cases:
        result = review(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: ") and message in result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert review("export", "--db", db, "--format", "csv", "--out", tmp_path / "x").returncode == 2
