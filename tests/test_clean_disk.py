"""Clean disks: a killed app's sandbox folders are removed at the next start (never a live one, of this process or
another), and agent run folders beyond MAT_KEEP_RUNS go as runs end, never a run in progress."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from agent.config import Settings
from agent.sandbox import Sandbox
from agent.sandbox.host import remove_stale_folders
from agent.session import prune_runs, runs_usage, start_run

ROOT = Path(__file__).resolve().parents[1]
OWN_A_SANDBOX = """
import sys, time
from pathlib import Path
from agent.sandbox import Sandbox
box = Sandbox(Path(sys.argv[1]))
print(box._private, flush=True)
time.sleep(120)
"""


def _sandbox_in_another_process(tmp: Path, workdir: Path) -> tuple[subprocess.Popen, Path]:
    process = subprocess.Popen([sys.executable, "-c", OWN_A_SANDBOX, str(workdir)], cwd=ROOT, stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "TMPDIR": str(tmp)})
    return process, Path(process.stdout.readline().strip())


def test_a_killed_apps_sandbox_folders_go_and_live_ones_stay(tmp_path, monkeypatch):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    killed, killed_folder = _sandbox_in_another_process(tmp, tmp_path / "w1")
    alive, alive_folder = _sandbox_in_another_process(tmp, tmp_path / "w2")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    try:
        with Sandbox(tmp_path / "w3") as here:
            being_made = tmp / "mat-sandbox-justnow"
            being_made.mkdir()  # no owner lock yet: too young to judge
            killed.kill()
            killed.wait()
            assert killed_folder.is_dir()
            assert remove_stale_folders(tmp) == 1
            assert not killed_folder.exists()
            assert alive_folder.is_dir() and here._private.is_dir() and being_made.is_dir()
            assert here.run("print(6 * 7)").output.strip() == "42"  # the live sandbox still works
    finally:
        alive.kill()
        alive.wait()
    assert remove_stale_folders(tmp) == 1 and not alive_folder.exists()


def test_run_folders_beyond_the_setting_go_as_runs_end_but_never_a_live_one(tmp_path):
    runs = tmp_path / "runs"
    for day in range(1, 6):
        name = f"2000010{day}-120000-0000000{day}"
        (runs / name / ".cache").mkdir(parents=True)
        (runs / f"{name}-images").mkdir()
        (runs / f"{name}.json").write_text("{}")
        (runs / name / "out.txt").write_bytes(b"x" * 1000)
    (runs / "uploads" / "abc").mkdir(parents=True)
    assert runs_usage(runs) == (5, 5 * 1002)

    settings = Settings(data_dir=tmp_path, keep_runs=2)
    live = start_run(settings, "a task in progress")
    try:
        assert prune_runs(runs, 0) == 6  # five runs and the upload folder; the live run stays
        assert [p.name for p in runs.iterdir() if p.name != "uploads"] == [live.workdir.name]
        for day in range(1, 4):  # older runs come back (another app's), then this run ends
            (runs / f"2000010{day}-120000-0000000{day}").mkdir()
    finally:
        live.close()
    assert sorted(p.name for p in runs.iterdir() if p.name != "uploads") == ["20000103-120000-00000003",
                                                                              live.workdir.name]
