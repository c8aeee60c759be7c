"""The Synthesize tab in the launched app, driven over HTTP with gradio_client: start a run as a
background job, watch it per stage, stop and resume it, refused input leaves things as they were."""

from __future__ import annotations

import time

import pytest

from agent.config import Settings
from review.store import Filters, Store
from tests.support.app_server import running_app
from tests.support.synthesis_server import SynthesisServer

pytest.importorskip("gradio_client")


def table(value) -> dict[str, list]:
    """A stage table from gradio_client: stage -> [done, active, failed]."""
    return {row[0]: list(row[1:]) for row in value["data"]}


def wait_for(client, run_id: str, wanted: str, seconds: float = 90):
    deadline = time.monotonic() + seconds
    while True:
        state, stages, spend, failures, _plot = client.predict(run_id, api_name="/synthesis_refresh")
        if f": {wanted}" in state:
            return state, table(stages), spend, failures
        assert time.monotonic() < deadline, state
        time.sleep(0.5)


def form(server: SynthesisServer, tasks: int) -> dict:
    return {"base_url": server.url, "model": "gpt-4o-mini", "tasks": tasks, "concurrency": 2, "corpus": "",
            "seeds": "", "topics": "", "batch": False}


def test_start_stop_resume_and_watch_a_run(tmp_path):
    from gradio_client import Client

    settings = Settings(data_dir=tmp_path, db_path=tmp_path / "mat.db", base_url=None, api_key=None)
    with SynthesisServer(latency=0.3) as server, running_app(settings) as url:
        client = Client(url, verbose=False)
        refused = client.predict(**{**form(server, 2), "tasks": 0}, api_name="/synthesis_start")
        assert refused in (None, "", {"__type__": "update"})  # a warning; the run list is left as it was
        assert Store(settings.db).db.value("SELECT COUNT(*) FROM runs WHERE kind = 'synthesis'") == 0

        started = client.predict(**form(server, 3), api_name="/synthesis_start")
        run_id = started["value"] if isinstance(started, dict) else started  # the run list's new value
        assert run_id
        store = Store(settings.db)
        deadline = time.monotonic() + 60
        while not store.db.value("SELECT COUNT(*) FROM synthesis_tasks"):  # under way
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert "job running" in client.predict(run_id, api_name="/synthesis_refresh")[0]
        state = client.predict(run_id, api_name="/synthesis_stop")[0]
        wait_for(client, run_id, "stopped")

        client.predict(run_id, api_name="/synthesis_resume")
        state, stages, spend, failures = wait_for(client, run_id, "done")
        assert stages["replay"] == [3, 0, 0] and failures["data"] == []
        assert {row[0] for row in spend["data"]} >= {"queries", "describe", "check", "solve", "judge"}
        assert f"/?source=synthesis:{run_id}" in state and "$" in state
        assert len(store.query(Filters(source=f"synthesis:{run_id}")).rows) == 3
