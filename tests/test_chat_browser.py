"""The Chat tab in Debian's Chromium: upload a photo, ask, watch the steps and the answer appear."""

from __future__ import annotations

import pytest
from PIL import Image

from agent.config import Settings
from tests.support.app_server import running_app
from tests.support.browser import chromium_page
from tests.support.openai_server import FakeOpenAI

pytestmark = pytest.mark.browser


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


def test_notices_show_open_and_files_wait_for_a_question(tmp_path):
    photo = tmp_path / "cat.png"
    Image.new("RGB", (40, 30), (200, 120, 20)).save(photo)
    settings = Settings(data_dir=tmp_path / "data", base_url="http://127.0.0.1:9/v1", api_key="sk-test", model="m")
    with running_app(settings) as url, chromium_page() as page:
        page.goto(url)
        page.get_by_text("Sandbox:").wait_for()
        page.locator("#chat-input input[type=file]").set_input_files(str(photo))
        uploaded = page.locator("#chat-input img")
        uploaded.first.wait_for(timeout=15_000)
        page.locator("#chat-input textarea").press("Enter")
        notice = page.locator("#chat-log").get_by_text("Type a question or task to go with your files.")
        notice.wait_for(timeout=15_000)
        assert notice.is_visible()  # open, not folded behind a title
        page.wait_for_timeout(500)
        assert uploaded.count() == 1 and uploaded.first.is_visible()  # the file is still there
        page.locator("#chat-input textarea").fill("What is it?")
        page.locator("#chat-input textarea").press("Enter")
        unreachable = page.locator("#chat-log").get_by_text("127.0.0.1:9", exact=False).first
        unreachable.wait_for(timeout=30_000)
        assert unreachable.is_visible()


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
            saved = page.locator("#chat-saved code").first
            saved.wait_for(timeout=15_000)
            trajectory_id = saved.inner_text()

            page.get_by_role("tab", name="Review", exact=True).click()
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
