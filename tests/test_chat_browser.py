"""The Chat tab in Debian's Chromium: upload a photo, ask, watch the steps and the answer appear."""

from __future__ import annotations

import pytest
from PIL import Image

from agent.config import Settings
from tests.support.app_server import running_app
from tests.support.browser import chromium_page
from tests.support.openai_server import FakeOpenAI

pytestmark = pytest.mark.browser

# The streamed thought's paragraph, looked up and measured at once (streaming replaces it as it grows).
READS_LIKE_THE_QUESTION = """() => {
  const thought = [...document.querySelectorAll('#chat-log .thought-group p')]
    .find(p => p.innerText.includes('I will look at the picture'));
  const question = document.querySelector('#chat-log .user p');
  if (!thought || !question) return false;
  const size = (e) => getComputedStyle(e).fontSize;
  return size(thought) === size(question) && getComputedStyle(thought.closest('.message-content')).opacity === '1';
}"""


def test_chat_in_the_browser(tmp_path):
    photo = tmp_path / "street.png"
    Image.new("RGB", (96, 64), (20, 120, 200)).save(photo)
    look = (
        "Thought: I will measure the picture.\nCode:\n```py\nfrom PIL import Image\n"
        "print(Image.open('attachments/street.png').size)\n```<end_action>"
    )
    answer = "Thought: Done.\nCode:\n```py\nfinal_answer('96 by 64 pixels')\n```<end_action>"
    settings = Settings(data_dir=tmp_path / "data", base_url="", api_key="sk-test", model="mat-test")
    with FakeOpenAI(replies=[look, answer]) as server:
        settings.base_url = server.url
        with running_app(settings) as url, chromium_page() as page:
            page.goto(url)
            page.get_by_text("Sandbox:").wait_for()
            page.locator("#chat-input input[type=file]").set_input_files(str(photo))
            page.locator("#chat-input textarea").fill("How large is this picture?")
            page.locator("#chat-input textarea").press("Enter")
            page.get_by_text("Final answer:").wait_for(timeout=60_000)

            log = page.locator("#chat-log").inner_text()
            assert "96 by 64 pixels" in log
            assert "Step 1" in log and "Step 2" in log
            page.get_by_text("Step 1", exact=False).first.click()
            assert "(96, 64)" in page.locator("#chat-log").inner_text()
            page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)
    assert len(server.requests) == 2


def test_refusals_are_notices_and_files_wait_for_a_question(tmp_path):
    photo = tmp_path / "cat.png"
    Image.new("RGB", (40, 30), (200, 120, 20)).save(photo)
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is not a picture")
    settings = Settings(data_dir=tmp_path / "data", base_url="http://127.0.0.1:9/v1", api_key="sk-test", model="m")
    with running_app(settings) as url, chromium_page() as page:
        page.goto(url)
        page.get_by_text("Sandbox:").wait_for()
        log = page.locator("#chat-log")
        page.locator("#chat-input input[type=file]").set_input_files(str(photo))
        uploaded = page.locator("#chat-input img")
        uploaded.first.wait_for(timeout=15_000)
        page.locator("#chat-input textarea").press("Enter")
        hint = page.locator(".toast-body").get_by_text("Type a question or task to go with your files.")
        hint.wait_for(timeout=15_000)
        assert "Type a question" not in log.inner_text()  # a notice, not a message from the agent
        assert uploaded.count() == 1 and uploaded.first.is_visible()  # the file is still there
        page.locator("#chat-input input[type=file]").set_input_files(str(fake))
        page.locator("#chat-input textarea").fill("What is it?")
        page.locator("#chat-input textarea").press("Enter")
        page.locator(".toast-body").get_by_text("holiday.jpg is not a readable image").wait_for(timeout=15_000)
        assert log.locator("img").count() == 0  # never shown broken
        page.locator("#chat-input button[aria-label*='Remove'], #chat-input .delete-button").last.click()
        page.locator("#chat-input textarea").press("Enter")
        unreachable = log.get_by_text("127.0.0.1:9", exact=False).first
        unreachable.wait_for(timeout=30_000)
        assert unreachable.is_visible()  # open, not folded behind a title


