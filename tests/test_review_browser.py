"""The Review tab in Debian's Chromium: filter, open, approve with the keyboard, export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from review.markup import LIST_HEADERS
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


def _inner_scrollers(page, selector: str) -> list[str]:
    """Elements inside `selector` that scroll vertically on their own (content taller than their box)."""
    return page.evaluate(
        """(selector) => [...document.querySelectorAll(selector + ' *')].filter((el) => {
             const style = getComputedStyle(el);
             return ['auto', 'scroll'].includes(style.overflowY) && el.scrollHeight > el.clientHeight + 2;
           }).map((el) => el.tagName + '.' + el.className)""", selector)


def test_a_refused_reject_leaves_the_page_usable_and_the_list_needs_no_inner_scrolling(server, page, mmtraj_records):
    from playwright.sync_api import expect

    from review.store import Store

    url, settings = server
    wide = json.loads(json.dumps(mmtraj_records[0]))
    wide["id"] = "wide"
    long_line = "print(" + " + ".join(f"'segment number {n}'" for n in range(40)) + ")"
    wide["conversations"][2]["value"] = wide["conversations"][2]["value"].replace("```py\n", f"```py\n{long_line}\n", 1)
    with Store(settings.db) as store:
        store.import_records([wide], source="wide")
    page.set_viewport_size({"width": 1400, "height": 1600})
    page.goto(url)
    page.get_by_role("tab", name="Review", exact=True).click()
    rows = page.locator("#review-list div[role=row]")
    expect(rows.nth(16)).to_be_visible(timeout=15_000)
    assert _inner_scrollers(page, "#review-list") == []
    task_cell = page.locator("#review-list [role=gridcell]").nth(LIST_HEADERS.index("task")).bounding_box()
    assert task_cell["width"] > 350  # the task column is readable

    page.locator("#review-reviewer textarea, #review-reviewer input").first.fill("ann")
    page.locator("#review-open textarea, #review-open input").first.fill("wide")
    page.keyboard.press("Enter")
    expect(page.locator("#review-status")).to_have_text("pending", timeout=10_000)
    viewer = page.locator("#mat-viewer")
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1")
    code = viewer.locator(".mat-code pre").first
    assert code.evaluate("el => el.scrollWidth <= el.clientWidth + 1 || getComputedStyle(el).overflowX === 'auto'")
    assert code.bounding_box()["width"] <= viewer.bounding_box()["width"] + 1

    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("r")
    expect(page.get_by_text("pick at least one reject reason or write a note")).to_be_visible(timeout=10_000)
    page.wait_for_timeout(500)
    assert page.locator(".error").filter(has_text="Error").count() == 0
    expect(rows.nth(16)).to_be_visible()
    expect(page.locator("#review-status")).to_have_text("pending")
    reason = page.get_by_label("Final answer wrong or missing")
    reason.check()
    expect(reason).to_be_checked()
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("r")
    expect(page.locator("#review-count-rejected")).to_have_text("1", timeout=10_000)
    page.screenshot(path="/tmp/review_refused.png", full_page=False)
