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


def test_run_record_is_a_release_record_in_the_release_wording(tmp_path, mmtraj_records):
    from agent.prompt import default_system_prompt
    from review.formats import check_records

    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), "green").save(photo)
    talk = "Thought: I know this without code."
    fail = "Thought: read it.\nCode:\n```py\nsize = open('missing.txt').read()\n```"
    quiet = "Thought: keep the size.\nCode:\n```py\nfrom PIL import Image\nsize = Image.open('attachments/photo.png').size\n```"
    answer = "Thought: done.\nCode:\n```py\nfinal_answer(f'{size[0]}x{size[1]}')\n```"
    out = tmp_path / "out" / "run.json"
    with FakeOpenAI(replies=[talk, fail, quiet, answer]) as server:
        env = {"MAT_BASE_URL": server.url, "MAT_API_KEY": "sk-test", "MAT_MODEL": "mat-test",
               "MAT_DATA_DIR": str(tmp_path / "data")}
        done = _agent(["run", "How big is the photo?", "--image", str(photo), "--record", str(out)], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr

    [record] = __import__("json").loads(out.read_text())
    check_records([record])  # importable as is
    turns = [t["value"] for t in record["conversations"]]
    assert turns[0] == default_system_prompt("mat")
    assert turns[1] == "Picture 1: <img>attachments/photo.png</img>\nTask: How big is the photo?\n Attachment: attachments/photo.png;  "
    release_parse_error = next(
        t["value"] for r in mmtraj_records for t in r["conversations"] if "Error in code parsing" in t["value"]
    ).removeprefix("[OUTPUT OF STEP 1] ")
    assert turns[3] == f"[OUTPUT OF STEP 0] {release_parse_error}"
    assert turns[5].startswith("[OUTPUT OF STEP 1] Error: Code execution failed due to the following error:\n"
                               "[Errno 2] No such file or directory: 'missing.txt'\nNow let's retry:")
    assert turns[7] == ("[OUTPUT OF STEP 2] Observation:\nNo observation found from the code execution. "
                        "You should use `print` function if need some information from the code execution.")
    assert turns[8] == answer and record["answer"] == "40x30"

    first = server.chat_requests[0].body
    assert first["stop"] == ["<end_action>", "Observation:"]
    task = first["messages"][1]["content"]
    assert [p["type"] for p in task] == ["text", "image_url", "text"]
    assert task[0]["text"] == "Picture 1: " and task[2]["text"].startswith("\nTask: How big is the photo?")
