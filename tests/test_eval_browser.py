"""The Evaluate tab in Debian's Chromium: pick runs, read the scores and chart, click a task, compare two runs."""

from __future__ import annotations

import pytest

from agent.config import Settings
from tests.support.app_server import running_app
from tests.support.browser import chromium_page
from tests.test_eval_run import gta_folder, oracle_answer, run

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)"),
]


def test_results_task_viewer_and_base_vs_tuned(gta_path, tmp_path):
    from playwright.sync_api import expect

    folder = gta_folder(gta_path, tmp_path / "gta")
    run(tmp_path, folder, lambda truth: "no idea", "base")
    run(tmp_path, folder, oracle_answer, "tuned")
    with running_app(Settings(data_dir=tmp_path / "data")) as url, chromium_page(1400, 1600) as page:
        page.goto(url)
        page.get_by_role("tab", name="Evaluate", exact=True).click()
        page.get_by_role("tab", name="Results", exact=True).click()
        runs = page.locator("#eval-runs input").first
        for run_id in ("base", "tuned"):
            runs.click()
            page.get_by_role("option", name=f"{run_id} ·").first.click()
        expect(page.locator("#eval-scores")).to_contain_text("100.00% (6/6)", timeout=15_000)
        expect(page.locator("#eval-scores")).to_contain_text("official")
        expect(page.locator("#eval-scores")).to_contain_text("53.85%")
        bars = page.locator("#eval-chart svg rect.mat-bar")
        tallest = bars.evaluate_all("els => Math.max(...els.map(e => e.getBoundingClientRect().height))")
        assert tallest > 100  # the tuned run's 100% AnsAcc bar is drawn

        rows = page.locator("#eval-tasks div[role=row]")
        rows.filter(has_text="base/130").locator("[role=gridcell]").first.click()
        viewer = page.locator("#eval-viewer")
        expect(viewer).to_contain_text("How many dollars", timeout=10_000)
        expect(viewer).to_contain_text("no idea")  # the first selected run's answer

        page.get_by_role("tab", name="Base vs tuned", exact=True).click()
        for label, run_id in (("Base run", "base"), ("Tuned run", "tuned")):
            page.get_by_label(label).click()
            page.get_by_role("option", name=f"{run_id} ·").first.click()
        page.get_by_role("button", name="Compare").click()
        flipped = page.locator("div[role=row]").filter(has_text="fixed")
        expect(flipped).to_have_count(6, timeout=10_000)
        flipped.filter(has_text="How many dollars").locator("[role=gridcell]").first.click()
        pair = page.locator("#eval-pair .eval-pair")
        expect(pair).to_contain_text("no idea", timeout=10_000)
        expect(pair).to_contain_text("68")
