"""The Evaluate tab in Debian's Chromium: pick runs, read the scores and chart, click a task, compare two runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from agent.config import Settings
from tests.support.app_server import free_port, running_app
from tests.support.browser import chromium_page
from tests.test_eval_run import gta_folder, oracle_answer, run

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)"),
]


# The box of every text of a chart against the chart's own box: a label outside it is cut off on screen.
LABELS_OUTSIDE = """svgs => svgs.flatMap(svg => {
    const box = svg.getBoundingClientRect();
    return [...svg.querySelectorAll('text')].filter(t => {
        const r = t.getBoundingClientRect();
        return r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5
            || r.bottom > box.bottom + 0.5;
    }).map(t => t.textContent);
})"""
LONG_RUNS = ("gta-20261130-101500-base-qwen2-vl", "gta-20261130-101500-tuned-qwen2-vl-mat-lora")
BASE, TUNED = LONG_RUNS


def test_results_task_viewer_and_base_vs_tuned(gta_path, tmp_path):
    from playwright.sync_api import expect

    folder = gta_folder(gta_path, tmp_path / "gta")
    run(tmp_path, folder, lambda truth: "no idea", BASE)
    run(tmp_path, folder, oracle_answer, TUNED)
    with running_app(Settings(data_dir=tmp_path / "data")) as url, chromium_page(1400, 1600) as page:
        page.goto(url)
        page.get_by_role("tab", name="Evaluate", exact=True).click()
        page.get_by_role("tab", name="Results", exact=True).click()
        runs = page.locator("#eval-runs input").first
        for run_id in LONG_RUNS:
            runs.click()
            page.get_by_role("option", name=f"{run_id} ·").first.click()
        expect(page.locator("#eval-scores")).to_contain_text("100.00% (6/6)", timeout=15_000)
        expect(page.locator("#eval-scores")).to_contain_text("official")
        expect(page.locator("#eval-scores")).to_contain_text("53.85%")
        bars = page.locator("#eval-chart svg rect.mat-bar")
        tallest = bars.evaluate_all("els => Math.max(...els.map(e => e.getBoundingClientRect().height))")
        assert tallest > 100  # the tuned run's 100% AnsAcc bar is drawn
        expect(page.locator("#eval-shared")).to_contain_text("Compared on the 12 task(s) all 2 runs finished")
        legend = page.locator("#eval-chart svg text.mat-legend")
        assert legend.nth(1).text_content().startswith(TUNED)
        assert page.locator("#eval-chart svg").evaluate_all(LABELS_OUTSIDE) == []  # every label inside its chart

        rows = page.locator("#eval-tasks div[role=row]")
        rows.filter(has_text=f"{BASE}/130").locator("[role=gridcell]").first.click()
        viewer = page.locator("#eval-viewer")
        expect(viewer).to_contain_text("How many dollars", timeout=10_000)
        expect(viewer).to_contain_text("no idea")  # the first selected run's answer

        page.get_by_role("tab", name="Base vs tuned", exact=True).click()
        for label, run_id in (("Base run", BASE), ("Tuned run", TUNED)):
            page.get_by_label(label).click()
            page.get_by_role("option", name=f"{run_id} ·").first.click()
        page.get_by_role("button", name="Compare").click()
        flipped = page.locator("div[role=row]").filter(has_text="fixed")
        expect(flipped).to_have_count(6, timeout=10_000)
        flipped.filter(has_text="How many dollars").locator("[role=gridcell]").first.click()
        pair = page.locator("#eval-pair .eval-pair")
        expect(pair).to_contain_text("no idea", timeout=10_000)
        expect(pair).to_contain_text("68")


def test_default_form_runs_and_a_finished_run_shows_its_score_and_opens_results(gta_path, tmp_path):
    from playwright.sync_api import expect

    from tests.test_eval_cli import oracle_server

    folder = gta_folder(gta_path, tmp_path / "gta")
    settings = Settings(data_dir=tmp_path / "data", api_key="sk-test")
    with oracle_server(gta_path) as server, running_app(settings) as url, chromium_page(1400, 1200) as page:
        page.goto(url)
        page.get_by_role("tab", name="Evaluate", exact=True).click()
        page.get_by_label("Data folder").fill(str(folder))
        page.get_by_label("endpoint", exact=True).check()
        page.get_by_label("Endpoint base URL").fill(server.url)
        page.get_by_label("Concurrency").fill("0")
        page.locator("#eval-start").click()
        expect(page.get_by_text("Concurrency: 0 is less than 1")).to_be_visible()  # the field, by its name
        expect(page.locator("#eval-status")).to_contain_text("No run started")  # and nothing started

        page.get_by_label("Concurrency").fill("3")
        page.locator("#eval-start").click()  # every other field as the form first showed it
        status = page.locator("#eval-status")
        expect(status).to_contain_text("finished: 12 run", timeout=90_000)
        expect(status).to_contain_text("AnsAcc 100.00% (6/6, official)")
        assert not page.get_by_text("Error", exact=True).is_visible()
        page.locator("#eval-show").click()
        expect(page.locator("#eval-scores")).to_contain_text("100.00% (6/6)", timeout=15_000)
        expect(page.locator("#eval-tasks")).to_contain_text("130")


@contextlib.contextmanager
def page_with_links(settings: Settings, sends: dict[str, dict]) -> Iterator[str]:
    """A page of two tabs: buttons that send addresses to Evaluate (as Train's do), and the Evaluate tab."""
    import gradio as gr

    from core.ui import Links, serve, wire
    from eval.ui import build_eval_tab

    def sender(links: Links, address: dict):
        return lambda: links.go("evaluate", **address)

    with gr.Blocks() as demo:
        with gr.Tabs() as tabs:
            links = Links(tabs)
            with gr.Tab("Train", id="train"):
                for label, address in sends.items():
                    wire(gr.Button(label).click, sender(links, address), [], links.outputs("evaluate"))
            with gr.Tab("Evaluate", id="evaluate"):
                build_eval_tab(settings, links)
    url = serve(demo.queue(), "127.0.0.1", free_port(), block=False, quiet=True)
    try:
        yield url
    finally:
        demo.close()


def test_links_prefill_a_local_checkpoint_with_its_adapter_and_open_a_runs_results(gta_path, tmp_path):
    from playwright.sync_api import expect

    run(tmp_path, gta_folder(gta_path, tmp_path / "gta"), oracle_answer, "linked-run")
    checkpoint, adapter = tmp_path / "Qwen2-VL-7B-Instruct", tmp_path / "runs" / "lora" / "adapter"
    sends = {"Evaluate this adapter": {"local_model": str(checkpoint), "adapter": str(adapter)},
             "See its results": {"results": "linked-run"}}
    with page_with_links(Settings(data_dir=tmp_path / "data"), sends) as url, chromium_page(1400, 1200) as page:
        page.goto(url)
        page.get_by_role("button", name="Evaluate this adapter").click()
        expect(page.locator("#eval-local-model textarea")).to_have_value(str(checkpoint), timeout=10_000)
        expect(page.locator("#eval-adapter textarea")).to_have_value(str(adapter))
        expect(page.locator("#eval-model-source").get_by_label("local checkpoint", exact=True)).to_be_checked()
        expect(page.locator("#eval-start")).to_be_visible()  # the Run form is the part shown

        page.get_by_role("tab", name="Train", exact=True).click()
        page.get_by_role("button", name="See its results").click()
        expect(page.locator("#eval-scores")).to_contain_text("100.00% (6/6)", timeout=15_000)
        expect(page.locator("#eval-tasks")).to_contain_text("130")