def test_stop_is_live_only_while_a_run_is_and_the_stopped_step_saves_into_review(tmp_path):
    thought = "I will look at the picture carefully, one corner at a time, before I write any code. " * 4
    turn = f"Thought: {thought}\nCode:\n```py\nprint('never run')\n```<end_action>"
    settings = Settings(data_dir=tmp_path / "data", base_url="", api_key="sk-test", model="mat-test")
    with FakeOpenAI(replies=[turn], chunk_delay=0.1) as server:
        settings.base_url = server.url
        with running_app(settings) as url, chromium_page(height=1200) as page:
            page.goto(url)
            page.get_by_text("Sandbox:").wait_for()
            stop = page.locator("#chat-stop")
            assert stop.is_disabled()
            page.locator("#chat-input textarea").fill("Describe the picture")
            page.locator("#chat-input textarea").press("Enter")
            written = page.locator("#chat-log").get_by_text("I will look at the picture carefully").first
            written.wait_for(timeout=30_000)
            assert stop.is_enabled()
            page.wait_for_function(READS_LIKE_THE_QUESTION, timeout=10_000)  # the thought, at the chat's size
            assert "Thought:" not in page.locator("#chat-log").inner_text()  # read, not raw markers
            stop.click()
            page.locator("#chat-log").get_by_text("Step 1 · stopped").wait_for(timeout=15_000)
            page.wait_for_function("() => document.querySelector('#chat-stop').disabled", timeout=15_000)
            page.locator("#chat-save").click()
            page.get_by_role("tab", name="Review", selected=True).wait_for(timeout=15_000)
            assert page.locator("#chat-saved code").first.inner_text()  # the saved item's id


def test_a_chat_run_looks_the_same_in_review(tmp_path):
    draw = (
        "Thought: I will draw a square.\nCode:\n```py\nfrom PIL import Image\n"
        "Image.new('RGB', (50, 50), (250, 0, 0)).save('square.png')\nprint('drawn')\n```<end_action>"
    )
    answer = "Thought: Done.\nCode:\n```py\nfinal_answer('a red square')\n```<end_action>"
    settings = Settings(data_dir=tmp_path / "data", base_url="", api_key="sk-test", model="mat-test")
    with FakeOpenAI(replies=[draw, answer]) as server:
        settings.base_url = server.url
        with running_app(settings) as url, chromium_page(height=1400) as page:
            page.goto(url)
            page.get_by_text("Sandbox:").wait_for()
            page.locator("#chat-input textarea").fill("Draw a <b>red</b> square")
            page.locator("#chat-input textarea").press("Enter")
            page.get_by_text("Final answer:").wait_for(timeout=60_000)
            log = page.locator("#chat-log")
            assert "Draw a <b>red</b> square" in log.inner_text()
            assert log.locator("b", has_text="red").count() == 0
            assert "Step 1" in log.inner_text() and "Step 2" in log.inner_text()
            assert log.locator("img").count() >= 1  # the square the step saved
            page.locator("#chat-save").click()
            page.get_by_role("tab", name="Review", selected=True).wait_for(timeout=15_000)  # Save opens Review
            trajectory_id = page.locator("#chat-saved code").first.inner_text()

            page.locator("#review-open textarea, #review-open input").first.fill(trajectory_id)
            page.locator("#review-open textarea, #review-open input").first.press("Enter")
            viewer = page.locator("#mat-viewer")
            viewer.get_by_text("Draw a <b>red</b> square").wait_for(timeout=15_000)
            assert viewer.locator("b", has_text="red").count() == 0
            headings = viewer.locator("section.mat-step h3")
            assert [h.inner_text().split("\n")[0].strip()[:6] for h in headings.all()] == ["Step 1", "Step 2"]
            first_step = viewer.locator("section.mat-step").first
            assert first_step.locator("img[alt='square.png']").count() == 1
            assert viewer.locator("section.mat-task img").count() == 0  # a step's image shows with its step only
            assert "missing image" not in viewer.inner_text()
            page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
