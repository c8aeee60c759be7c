"""Stop keeps what was streamed: a stopped step that Save to Review stores marked as stopped, through the launched
app and gradio_client, against a local OpenAI-compatible server that writes slowly."""

from __future__ import annotations

import time

from gradio_client import Client

from agent.chat import STOPPED_NOTICE
from agent.config import Settings
from review.formats import export
from review.store import Filters, Store
from tests.support.app_server import message_texts, running_app
from tests.support.openai_server import FakeOpenAI

THOUGHT = "I will look at the picture carefully, one corner at a time, before I write any code. " * 4
SLOW_TURN = f"Thought: {THOUGHT}\nCode:\n```py\nprint('never run')\n```<end_action>"


def _titles(history: list[dict]) -> list[str]:
    return [(message.get("metadata") or {}).get("title") or "" for message in history]


def test_stop_keeps_the_streamed_step_and_save_stores_it_marked_stopped(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", base_url="", api_key="sk-test", model="mat-test")
    with FakeOpenAI(replies=[SLOW_TURN], chunk_delay=0.1) as server:
        settings.base_url = server.url
        with running_app(settings) as url:
            client = Client(url, verbose=False)
            job = client.submit({"text": "Describe the picture", "files": []}, [], "mat-test (endpoint)", "mat", 8, "",
                                api_name="/chat")
            deadline = time.monotonic() + 30
            while not any("writing" in t for out in job.outputs() for t in _titles(out[0])):
                assert time.monotonic() < deadline, "the step never started streaming"
                time.sleep(0.1)
            time.sleep(0.5)
            client.predict(api_name="/stop")
            outputs = job.result(timeout=30)
            saved = client.predict(api_name="/save")
    history = outputs[0]
    stopped = [m for m in history if "stopped" in ((m.get("metadata") or {}).get("title") or "")]
    assert [t.split(" · ")[:2] for t in _titles(stopped)] == [["Step 1", "stopped"]]
    kept = message_texts(stopped)[0].replace("\\", "")  # as read: Markdown's escapes dropped
    assert kept.startswith("I will") and THOUGHT.startswith(kept)  # what had been written when Stop came
    assert message_texts(history)[-1] == STOPPED_NOTICE

    trajectory_id = saved.split("`")[1]
    with Store(settings.db) as store:
        record = store.detail(trajectory_id).record
        export(store, "mmtraj", tmp_path / "out.json")
    assert record["stopped"] is True
    last = record["conversations"][-1]  # what was written when stopped, and no observation after it
    assert last["from"] == "assistant" and last["value"].startswith("Thought: I will")
    assert SLOW_TURN.startswith(last["value"]) and "never run" not in last["value"]

    with Store(tmp_path / "again.db") as again:
        again.import_file(tmp_path / "out.json", source="round-trip")
        (row,) = again.query(Filters(), limit=5).rows
        assert again.detail(row.id).record == record  # lossless through export and import, the mark included
