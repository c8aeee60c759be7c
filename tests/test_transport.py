"""The one OpenAI-compatible transport, as Chat and synthesis users meet it, over real HTTP to local servers:
complete replies only, a server that went away named as such, unreachable endpoints given up quickly,
the key and URL taken only from arguments, and one set of retry rules for both."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from agent.config import Settings
from agent.loop import LoopLimits
from agent.models.base import Message, ModelError
from agent.models.cancel import ModelCancelled, cancelled_by
from agent.models.openai_compat import OpenAICompatModel
from agent.session import start_run
from review.store import Store
from synthesis.llm import LLM, Endpoint, RequestFailed
import synthesis  # noqa: F401 — the synthesis tables
from tests.support.openai_server import FakeOpenAI, unreachable_url

KEY = "sk-test-secret-key"
REPLY = "Thought: the photo shows a cat.\nCode:\n```py\nfinal_answer('cat')\n```"


def chat_model(url: str | None, api_key: str | None = KEY, **kwargs) -> OpenAICompatModel:
    kwargs.setdefault("backoff", 0.01)
    return OpenAICompatModel("mat-test", base_url=url, api_key=api_key, **kwargs)


def store_in(tmp_path, name: str = "mat") -> Store:
    store = Store(tmp_path / f"{name}.db")
    return store


def synthesis_llm(tmp_path, url: str | None, api_key: str | None = KEY, **kwargs) -> LLM:
    kwargs.setdefault("backoff", 0.01)
    return LLM(store_in(tmp_path), "run-1", Endpoint(url, api_key, "mat-test", **kwargs))


def ask_synthesis(llm: LLM, text: str = "Write three tasks.") -> str:
    return llm.chat(stage="queries", task_id=None, purpose="queries-0",
                    messages=[{"role": "user", "content": text}]).text


def ask_chat(model: OpenAICompatModel) -> str:
    return model.generate([Message("user", "What animal is this?")]).text


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


# ---------------------------------------------------------------- complete replies only


def test_a_stream_cut_before_its_end_stops_the_chat_run_with_one_line_not_a_parse_error(tmp_path):
    with FakeOpenAI(replies=[REPLY]) as server:
        server.cut_next(1, after=2)
        agent_run = start_run(Settings(data_dir=tmp_path / "data"), "What animal is this?")
        try:
            with pytest.raises(ModelError) as caught:
                list(agent_run.steps(chat_model(server.url), LoopLimits(max_steps=3)))
        finally:
            agent_run.close()
    message = str(caught.value)
    assert message.startswith("the model server closed the reply early") and server.url in message
    assert "\n" not in message
    assert agent_run.trajectory.steps == []  # no parse error, no NO-OBSERVATION step made of half a reply


def test_a_server_that_dies_mid_reply_is_named_as_gone_not_as_unreachable():
    with FakeOpenAI(replies=[REPLY, REPLY]) as server:
        model = chat_model(server.url, max_retries=1)
        assert ask_chat(model) == REPLY
        server.die_mid_reply(after=2)
        with pytest.raises(ModelError, match="^the model server closed the reply early"):
            ask_chat(model)
        with pytest.raises(ModelError) as caught:
            ask_chat(model)  # the next step, or the user's next message
    message = str(caught.value)
    assert message.startswith(f"the model server at {server.url} stopped answering (connection refused)")
    assert "it answered before" in message and "cannot reach" not in message


def test_a_synthesis_answer_cut_halfway_is_asked_again_and_stored_whole(tmp_path):
    with FakeOpenAI(replies=["first answer, cut", "[1, 2, 3]"]) as server:
        server.cut_next(1)
        llm = synthesis_llm(tmp_path, server.url)
        assert ask_synthesis(llm) == "[1, 2, 3]"
    sent = server.chat_requests
    assert len(sent) == 2 and sent[0].headers["x-mat-request-key"] == sent[1].headers["x-mat-request-key"]
    stored = llm.store.db.read("SELECT response, attempts FROM synthesis_requests")
    assert stored == [("[1, 2, 3]", 2)]


# ---------------------------------------------------------------- unreachable and unset endpoints


def test_an_unreachable_endpoint_fails_within_15_seconds_with_default_settings_naming_its_url(tmp_path):
    """Chat and synthesis with their default timeouts and retries; a host that drops packets, and a refused port."""
    refused = closed_port_url()
    outcomes: dict[str, tuple[float, str]] = {}

    def timed(name: str, call) -> None:
        started = time.monotonic()
        try:
            call()
            outcomes[name] = (time.monotonic() - started, "answered")
        except (ModelError, RequestFailed) as exc:
            outcomes[name] = (time.monotonic() - started, str(exc))

    with unreachable_url() as silent:
        chat = OpenAICompatModel("mat-test", base_url=silent, api_key=KEY)
        synthesis = LLM(store_in(tmp_path, "a"), "run-1", Endpoint(silent, KEY, "mat-test"))
        synthesis_refused = LLM(store_in(tmp_path, "b"), "run-1", Endpoint(refused, KEY, "mat-test"))
        calls = {"chat": lambda: ask_chat(chat), "synthesis": lambda: ask_synthesis(synthesis),
                 "synthesis, refused": lambda: ask_synthesis(synthesis_refused)}
        threads = [threading.Thread(target=timed, args=item) for item in calls.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    for name, url in (("chat", silent), ("synthesis", silent), ("synthesis, refused", refused)):
        seconds, message = outcomes[name]
        assert seconds <= 15, (name, seconds)
        assert message.startswith(f"cannot reach {url}: ") and "MAT_BASE_URL" in message, (name, message)
    assert "no connection within 5 s" in outcomes["chat"][1]
    assert "connection refused" in outcomes["synthesis, refused"][1]


def test_without_a_url_or_a_key_the_message_says_what_to_set(tmp_path):
    for build in (lambda: chat_model(None, None), lambda: synthesis_llm(tmp_path, None, None)):
        with pytest.raises(ModelError) as caught:
            build()
        message = str(caught.value)
        assert "MAT_BASE_URL" in message and "MAT_API_KEY" in message and "None" not in message


@pytest.fixture
def openai_environment(monkeypatch):
    """What a user's shell may hold for other tools: a key, a URL, organisation, project and extra headers."""
    with FakeOpenAI() as decoy:
        for name, value in {"OPENAI_API_KEY": "sk-from-the-environment", "OPENAI_BASE_URL": decoy.url,
                            "OPENAI_ORG_ID": "org-environment", "OPENAI_PROJECT_ID": "proj-environment",
                            "OPENAI_CUSTOM_HEADERS": "Authorization: Bearer sk-custom-header\nX-Leak: yes"}.items():
            monkeypatch.setenv(name, value)
        yield decoy


