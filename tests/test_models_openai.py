"""The OpenAI-compatible backend against a real local HTTP server (tests/support/openai_server.py)."""

from __future__ import annotations

import base64
import io
import socket

import pytest
from PIL import Image

from agent.models.base import Message, ModelError
from agent.models.openai_compat import OpenAICompatModel
from tests.support.openai_server import FakeOpenAI

ACTION = "Thought: count the cars\nCode:\n```py\nfinal_answer(3)\n```"


def make_model(server: FakeOpenAI, **kwargs) -> OpenAICompatModel:
    kwargs.setdefault("backoff", 0.01)
    return OpenAICompatModel(kwargs.pop("model", "mat-test"), base_url=server.url, api_key="sk-test-secret-key", **kwargs)


def ask(text: str = "How many cars?", images: list[str] = ()) -> list[Message]:
    return [Message("system", "You are an agent."), Message("user", text, list(images))]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_streamed_text_joins_into_the_reply_with_usage_on_the_last_chunk(openai_server):
    openai_server.replies.append(ACTION)
    chunks = list(make_model(openai_server).stream(ask(), stop=["<end_action>"]))
    assert len(chunks) > 3
    assert "".join(c.text for c in chunks) == ACTION
    usage = openai_server.chat_requests[-1].usage
    assert (chunks[-1].input_tokens, chunks[-1].output_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert chunks[-1].output_tokens == len(ACTION.split())


def test_request_carries_bearer_key_stop_and_stream_usage(openai_server):
    make_model(openai_server).generate(ask(), stop=["<end_action>", "\nObservation:"], max_new_tokens=77)
    sent = openai_server.chat_requests[-1]
    assert sent.headers["authorization"] == "Bearer sk-test-secret-key"
    assert sent.body["stop"] == ["<end_action>", "\nObservation:"]
    assert sent.body["stream"] is True and sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["max_tokens"] == 77
    assert [m["role"] for m in sent.body["messages"]] == ["system", "user"]


def test_at_most_four_stops_are_sent_and_the_rest_are_applied_client_side(openai_server):
    openai_server.replies.append("alpha beta STOP5 gamma")
    stops = ["S1", "S2", "S3", "S4", "STOP5"]
    answer = make_model(openai_server).generate(ask(), stop=stops)
    assert openai_server.chat_requests[-1].body["stop"] == stops[:4]
    assert answer.text == "alpha beta "


def test_a_server_that_ignores_stop_is_truncated_client_side():
    with FakeOpenAI(replies=[ACTION + "<end_action>\nObservation: invented by the model"], ignore_stop=True) as server:
        answer = make_model(server).generate(ask(), stop=["<end_action>", "\nObservation:"])
    assert answer.text == ACTION


def test_images_arrive_as_data_urls_resized_to_the_pixel_budget(openai_server, tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (1000, 800), (200, 30, 30)).save(photo)
    snap = tmp_path / "snap.jpg"
    Image.new("RGB", (300, 300), (0, 90, 200)).save(snap)
    budget = 64 * 28 * 28
    make_model(openai_server, max_pixels=budget).generate(ask(images=[str(photo), str(snap)]))
    urls = openai_server.chat_requests[-1].image_urls
    assert [u.split(";")[0] for u in urls] == ["data:image/png", "data:image/jpeg"]
    decoded = Image.open(io.BytesIO(base64.b64decode(urls[0].split(",", 1)[1])))
    width, height = decoded.size
    assert width * height <= budget and width % 28 == 0 and height % 28 == 0
    assert abs(width / height - 1000 / 800) < 0.15
    assert decoded.getpixel((5, 5)) == (200, 30, 30)


def test_rate_limits_and_server_errors_are_retried_until_success(openai_server):
    openai_server.fail_next(1, status=429)
    openai_server.fail_next(1, status=503)
    openai_server.replies.append("after the storm")
    assert make_model(openai_server, max_retries=3).generate(ask()).text == "after the storm"
    assert [r.status for r in openai_server.chat_requests] == [429, 503, 200]


def test_retries_give_up_with_a_one_line_error(openai_server):
    openai_server.fail_next(5, status=429)
    with pytest.raises(ModelError) as caught:
        make_model(openai_server, max_retries=2).generate(ask())
    message = str(caught.value)
    assert "429" in message and "after 3 tries" in message and "\n" not in message
    assert len(openai_server.chat_requests) == 3


def test_unreachable_endpoint_says_which_url_and_what_to_check():
    port = closed_port()
    model = OpenAICompatModel("mat-test", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, backoff=0.01)
    with pytest.raises(ModelError) as caught:
        model.generate(ask())
    message = str(caught.value)
    assert message.startswith(f"cannot reach http://127.0.0.1:{port}/v1: connection refused")
    assert "MAT_BASE_URL" in message and "\n" not in message


def test_wrong_key_is_a_401_message_that_never_shows_the_key():
    with FakeOpenAI(api_key="sk-the-right-one") as server:
        with pytest.raises(ModelError) as caught:
            make_model(server).generate(ask())
        assert len(server.chat_requests) == 1  # an auth failure is not retried
    message = str(caught.value)
    assert "401" in message and "MAT_API_KEY" in message
    assert "sk-test-secret-key" not in message


def test_unknown_model_names_the_model_and_the_setting():
    with FakeOpenAI(models=["qwen2-vl-7b"]) as server:
        with pytest.raises(ModelError) as caught:
            make_model(server, model="gpt-9").generate(ask())
    assert "'gpt-9'" in str(caught.value) and "MAT_MODEL" in str(caught.value)


def test_without_a_model_name_the_first_served_model_is_used():
    with FakeOpenAI(models=["Qwen/Qwen2-VL-7B-Instruct"], replies=["hi"]) as server:
        answer = make_model(server, model=None).generate(ask())
        assert server.chat_requests[-1].body["model"] == "Qwen/Qwen2-VL-7B-Instruct"
    assert answer.text == "hi"


def test_a_server_rejecting_stream_options_still_answers():
    with FakeOpenAI(replies=["plain answer"], reject_stream_options=True) as server:
        model = make_model(server)
        assert model.generate(ask()).text == "plain answer"
        assert model.generate(ask()).text == "OK"
        assert [r.status for r in server.chat_requests] == [400, 200, 200]  # learnt once


def test_a_silent_server_times_out_with_a_clear_message():
    with FakeOpenAI(latency=2.0) as server:
        with pytest.raises(ModelError) as caught:
            make_model(server, timeout=0.3, max_retries=0).generate(ask())
    assert "did not answer within 0.3 s" in str(caught.value)


@pytest.mark.usefixtures("timed_heap")
def test_remote_calls_run_concurrently_up_to_the_slot_limit():
    import threading
    import time

    with FakeOpenAI(latency=0.4) as server:
        model = make_model(server, slots=4)
        threads = [threading.Thread(target=model.generate, args=(ask(),)) for _ in range(4)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    assert len(server.chat_requests) == 4
    assert elapsed < 1.2  # serial would take 1.6 s
