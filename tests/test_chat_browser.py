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
