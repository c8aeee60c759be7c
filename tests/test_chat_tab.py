"""The Chat tab through a launched server and gradio_client, against a local OpenAI-compatible server."""

from __future__ import annotations

import time

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from agent.chat import STOPPED_NOTICE
from agent.config import Settings
from agent.models import TINY, model_choices
from agent.ui import setup_notice
from review.store import Store
from tests.support.app_server import message_texts, running_app
from tests.support.notices import notices
from tests.support.openai_server import FakeOpenAI

CHOICE = "mat-test (endpoint)"


def _settings(tmp_path, url: str, **changes) -> Settings:
    return Settings(data_dir=tmp_path / "data", base_url=url, api_key="sk-test", model="mat-test", step_timeout=20,
                    **changes)


def _submit(client: Client, text: str, files=(), choice: str = CHOICE, steps: int = 8, prompt_record: str = ""):
    return client.submit({"text": text, "files": [handle_file(str(f)) for f in files]}, [], choice, "mat", steps,
                         prompt_record, api_name="/chat")


def _ask(client: Client, text: str, files=(), **options) -> list[str]:
    return message_texts(_submit(client, text, files, **options).result(timeout=90)[0])


def _refused(client: Client, text: str, files=(), **options) -> tuple[list[str], object]:
    """The notices of a refused message, and what the chat showed (an unchanged output when refused)."""
    job = _submit(client, text, files, **options)
    history = job.result(timeout=90)[0]
    return notices(job), history


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (120, 80), (200, 30, 30)).save(path)
    return path


def test_agent_answers_about_an_uploaded_image(tmp_path, photo, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    look = (
        "Thought: I will read the picture's size and check my environment.\nCode:\n```py\n"
        "import os\nfrom PIL import Image\nimage = Image.open('attachments/photo.png')\n"
        "print(image.size, 'OPENAI_API_KEY' in os.environ)\n```<end_action>"
    )
    answer = "Thought: I know the size.\nCode:\n```py\nfinal_answer(f'{image.size[0]}x{image.size[1]}')\n```<end_action>"
    settings = _settings(tmp_path, "")
    with FakeOpenAI(replies=[look, answer]) as server:
        settings.base_url = server.url
        with running_app(settings) as url:
            client = Client(url, verbose=False)
            texts = _ask(client, "How big is this picture?", [photo])
            saved = client.predict(api_name="/save")

    assert server.requests[0].image_urls and server.requests[0].image_urls[0].startswith("data:image/")
    assert server.requests[0].headers["authorization"] == "Bearer sk-test"
    second_prompt = str(server.requests[1].body["messages"])
    assert "[OUTPUT OF STEP 0] Observation:\\n(120, 80) False" in second_prompt
    assert any("Final answer:** 120x80" in t for t in texts)
    assert any("print(image.size" in t for t in texts)

    trajectory_id = saved.split("`")[1]
    with Store(settings.db) as store:
        detail = store.detail(trajectory_id)
    assert detail.source == "chat" and detail.status == "pending"
    assert detail.record["answer"] == "120x80"
    assert [(image.name, image.missing) for image in detail.images] == [("attachments/photo.png", False)]


def test_unreachable_endpoint_is_a_clear_message(tmp_path, photo):
    settings = _settings(tmp_path, "http://127.0.0.1:9/v1")
    with running_app(settings) as url:
        texts = _ask(Client(url, verbose=False), "Describe this", [photo])
    reply = texts[-1]
    assert "127.0.0.1:9" in reply
    assert "Traceback" not in reply


UNCHANGED = {"__type__": "update"}  # an output the page left as it was


def test_bad_uploads_are_refused_in_a_notice_and_never_shown_broken(tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is not a picture")
    huge = tmp_path / "huge.csv"
    huge.write_bytes(b"0" * (2 * 2**20))
    with FakeOpenAI(replies=[]) as server, running_app(_settings(tmp_path, server.url, max_upload_mb=1)) as url:
        client = Client(url, verbose=False)
        shown, history = _refused(client, "What is this?", [fake])
        assert any("holiday.jpg is not a readable image" in line for line in shown)
        assert history == UNCHANGED  # no message, no broken image in the chat
        shown, history = _refused(client, "Sum it", [huge])
        assert any("huge.csv is 2 MB; the limit is 1 MB" in line for line in shown) and history == UNCHANGED
        shown, history = _refused(client, "   ", [])
        assert shown == ["Type a question or task to go with your files."] and history == UNCHANGED
        assert server.requests == []


def test_one_users_stop_does_not_stop_another_users_run(tmp_path):
    slow = "Thought: wait.\nCode:\n```py\nimport time\ntime.sleep(3)\nprint('slept')\n```<end_action>"
    done = "Thought: done.\nCode:\n```py\nfinal_answer('finished')\n```<end_action>"
    replies = {"A": [slow, done], "B": [slow, done]}

    def responder(body):
        task = body["messages"][1]["content"]
        task = task if isinstance(task, str) else " ".join(p.get("text", "") for p in task)
        return replies["A" if "task A" in task else "B"].pop(0)

    with FakeOpenAI(responder=responder) as server, running_app(_settings(tmp_path, server.url)) as url:
        alice, bob = Client(url, verbose=False), Client(url, verbose=False)
        job_a = alice.submit({"text": "task A", "files": []}, [], CHOICE, "mat", 8, "", api_name="/chat")
        job_b = bob.submit({"text": "task B", "files": []}, [], CHOICE, "mat", 8, "", api_name="/chat")
        time.sleep(1.5)
        bob.predict(api_name="/stop")
        texts_a = message_texts(job_a.result(timeout=60)[0])
        texts_b = message_texts(job_b.result(timeout=60)[0])
    assert any("Final answer:** finished" in t for t in texts_a)
    assert not any("Final answer" in t for t in texts_b)
    assert texts_b[-1] == STOPPED_NOTICE


def test_without_a_model_the_page_says_how_to_configure_one(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", base_url=None, api_key=None, model=None, local_model=None)
    assert [choice.label for choice in model_choices(settings)] == [TINY]
    notice = setup_notice(settings)
    assert "MAT_BASE_URL" in notice and "MAT_MODEL" in notice and "Sandbox" in notice


def test_a_stored_records_system_prompt_can_serve_the_run(tmp_path, mmtraj_path, mmtraj_records):
    record = mmtraj_records[1]
    settings = _settings(tmp_path, "")
    with Store(settings.db) as store:
        store.import_file(mmtraj_path, source="release")
    done = "Thought: done.\nCode:\n```py\nfinal_answer(95)\n```"
    with FakeOpenAI(replies=[done]) as server:
        settings.base_url = server.url
        with running_app(settings) as url:
            client = Client(url, verbose=False)
            texts = _ask(client, "What do 3 shirts cost?", prompt_record=record["id"])
            missing, history = _refused(client, "Again?", prompt_record="no-such-id")
    assert server.requests[0].body["messages"][0]["content"] == record["conversations"][0]["value"]
    assert any("Final answer:** 95" in t for t in texts)
    assert any("no stored trajectory 'no-such-id'" in line for line in missing) and history == UNCHANGED