def test_without_a_url_requests_go_to_api_openai_com_not_to_OPENAI_BASE_URL(tmp_path, monkeypatch, openai_environment):
    proxy = closed_port_url().removesuffix("/v1")  # no network needed: the way to api.openai.com is refused here
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(ModelError, match="^cannot reach https://api.openai.com/v1: "):
        ask_chat(chat_model(None, max_retries=0))
    with pytest.raises(RequestFailed, match="^cannot reach https://api.openai.com/v1: "):
        ask_synthesis(synthesis_llm(tmp_path, None, max_retries=0))
    assert openai_environment.requests == []


def test_the_key_and_headers_sent_are_only_those_given(tmp_path, openai_environment):
    with FakeOpenAI(replies=["hello", "[1]"]) as server:
        ask_chat(chat_model(server.url, api_key=None))
        ask_synthesis(synthesis_llm(tmp_path, server.url, api_key=None))
    assert len(server.chat_requests) == 2
    for sent in server.chat_requests:
        shown = " ".join(f"{name}: {value}" for name, value in sent.headers.items())
        assert "environment" not in shown and "sk-custom-header" not in shown and "x-leak" not in shown
        assert "openai-organization" not in sent.headers and "openai-project" not in sent.headers
    assert openai_environment.requests == []


# ---------------------------------------------------------------- one set of rules


def test_synthesis_waits_as_long_as_the_servers_retry_after(tmp_path):
    with FakeOpenAI(replies=["[1]"]) as server:
        server.retry_after = 1
        server.fail_next(1, status=429)
        assert ask_synthesis(synthesis_llm(tmp_path, server.url)) == "[1]"
    first, second = server.chat_requests
    assert second.received - first.received >= 0.9


def test_chat_retries_a_409_conflict_as_synthesis_does():
    with FakeOpenAI(replies=[REPLY]) as server:
        server.fail_next(1, status=409)
        assert ask_chat(chat_model(server.url)) == REPLY
    assert [r.status for r in server.chat_requests] == [409, 200]


def test_synthesis_drops_an_option_the_server_rejects_and_remembers(tmp_path):
    with FakeOpenAI(replies=["one", "two"]) as server:
        server.failure_message = "Unsupported parameter: 'stop' is not supported with this model."
        server.fail_next(1, status=400)
        llm = synthesis_llm(tmp_path, server.url)
        for n, expected in ((0, "one"), (1, "two")):
            reply = llm.chat(stage="solve", task_id="t", purpose=f"agent-{n}", one_shot=False, stop=["<end_action>"],
                             messages=[{"role": "user", "content": f"step {n}"}])
            assert reply.text == expected
    assert ["stop" in r.body for r in server.chat_requests] == [True, False, False]


def test_a_failure_message_never_shows_the_key(tmp_path):
    with FakeOpenAI() as server:
        server.failure_message = f"upstream refused the token {KEY}"
        server.fail_next(1, status=500)
        with pytest.raises(RequestFailed) as caught:
            ask_synthesis(synthesis_llm(tmp_path, server.url, max_retries=0))
    message = str(caught.value)
    assert message.startswith(f"HTTP 500 from {server.url}: upstream refused the token ***")
    assert KEY not in message


def seconds_to_stop(call) -> float | None:
    """Make `call` on a thread under a stop switch, press it after half a second: seconds until ModelCancelled."""
    stop, stopped = threading.Event(), []

    def advance() -> None:
        with cancelled_by(stop):
            try:
                call()
            except ModelCancelled:
                stopped.append(time.monotonic())

    runner = threading.Thread(target=advance)
    runner.start()
    time.sleep(0.5)
    pressed = time.monotonic()
    stop.set()
    runner.join(5)
    return stopped[0] - pressed if stopped else None


@pytest.mark.parametrize("user", ["chat", "synthesis"])
@pytest.mark.usefixtures("timed_heap")
def test_a_stop_ends_the_wait_on_a_hung_server_within_a_tick(tmp_path, user):
    """The stop switch is looked at every 50 ms; the bound here leaves room for a loaded machine."""
    with FakeOpenAI(latency=30) as server:
        if user == "chat":
            seconds = seconds_to_stop(lambda: ask_chat(chat_model(server.url)))
        else:
            seconds = seconds_to_stop(lambda: ask_synthesis(synthesis_llm(tmp_path, server.url)))
    assert seconds is not None and seconds < 0.5
