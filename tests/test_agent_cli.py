"""`python -m agent run` as a user runs it: a real subprocess against a local OpenAI-compatible server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.support.openai_server import FakeOpenAI

REPO = Path(__file__).resolve().parents[1]


def _agent(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100", **env}
    return subprocess.run([sys.executable, "-m", "agent", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_run_prints_steps_and_the_final_answer(tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), "green").save(photo)
    look = "Thought: measure it.\nCode:\n```py\nfrom PIL import Image\nprint(Image.open('attachments/photo.png').size)\n```"
    answer = "Thought: done.\nCode:\n```py\nfinal_answer('40x30')\n```"
    with FakeOpenAI(replies=[look, answer]) as server:
        env = {"MAT_BASE_URL": server.url, "MAT_API_KEY": "sk-test", "MAT_MODEL": "mat-test",
               "MAT_DATA_DIR": str(tmp_path / "data")}
        done = _agent(["run", "How big is the photo?", "--image", str(photo)], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Step 1" in done.stdout and "(40, 30)" in done.stdout
    assert "final answer" in done.stdout and "40x30" in done.stdout
    assert server.requests[0].image_urls[0].startswith("data:image/png;base64,")


def test_run_against_an_unreachable_endpoint_says_so_without_a_traceback(tmp_path):
    env = {"MAT_BASE_URL": "http://127.0.0.1:9/v1", "MAT_API_KEY": "sk-test", "MAT_MODEL": "m",
           "MAT_DATA_DIR": str(tmp_path / "data")}
    done = _agent(["run", "Hello?"], env, tmp_path)
    assert done.returncode == 1
    assert "127.0.0.1:9" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_run_with_nothing_configured_explains_the_setup(tmp_path):
    done = _agent(["run", "Hello?"], {"MAT_DATA_DIR": str(tmp_path / "data")}, tmp_path)
    assert done.returncode == 2
    assert "MAT_BASE_URL" in done.stdout and "--tiny" in done.stdout
