"""The Synthesize tab in the launched app, driven over HTTP with gradio_client: start a run as a
background job, watch it per stage from its first second, stop and resume it; refused input leaves
things as they were; keys go only where they were typed; a reload gets the last run's form back."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from agent.config import Settings
from review.store import Filters, Store
from tests.support.app_server import running_app
from tests.support.synthesis_server import SynthesisServer

pytest.importorskip("gradio_client")


def table(value) -> dict[str, list]:
    """A stage table from gradio_client: stage -> [done, active, failed]."""
    return {row[0]: list(row[1:]) for row in value["data"]}


def wait_for(client, run_id: str, status: str, seconds: float = 120):
    """Everything the view shows, once the run has `status`."""
    deadline = time.monotonic() + seconds
    while True:
        shown = client.predict(run_id, api_name="/synthesis_refresh")
        if f": {status}" in shown[0]:
            return shown
        assert time.monotonic() < deadline, shown[0]
        time.sleep(0.5)


def until(client, run_id: str, words: str, seconds: float = 60) -> str:
    """The state line, once it says `words`."""
    deadline = time.monotonic() + seconds
    while words not in (state := client.predict(run_id, api_name="/synthesis_refresh")[0]):
        assert time.monotonic() < deadline, state
        time.sleep(0.3)
    return state


def form(server: SynthesisServer, tasks: int, **changes) -> dict:
    return {"base_url": server.url, "api_key": "", "model": "gpt-4o-mini", "tasks": tasks, "concurrency": 2,
            "corpus": "", "seeds": "", "topics": "", "batch": False, **changes}


def started(client, values: dict) -> str:
    value = client.predict(**values, api_name="/synthesis_start")
    return value["value"] if isinstance(value, dict) else value  # the run list's new value


def test_start_stop_resume_and_watch_a_run_from_its_first_second(tmp_path):
    from gradio_client import Client

    settings = Settings(data_dir=tmp_path, db_path=tmp_path / "mat.db", base_url=None, api_key=None)
    with SynthesisServer(latency=3.0) as server, running_app(settings) as url:
        client = Client(url, verbose=False)
        fresh = client.predict(None, api_name="/synthesis_refresh")
        # A fresh tab: short texts where the charts would be empty axes.
        assert fresh[4]["visible"] is False and fresh[5]["visible"] is True and "once a run starts" in fresh[5]["value"]
        assert fresh[6]["visible"] is False and "first answers" in fresh[7]["value"]
        refused = client.predict(**form(server, 0), api_name="/synthesis_start")
        assert refused in (None, "", {"__type__": "update"})  # a warning; the run list is left as it was
        assert Store(settings.db).db.value("SELECT COUNT(*) FROM runs WHERE kind = 'synthesis'") == 0
        unreachable = started(client, form(server, 1, base_url="http://127.0.0.1:9/v1"))
        state = until(client, unreachable, "did not start")
        assert "cannot reach http://127.0.0.1:9/v1" in state and "Traceback" not in state
        assert Store(settings.db).db.value("SELECT COUNT(*) FROM runs WHERE kind = 'synthesis'") == 0

        run_id = started(client, form(server, 3))
        lines, charts = [], []
        deadline = time.monotonic() + 90
        overlap = re.compile(r"embedder loading \d+ s · [1-9]\d* requests? in flight")
        while not any(overlap.search(line) for line in lines):
            shown = client.predict(run_id, api_name="/synthesis_refresh")
            lines.append(shown[0])
            charts.append(shown[4].get("value") if shown[4].get("visible") else None)
            assert time.monotonic() < deadline, lines[-3:]
            time.sleep(0.3)
        # From the first second the page says what is going on, never "unknown", with the stages chart (all
        # at 0 of 3 while the job starts); the embedder loads while the first requests are out.
        assert re.search(r": (starting|running)", lines[0]) and charts[0] is not None
        assert not any("unknown" in line for line in lines)
        assert ": running" in lines[-1]

        server.latency = 0.2
        client.predict(run_id, api_name="/synthesis_stop")
        wait_for(client, run_id, "stopped")
        client.predict(run_id, "", "", api_name="/synthesis_resume")
        state, stages, spend, failures, stage_chart, _, spend_chart, spend_note = wait_for(client, run_id, "done")
        assert table(stages)["replay"] == [3, 0, 0] and failures["data"] == []
        assert {row[0] for row in spend["data"]} >= {"queries", "describe", "check", "solve", "judge"}
        assert "$" in state and "Open in Review" in state
        assert stage_chart["visible"] and spend_chart["visible"] and spend_chart["value"] and not spend_note["visible"]
        assert len(Store(settings.db).query(Filters(source=f"synthesis:{run_id}")).rows) == 3


def test_a_key_goes_only_to_the_endpoint_it_was_typed_with_and_a_reload_keeps_the_form(tmp_path, monkeypatch):
    from gradio_client import Client

    operator = "sk-OPERATOR-SECRET"
    monkeypatch.setenv("MAT_API_KEY", operator)  # the app's environment, which its jobs inherit
    settings = Settings(data_dir=tmp_path, db_path=tmp_path / "mat.db", base_url=None, api_key=operator)
    with SynthesisServer() as capture, running_app(settings) as url:
        client = Client(url, verbose=False)
        first = started(client, form(capture, 1))
        wait_for(client, first, "done")
        assert capture.authorizations and operator not in " ".join(a or "" for a in capture.authorizations)

        seen = len(capture.authorizations)
        typed = "sk-TYPED-4242"
        second = started(client, form(capture, 1, api_key=typed, model="mat-test", concurrency=3,
                                      topics="kitchens\nharbours"))
        state, _, spend = wait_for(client, second, "done")[:3]
        assert set(capture.authorizations[seen:]) == {f"Bearer {typed}"}
        # "mat-test" has no price: its cost is unknown, not free.
        assert "unpriced" in state and "$0.0000" not in state and {row[4] for row in spend["data"]} == {"unpriced"}
        # The typed key is in no stored file, job argument or job log.
        for path in [*tmp_path.rglob("*")]:
            if path.is_file():
                assert typed.encode() not in path.read_bytes(), path

        reloaded = client.predict(None, api_name="/synthesis_load")
        run_list, base_url, model, tasks, concurrency, corpus, seeds, topics, batch = reloaded[:9]
        assert run_list["value"] == second
        assert (base_url, model, tasks, concurrency, seeds, topics) == (capture.url, "mat-test", 1, 3, "",
                                                                        "kitchens\nharbours")
        assert typed not in str(reloaded)


def test_the_plots_follow_the_tables_and_the_review_link_opens_the_run_in_this_page(tmp_path):
    """The timer that refreshes the tables redraws a chart whose data changed (and only then); Open in Review
    selects the Review tab and hands it the run's source."""
    import gradio as gr

    from app import build_app
    from synthesis.__main__ import main

    db = tmp_path / "mat.db"
    with SynthesisServer() as server:
        assert main(["run", "--tasks", "1", "--db", str(db), "--base-url", server.url, "--embedder", "hash",
                     "--no-replay", "--run-id", "r1"]) == 0
    demo = build_app(Settings(data_dir=tmp_path, db_path=db, base_url=None, api_key=None))
    timer = next(fn for fn in demo.fns.values() if any(isinstance(demo.blocks.get(t[0]), gr.Timer) for t in fn.targets)
                 and any(getattr(o, "label", None) == "Tokens and cost" for o in fn.outputs))
    assert {getattr(o, "label", None) for o in timer.outputs} >= {"Tokens and cost per stage", "Tasks per stage"}
    *shown, drawn = timer.fn("r1", None)
    assert shown[6]["visible"] and shown[6]["value"] is not None  # the tokens-and-cost chart, drawn
    *again, _ = timer.fn("r1", drawn)
    assert again[6] == gr.skip()  # nothing changed: not drawn again
    _answer_one_more(db)
    *changed, _ = timer.fn("r1", drawn)
    assert changed[6]["value"] is not None and changed[2] != shown[2]

    link = next(fn for fn in demo.fns.values() if fn.api_name == "synthesis_open_review")
    tabs, address = link.fn("r1")
    assert isinstance(tabs, gr.Tabs) and tabs.selected == "review"
    assert address["source"] == "synthesis:r1"
    assert link.outputs[0].__class__ is gr.Tabs


def _answer_one_more(db: Path) -> None:
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("""INSERT INTO synthesis_requests (key, run_id, stage, model, request, response, input_tokens,
                        output_tokens, cost, created) VALUES ('extra', 'r1', 'judge', 'gpt-4o-mini', '{}', 'yes',
                        1000, 100, 0.5, '2026-01-01')""")
