"""What a newcomer met in the Chat tab's first hour, through the launched app and gradio_client.

The model is the local OpenAI-compatible server started here, answering with scripted turns.
"""

from __future__ import annotations

import time

from gradio_client import Client, handle_file
from PIL import Image

from agent.config import Settings
from tests.support.app_server import message_texts, running_app
from tests.support.openai_server import FakeOpenAI

CHOICE = "mat-test (endpoint)"


def _settings(tmp_path, url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", base_url=url, api_key="sk-test", model="mat-test", step_timeout=30)


def _chat(client: Client, text: str, files=()):
    return client.submit({"text": text, "files": [handle_file(str(f)) for f in files]}, [], CHOICE, "mat", 8, "",
                         api_name="/chat")


def test_a_running_step_says_running_code_with_the_seconds_so_far(tmp_path):
    slow = "Thought: wait a little.\nCode:\n```py\nimport time\ntime.sleep(2.5)\nprint('slept')\n```<end_action>"
    done = "Thought: done.\nCode:\n```py\nfinal_answer('rested')\n```<end_action>"
    with FakeOpenAI(replies=[slow, done]) as server, running_app(_settings(tmp_path, server.url)) as url:
        job = _chat(Client(url, verbose=False), "Rest, then answer")
        history = job.result(timeout=60)[0]
        titles = [((m.get("metadata") or {}).get("title") or "") for out in job.outputs() for m in out[0]]
    live = [m for out in job.outputs() for m in out[0] if "running code" in ((m.get("metadata") or {}).get("title") or "")]
    shown = message_texts(live[:1])[0] if live else ""
    assert shown.startswith("wait a little\\.") and "```python\nimport time" in shown
    running = [t for t in titles if "running code" in t]
    assert running and running[0].startswith("Step 1 · running code · ")
    seconds = {int(t.rsplit("·", 1)[1].strip().removesuffix(" s")) for t in running}
    assert {1, 2} <= seconds
    assert "Final answer:** rested" in message_texts(history)[-1]


def test_a_huge_upload_is_scaled_once_before_any_tool_sees_it(tmp_path):
    photo = tmp_path / "huge.png"
    Image.new("RGB", (6000, 4000), (30, 140, 60)).save(photo)
    look = ("Thought: size.\nCode:\n```py\nfrom PIL import Image\n"
            "print(Image.open('attachments/huge.png').size)\n```<end_action>")
    done = "Thought: done.\nCode:\n```py\nfinal_answer('seen')\n```<end_action>"
    with FakeOpenAI(replies=[look, done]) as server, running_app(_settings(tmp_path, server.url)) as url:
        started = time.monotonic()
        history = _chat(Client(url, verbose=False), "How big?", [photo]).result(timeout=90)[0]
        took = time.monotonic() - started
    texts = message_texts(history)
    assert any("huge.png is 6000×4000 (24 megapixels)" in t and "scaled to 5016×3344" in t for t in texts)
    assert any("(5016, 3344)" in t for t in texts)
    assert took < 30


def test_task_markup_is_text_and_the_answer_too(tmp_path):
    done = "Thought: echo.\nCode:\n```py\nfinal_answer('<i>fine</i>')\n```<end_action>"
    with FakeOpenAI(replies=[done]) as server, running_app(_settings(tmp_path, server.url)) as url:
        history = _chat(Client(url, verbose=False), "Say <b>bold</b> **twice**").result(timeout=60)[0]
    texts = message_texts(history)
    assert texts[0] == "Say &lt;b&gt;bold&lt;/b&gt; \\*\\*twice\\*\\*"
    assert texts[-1] == "**Final answer:** &lt;i&gt;fine&lt;/i&gt;"
