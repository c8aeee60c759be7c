"""The Review tab in Debian's Chromium: the reviewer's name survives a reload, other tabs link into it, someone
else's item opens to look at only, and it looks like the other tabs (placeholders, readable headers, hover text)."""

from __future__ import annotations

import pytest

from review.markup import LIST_HEADERS
from review.store import Store
from tests.support.review_app import linked_review_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)"),
]
LINKS = {"Open FQ8cj0s_": {"open": "FQ8cj0s_"}, "Show the run": {"source": "synthesis:run1"}}


@pytest.fixture
def server(tmp_path, mmtraj_path, mmtraj_records):
    with linked_review_server(tmp_path, mmtraj_path, LINKS) as (url, settings):
        with Store(settings.db) as store:
            store.import_records([{**r, "id": f"s-{r['id']}"} for r in mmtraj_records[:3]], source="synthesis:run1")
        yield url, settings


def _reviewer(page):
    return page.locator("#review-reviewer textarea, #review-reviewer input").first


def test_the_name_survives_a_reload_and_links_from_other_tabs_open_an_item_or_a_run(server, page):
    from playwright.sync_api import expect

    url, settings = server
    page.goto(url)
    page.get_by_role("tab", name="Review", exact=True).click()
    expect(page.locator("#review-list div[role=row]").nth(3)).to_be_visible(timeout=15_000)
    _reviewer(page).fill("ann")
    page.wait_for_timeout(500)
    page.reload()
    page.get_by_role("tab", name="Review", exact=True).click()
    expect(_reviewer(page)).to_have_value("ann", timeout=15_000)

    page.get_by_role("tab", name="Sender", exact=True).click()
    page.get_by_role("button", name="Open FQ8cj0s_").click()
    expect(page.locator("#review-header")).to_contain_text("FQ8cj0s_ · source release", timeout=15_000)
    expect(page.locator("#review-held")).to_have_text("held by you")  # opened as ann's, by the remembered name
    expect(page.locator("#mat-viewer")).to_contain_text("calories")

    page.get_by_role("tab", name="Sender", exact=True).click()
    page.get_by_role("button", name="Show the run").click()
    rows = page.locator("#review-list div[role=row]")
    expect(rows.filter(has_text="s-")).to_have_count(3, timeout=15_000)
    expect(rows.filter(has_text="release")).to_have_count(0)
    expect(page.locator("#review-filter-source input").first).to_have_value("synthesis:run1")

    held = rows.nth(1).locator("[role=gridcell]").first.inner_text()
    with Store(settings.db) as store:
        store.claim(held, "bob")
    page.locator("#review-open textarea, #review-open input").first.fill(held)
    page.keyboard.press("Enter")
    expect(page.locator("#review-held")).to_contain_text("held by bob: open to look at only", timeout=10_000)
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("a")
    expect(page.get_by_text("press Take over first to decide it").first).to_be_visible(timeout=10_000)
    expect(page.locator("#review-count-approved")).to_have_text("0")


def test_placeholders_instead_of_empty_plots_readable_headers_hover_text_and_button_variants(server, page):
    from playwright.sync_api import expect

    url, settings = server
    page.set_viewport_size({"width": 1280, "height": 1200})
    page.goto(url)
    page.get_by_role("tab", name="Review", exact=True).click()
    rows = page.locator("#review-list div[role=row]")
    expect(rows.nth(3)).to_be_visible(timeout=15_000)

    headers = page.locator("#review-list th")
    expect(headers.first).to_be_visible()
    one_line = page.evaluate("""() => [...document.querySelectorAll('#review-list th')].map((th) => {
        const range = document.createRange(); range.selectNodeContents(th.querySelector('.header') || th);
        const lines = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top)));
        return [th.innerText.trim(), lines.size];
      })""")
    assert [name for name, _ in one_line if name] == LIST_HEADERS
    assert all(lines <= 1 for name, lines in one_line if name), one_line

    with Store(settings.db) as store:
        second = store.query().rows[1]  # the list's data-row 1
    task = rows.nth(1).locator("[role=gridcell]").nth(LIST_HEADERS.index("task")).locator("span.text")
    cut = "(text) => text.scrollWidth > text.clientWidth + 1"
    assert task.evaluate(cut)  # a long task, cut by its column (app.css shows it whole under the pointer)
    task.hover()
    page.wait_for_timeout(300)
    assert not task.evaluate(cut) and task.inner_text().strip() == second.task.strip()

    classes = {name: page.locator(f"#{name}").get_attribute("class") for name in
               ("review-approve", "review-reject", "review-skip", "review-take-over", "review-next-pending")}
    assert "primary" in classes.pop("review-approve")
    assert all("secondary" in value and "stop" not in value for value in classes.values()), classes

    page.get_by_role("tab", name="Stats").click()
    expect(page.locator("#review-plot-tools img, #review-plot-tools svg").first).to_be_visible(timeout=15_000)
    for name in ("source", "reviewer", "progress"):
        expect(page.locator(f"#review-plot-{name}-empty")).to_contain_text("No decisions yet")
        expect(page.locator(f"#review-plot-{name}")).to_be_hidden()
    expect(page.locator("#review-plot-tools-empty")).to_be_hidden()
