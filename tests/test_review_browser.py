"""The Review tab in Debian's Chromium: filter, open, approve with the keyboard, export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.review_app import review_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)"),
]
SCREENSHOT = Path("/tmp/review_tab.png")


@pytest.fixture
def server(tmp_path, mmtraj_path):
    with review_server(tmp_path, mmtraj_path) as running:
        yield running


def test_filter_open_approve_by_keyboard_and_export(server, page, mmtraj_records):
    from playwright.sync_api import expect

    url, _ = server
    page.set_viewport_size({"width": 1400, "height": 1500})
    page.goto(url)
    page.get_by_role("tab", name="Review", exact=True).click()
    approved = page.locator("#review-count-approved")
    expect(approved).to_have_text("0", timeout=15_000)
    page.locator("#review-reviewer textarea, #review-reviewer input").first.fill("ann")

    page.locator("#review-search textarea, #review-search input").first.fill("vacation")
    page.keyboard.press("Enter")
    rows = page.locator("#review-list div[role=row]")
    expect(rows.filter(has_text="GGLn7Jma")).to_have_count(1, timeout=10_000)
    expect(rows).not_to_have_count(len(mmtraj_records))

    rows.filter(has_text="GGLn7Jma").locator("[role=gridcell]").first.click()
    viewer = page.locator("#mat-viewer")
    expect(viewer).to_contain_text("Error in code parsing", timeout=10_000)
    expect(page.locator("#review-status")).to_have_text("pending")

    page.keyboard.press("a")
    expect(approved).to_have_text("1", timeout=10_000)
    expect(page.locator("#review-count-done")).to_have_text("1")
    page.keyboard.press("u")
    expect(approved).to_have_text("0", timeout=10_000)
    page.keyboard.press("a")
    expect(approved).to_have_text("1", timeout=10_000)
    expect(rows.filter(has_text="GGLn7Jma")).to_contain_text("approved")
    page.wait_for_timeout(300)
    page.screenshot(path=str(SCREENSHOT), full_page=False)

    page.get_by_role("tab", name="Stats").click()
    expect(page.locator("#review-plot-reviewer img, #review-plot-reviewer svg").first).to_be_visible(timeout=15_000)

    page.get_by_role("tab", name="Import / export").click()
    with page.expect_download(timeout=15_000) as download_info:
        page.locator("#review-export").click()
        page.locator("#review-exported a").first.click(timeout=15_000)
    exported = json.loads(Path(download_info.value.path()).read_text())
    assert [record["id"] for record in exported] == ["GGLn7Jma"]


def test_shortcuts_are_ignored_while_typing_and_record_text_stays_text(server, page, mmtraj_records):
    from playwright.sync_api import expect

    from review.store import Store

    url, settings = server
    evil = json.loads(json.dumps(mmtraj_records[0]))
    evil["id"] = "evil"
    evil["conversations"][1]["value"] = evil["conversations"][1]["value"].replace(
        "Task: ", "Task: <img src=x onerror=\"document.title='pwned'\"><b>bold</b> ")
    with Store(settings.db) as store:
        store.import_records([evil], source="<i>src</i>")
    page.goto(url)
    page.get_by_role("tab", name="Review", exact=True).click()
    expect(page.locator("#review-count-approved")).to_have_text("0", timeout=15_000)
    name = page.locator("#review-reviewer textarea, #review-reviewer input").first
    name.fill("")
    name.type("ann")  # 'a' and 'n' typed into the box must not approve or jump
    expect(name).to_have_value("ann")
    page.wait_for_timeout(500)
    expect(page.locator("#review-count-approved")).to_have_text("0")
    assert not re.search(r"review-status", page.locator("#review-header").inner_html())

    page.locator("#review-open textarea, #review-open input").first.fill("evil")
    page.keyboard.press("Enter")
    expect(page.locator("#mat-viewer")).to_contain_text("<b>bold</b>", timeout=10_000)
    page.locator("#review-search textarea, #review-search input").first.fill("bold")
    page.keyboard.press("Enter")
    expect(page.locator("#review-list [role=gridcell]", has_text="<b>bold</b>")).to_have_count(1, timeout=10_000)
    expect(page.locator("#review-list [role=gridcell]", has_text="<i>src</i>")).to_have_count(1)
    for area in ("#review-list", "#mat-viewer", "#review-header"):
        assert page.locator(f"{area} img[src=x], {area} i, {area} b:text('bold')").count() == 0, area
    assert page.title() != "pwned"
