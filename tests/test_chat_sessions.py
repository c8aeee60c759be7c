"""Bounded sessions: many one-chat browser sessions leave no runs, trajectories or histories behind beyond the
session cap, and run folders beyond MAT_KEEP_RUNS go, at start and as runs end. The launched app, driven by
gradio_client, against a local OpenAI-compatible server."""

from __future__ import annotations

import gc

from gradio_client import Client

from agent.chat import FinishedRun, _runs
from agent.config import Settings
from agent.session import AgentRun
from agent.steps import Trajectory
from core.ui import serve
from tests.support.app_server import free_port
from tests.support.openai_server import FakeOpenAI

DONE = "Thought: done.\nCode:\n```py\nfinal_answer('ok')\n```<end_action>"
SESSIONS, CAP, KEEP = 20, 5, 4


def test_many_sessions_keep_only_small_state_for_the_newest_few(tmp_path):
    from app import build_app, launch_kwargs

    runs = tmp_path / "data" / "runs"
    for day in range(1, 7):  # left by an earlier app: the oldest go at start
        (runs / f"2000010{day}-120000-0000000{day}").mkdir(parents=True)
    with FakeOpenAI(responder=lambda body: DONE) as server:
        settings = Settings(data_dir=tmp_path / "data", base_url=server.url, api_key="sk-test", model="mat-test",
                            sessions=CAP, keep_runs=KEEP)
        demo = build_app(settings)
        assert sorted(p.name for p in runs.iterdir()) == [f"2000010{day}-120000-0000000{day}" for day in range(3, 7)]
        url = serve(demo, "127.0.0.1", free_port(), block=False, quiet=True, **launch_kwargs(settings))
        try:
            client = Client(url, verbose=False)
            for number in range(SESSIONS):
                client.reset_session()  # a new browser session, as a new visitor's page
                history = client.predict({"text": f"session task {number}", "files": []}, [], "mat-test (endpoint)",
                                         "mat", 4, "", api_name="/chat")[0]
                assert "Final answer" in str(history[-1])
            disk = client.predict(api_name="/settings_disk")
            sessions = list(demo.state_holder.session_data.values())
        finally:
            demo.close()

    assert len(sessions) <= CAP
    kept = [value for session in sessions for value in session.state_data.values()]
    assert all(value is None or (isinstance(value, str) and len(value) < 300) for value in kept), kept
    gc.collect()
    assert [obj for obj in gc.get_objects() if _ours(obj)] == []  # no run, record or trajectory of theirs lives on
    assert _runs == {}
    folders = [p for p in runs.iterdir() if p.is_dir() and p.name[0].isdigit() and not p.name.endswith("-images")]
    assert len(folders) == KEEP and not any(p.name.startswith("2000") for p in folders)
    assert f"{KEEP} run folders" in disk


def _ours(obj) -> bool:
    trajectory = obj.trajectory if isinstance(obj, (AgentRun, FinishedRun)) else obj
    return isinstance(trajectory, Trajectory) and trajectory.task.text.startswith("session task")
