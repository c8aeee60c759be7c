"""The one wiring helper on a launched Gradio app: a refusal warns and leaves the page as it was; a bug is one
line on the page and a full traceback in the log."""

from __future__ import annotations

import logging

import pytest

from core.errors import UserError
from core.ui import serve, wire
from tests.support.app_server import free_port


@pytest.fixture(scope="module")
def client():
    import gradio as gr
    from gradio_client import Client

    def save(text: str) -> str:
        if text == "refuse":
            raise UserError("the name is taken")
        if text == "crash":
            raise KeyError("bug")
        return f"saved {text}"

    def stream(text: str):
        yield f"working on {text}"
        raise UserError("the endpoint went away")

    with gr.Blocks() as demo:
        typed = gr.Textbox()
        shown = gr.Textbox(value="nothing yet")
        wire(gr.Button("save").click, save, [typed], [shown], "save")
        wire(gr.Button("stream").click, stream, [typed], [shown], "stream")
    url = serve(demo.queue(), "127.0.0.1", free_port(), block=False, quiet=True)
    try:
        yield Client(url, verbose=False)
    finally:
        demo.close()


UNCHANGED = {"__type__": "update"}  # what an API caller gets for "leave this output as it is"


def test_a_refusal_leaves_the_output_as_it_was_and_raises_no_error(client):
    assert client.predict("ok", api_name="/save") == "saved ok"
    assert client.predict("refuse", api_name="/save") == UNCHANGED


def test_a_bug_is_logged_in_full_and_the_page_keeps_working(client, caplog):
    with caplog.at_level(logging.ERROR, logger="mat.ui"):
            assert client.predict("crash", api_name="/save") == UNCHANGED
    assert "KeyError" in caplog.text and "Traceback" in caplog.text
    assert client.predict("again", api_name="/save") == "saved again"


def test_a_streaming_handler_keeps_what_it_showed_when_refused(client):
    job = client.submit("x", api_name="/stream")
    job.result()
    assert job.outputs() == ["working on x", UNCHANGED]


def test_a_page_slow_to_answer_at_launch_is_tried_again_not_a_failure(monkeypatch):
    """On a loaded machine Gradio's 3 s start-up check can miss the first page; the launch must not fail."""
    import gradio as gr
    from gradio import networking

    real, checks = networking.url_ok, []

    def first_check_misses(url: str) -> bool:
        checks.append(url)
        return len(checks) > 1 and real(url)

    monkeypatch.setattr(networking, "url_ok", first_check_misses)
    with gr.Blocks() as demo:
        gr.Textbox("hello")
    url = serve(demo, "127.0.0.1", free_port(), block=False, quiet=True)
    try:
        assert len(checks) == 2 and real(url)
    finally:
        demo.close()
