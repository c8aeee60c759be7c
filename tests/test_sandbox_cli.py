"""`python -m agent exec FILE` through a real subprocess: output, exit codes, the one-line reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def agent_exec(tmp_path: Path, code: str, *options: str, level: str = "") -> subprocess.CompletedProcess:
    script = tmp_path / "step.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(REPO), "MAT_SANDBOX": level, "OPENAI_API_KEY": "sk-cli-secret"}
    return subprocess.run([sys.executable, "-m", "agent", "exec", str(script), *options],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_code_that_runs_exits_0_and_prints_the_observation(tmp_path):
    done = agent_exec(tmp_path, "import os\nprint('sum', sum(range(5)))\nprint(os.environ.get('OPENAI_API_KEY'))")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "sum 10\nNone\n"
    assert "sandbox: " in done.stderr


def test_final_answer_is_printed(tmp_path):
    done = agent_exec(tmp_path, "final_answer('Paris')")
    assert (done.returncode, done.stdout) == (0, "Final answer: Paris\n")


def test_an_exception_exits_1_with_one_line(tmp_path):
    done = agent_exec(tmp_path, "print('before')\nx = {}\ny = x['missing']\n")
    assert done.returncode == 1
    assert done.stdout == "before\n"
    assert done.stderr.splitlines()[-1] == "KeyError: 'missing' (line 3: y = x['missing'])"
    assert "Traceback" not in done.stderr


def test_attachment_is_seen_by_the_path_the_user_wrote(tmp_path):
    (tmp_path / "notes.txt").write_text("meet at noon\n")
    done = agent_exec(tmp_path, "print(open('notes.txt').read().upper(), end='')", "--attach", "notes.txt")
    assert (done.returncode, done.stdout) == (0, "MEET AT NOON\n")


def test_timeout_exits_1_with_the_reason(tmp_path):
    done = agent_exec(tmp_path, "while True:\n    pass\n", "--timeout", "1")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith("step exceeded 1 s and was stopped")


@pytest.mark.parametrize("level", ["fallback", ""])
def test_blocked_code_exits_1(tmp_path, level):
    done = agent_exec(tmp_path, "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\n", level=level)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()[-1]) > 0
    assert "Traceback" not in done.stderr
    if level == "fallback":
        assert "sandbox: fallback" in done.stderr


def test_missing_attachment_is_refused(tmp_path):
    done = agent_exec(tmp_path, "print('never')", "--attach", "nowhere.png")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.strip().splitlines() == ["attachment not found: nowhere.png"]


def test_workdir_option_keeps_the_files(tmp_path):
    workdir = tmp_path / "run"
    done = agent_exec(tmp_path, "open('.cache/out.txt', 'w').write('hi')", "--workdir", str(workdir))
    assert done.returncode == 0, done.stderr
    assert (workdir / ".cache/out.txt").read_text() == "hi"
    assert "files: .cache/out.txt" in done.stderr


def test_missing_file_is_one_clear_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "agent", "exec", "absent.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == ["cannot read absent.py: No such file or directory"]
