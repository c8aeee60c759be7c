"""Stop ends a run within a second, even while the OpenAI client backs off, waits on a hung server or a slow stream.

Real HTTP to the local OpenAI-compatible server; the run is advanced on one thread and stopped
from another, as the Chat tab's Stop button does.
"""

from __future__ import annotations

import threading
import time

import pytest

from agent.config import Settings
from agent.loop import LoopLimits
from agent.models.openai_compat import OpenAICompatModel
from agent.session import start_run
from tests.support.openai_server import FakeOpenAI

REPLY = "Thought: done\nCode:\n```py\nfinal_answer('cat')\n```<end_action>"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", step_timeout=20)


def _stop_after(settings: Settings, model: OpenAICompatModel, started: float = 0.5) -> tuple[float, list]:
    """Advance a run on a thread, press stop after `started` seconds; (seconds until the run ended, its errors)."""
    agent_run = start_run(settings, "What animal is this?")
    errors: list = []

    def advance() -> None:
        try:
            for _ in agent_run.steps(model, LoopLimits(max_steps=2)):
                pass
        except Exception as exc:  # noqa: BLE001 - the test asserts there are none
            errors.append(exc)

    runner = threading.Thread(target=advance, daemon=True)
    runner.start()
    time.sleep(started)
    pressed = time.monotonic()
    agent_run.stop()
    runner.join(10)
    took = time.monotonic() - pressed
    agent_run.close()
    return took, errors


@pytest.mark.usefixtures("timed_heap")
def test_stop_during_retry_backoff(settings):
    with FakeOpenAI(replies=[REPLY]) as server:
        server.fail_next(5, status=429)
        model = OpenAICompatModel("mat-test", base_url=server.url, api_key="sk-test", backoff=20, timeout=10)
        took, errors = _stop_after(settings, model)
    assert took < 1 and errors == []


@pytest.mark.usefixtures("timed_heap")
def test_stop_while_the_server_does_not_answer(settings):
    with FakeOpenAI(replies=[REPLY], latency=30) as server:
        model = OpenAICompatModel("mat-test", base_url=server.url, api_key="sk-test", timeout=10)
        took, errors = _stop_after(settings, model)
    assert took < 1 and errors == []


@pytest.mark.usefixtures("timed_heap")
def test_stop_while_the_stream_stalls(settings):
    with FakeOpenAI(replies=[REPLY], chunk_delay=5) as server:
        model = OpenAICompatModel("mat-test", base_url=server.url, api_key="sk-test", timeout=10)
        took, errors = _stop_after(settings, model, started=1.0)
    assert took < 1 and errors == []


def test_a_run_that_is_not_stopped_still_retries_and_answers(settings):
    with FakeOpenAI(replies=[REPLY]) as server:
        server.fail_next(2, status=500)
        model = OpenAICompatModel("mat-test", base_url=server.url, api_key="sk-test", backoff=0.01)
        agent_run = start_run(settings, "What animal is this?")
        try:
            steps = list(agent_run.steps(model, LoopLimits(max_steps=2)))
        finally:
            agent_run.close()
    assert steps[-1].final_answer == "cat"
    assert [r.status for r in server.chat_requests] == [500, 500, 200]
