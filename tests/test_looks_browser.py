"""How the whole app looks in Debian's Chromium: buttons alike in every tab, table headers whole, cut-off cells
readable on hover (app.css, passed to launch by app.py)."""

from __future__ import annotations

import pytest

from agent.config import Settings
from review import markup
from review.store import Store
from tests.support.app_server import running_app
from tests.support.browser import chromium_page

pytestmark = pytest.mark.browser

TABS = ["Chat", "Review", "Synthesize", "Train", "Evaluate", "Settings"]
BUTTON_LOOKS = """() => [...document.querySelectorAll('button.sm, button.md, button.lg')]
  .filter(b => b.offsetParent !== null)
  .map(b => { const c = getComputedStyle(b);
              return [b.innerText.trim(), [c.height, c.fontSize, c.fontWeight, c.borderRadius].join(' ')]; })"""
OVERFLOWING = "e => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1"


def test_buttons_headers_and_cut_off_cells_across_the_tabs(tmp_path, mmtraj_path):
    settings = Settings(data_dir=tmp_path / "data", base_url="http://127.0.0.1:9/v1", api_key="sk-test", model="m")
    with Store(settings.db) as store:
        store.import_file(mmtraj_path, source="release")
    with running_app(settings) as url, chromium_page(width=1100) as page:
        page.goto(url)
        page.get_by_text("Sandbox:").wait_for()
        looks: dict[str, set[str]] = {}
        for tab in TABS:
            page.get_by_role("tab", name=tab, exact=True).click()
            page.wait_for_timeout(600)
            for label, look in page.evaluate(BUTTON_LOOKS):
                looks.setdefault(look, set()).add(f"{tab}: {label}")
        assert len(looks) == 1, looks  # one height, type size, weight and corner for every button

        page.get_by_role("tab", name="Review", exact=True).click()
        table = page.locator("#review-list")
        table.locator(".body-cell").first.wait_for(timeout=15_000)
        for header in table.locator(".header-cell span.text").all():
            if header.is_visible():  # whole, on one line
                assert not header.evaluate(OVERFLOWING), header.inner_text()
        task_column = markup.LIST_HEADERS.index("task")
        tasks = table.locator(f".body-cell[data-col='{task_column}'] span.text")
        cut = next(cell for cell in tasks.all() if cell.evaluate(OVERFLOWING))  # a long task, cut by its column
        cut.hover()
        page.wait_for_timeout(300)
        assert not cut.evaluate(OVERFLOWING)  # the full text shows while the pointer is on it
        box = cut.bounding_box()
        assert box["width"] * box["height"] > cut.evaluate("e => e.parentElement.clientWidth") * 20

        # A URL in a table reads as written, a link without escape backslashes in it.
        page.get_by_role("tab", name="Settings", exact=True).click()
        link = page.get_by_role("link", name="http://127.0.0.1:9/v1")
        link.wait_for(timeout=15_000)
        assert link.get_attribute("href") == "http://127.0.0.1:9/v1"
        assert "127\\.0" not in page.locator("body").inner_text()
