"""Every command fails in one line: a read-only folder or database, a full disk, a port in use.

Read-only folders and a small disk are made for real with bubblewrap (a read-only bind mount, a 256 KiB
tmpfs: tests/support/jail.py), which holds even for root, who ignores file permissions.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent.steps import Step, Task, Trajectory
from tests.support.jail import jailed, one_line

ROOT = Path(__file__).resolve().parents[1]


def _records(path: Path) -> Path:
    steps = [Step(index=0, model_output="Thought: done.\nCode:\n```py\nfinal_answer('4')\n```", thought="done.",
                  code="final_answer('4')", is_final=True, final_answer="4")]
    record = Trajectory(task=Task("What is 2 + 2?"), system_prompt="You are a helpful agent.", steps=steps)
    path.write_text(json.dumps([record.to_record("sum01", answer="4")]))
    return path


def _run(args: list[str], *, read_only: list[Path] = (), small: Path | None = None) -> subprocess.CompletedProcess:
    """`python ARGS` with some folders read-only, or a 256 KiB disk at `small`, as root sees them too."""
    return jailed([sys.executable, *args], read_only=read_only, small=small)



@pytest.mark.bwrap
def test_review_import_into_a_read_only_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    one_line(_run(["-m", "review", "import", str(_records(tmp_path / "r.json")), "--db", str(folder / "mat.db")],
                   read_only=[folder]), str(folder / "mat.db"), "writable")


@pytest.mark.bwrap
def test_review_reads_of_a_database_in_a_read_only_folder(tmp_path):
    db = tmp_path / "data" / "mat.db"
    assert subprocess.run([sys.executable, "-m", "review", "import", str(_records(tmp_path / "r.json")), "--db",
                           str(db)], cwd=ROOT, capture_output=True).returncode == 0
    for leftover in db.parent.glob("mat.db-*"):  # as a database copied from elsewhere: no WAL files beside it
        leftover.unlink()
    result = _run(["-m", "review", "stats", "--db", str(db)], read_only=[db.parent])
    if result.returncode == 0:  # SQLite could read it after all: then the numbers must be right
        assert json.loads(result.stdout)["counts"]["total"] == 1
    else:
        one_line(result, str(db))


@pytest.mark.bwrap
def test_review_export_to_a_read_only_folder(tmp_path):
    db = tmp_path / "mat.db"
    subprocess.run([sys.executable, "-m", "review", "import", str(_records(tmp_path / "r.json")), "--db", str(db)],
                   cwd=ROOT, check=True, capture_output=True)
    out = tmp_path / "exports"
    out.mkdir()
    one_line(_run(["-m", "review", "export", "--db", str(db), "--format", "mmtraj", "--out", str(out / "all.json")],
                   read_only=[out]), str(out), "read-only")
    assert not (out / "all.json").exists()


@pytest.mark.bwrap
def test_review_import_onto_a_full_disk_loses_nothing_and_says_so(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    records = [json.loads(_records(tmp_path / "r.json").read_text())[0] | {"id": f"r{i}", "answer": "x" * 2000}
               for i in range(400)]
    big = tmp_path / "big.json"
    big.write_text(json.dumps(records))
    one_line(_run(["-m", "review", "import", str(big), "--db", str(disk / "mat.db")], small=disk), "full")


@pytest.mark.bwrap
def test_agent_exec_with_a_read_only_workdir(tmp_path):
    code = tmp_path / "step.py"
    code.write_text("print('hi')\n")
    work = tmp_path / "work"
    work.mkdir()
    one_line(_run(["-m", "agent", "exec", str(code), "--workdir", str(work)], read_only=[work]), str(work))


@pytest.mark.bwrap
def test_synthesis_with_its_database_in_a_read_only_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    one_line(_run(["-m", "synthesis", "run", "--tasks", "1", "--db", str(folder / "mat.db"),
                    "--base-url", "http://127.0.0.1:9/v1"], read_only=[folder]), str(folder / "mat.db"))


@pytest.mark.parametrize("port_env", ["taken", "abc"])
def test_the_app_on_a_port_in_use_or_no_port(port_env):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = str(holder.getsockname()[1]) if port_env == "taken" else port_env
        result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                                env={**os.environ, "GRADIO_SERVER_PORT": port})
    one_line(result, "GRADIO_SERVER_PORT")
