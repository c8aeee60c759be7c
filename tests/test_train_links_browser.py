"""A finished run's links in Debian's Chromium: "Use in Chat" and "Evaluate" select their tab in the same page and
hand it the run's base model and adapter (the address a tab listening on `Links.address` receives); without a
picked run, the page warns and stays where it is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import Settings
from core.ui import serve
from tests.support.app_server import free_port
from tests.support.train_records import short_release

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)")]
ROOT = Path(__file__).resolve().parents[1]


def _finished_run(records: list[dict], folder: Path, settings: Settings) -> Path:
    """A tiny run trained by the CLI and recorded in the app's store; returns its folder."""
    data, images = short_release(records, folder, 4)
    out = folder / "run"
    result = subprocess.run(
        [sys.executable, "-m", "train", "--data", str(data), "--images", str(images), "--tiny", "--out", str(out),
         "--db", str(settings.db), "--cache-dir", str(folder / "cache"), "--max-length", "2048", "--row-tokens",
         "2048", "--token-budget", "2048", "--max-steps", "1"],
        capture_output=True, text=True, timeout=240, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def _page(settings: Settings):
    """The Train tab beside a Chat and an Evaluate tab that show the address they receive."""
    import gradio as gr

    from core.ui import Links
    from train.ui import build_train_tab

    with gr.Blocks() as demo:
        with gr.Tabs() as tabs:
            links = Links(tabs)
            with gr.Tab("Train", id="train"):
                build_train_tab(settings, links)
            for name, tab in (("Chat", "chat"), ("Evaluate", "evaluate")):
                with gr.Tab(name, id=tab):
                    shown = gr.Markdown("nothing received", elem_id=f"received-{tab}")
                    address = links.address(tab)
                    address.change(lambda a: f"base={a['local_model']} adapter={a['adapter']}", address, shown)
    return demo


def test_use_in_chat_and_evaluate_open_their_tab_with_the_runs_base_and_adapter(mmtraj_records, tmp_path, page):
    from playwright.sync_api import expect

    settings = Settings(data_dir=tmp_path / "app")
    out = _finished_run(mmtraj_records, tmp_path, settings)
    demo = _page(settings)
    url = serve(demo.queue(), "127.0.0.1", free_port(), block=False, quiet=True)
    try:
        page.set_viewport_size({"width": 1400, "height": 1400})
        page.goto(url)
        # A run trained from the terminal is what the tab shows first: its status, folder and curve.
        expect(page.locator("#train-status")).to_contain_text("Newest run: done (run")
        expect(page.locator("#train-status")).to_contain_text(f"folder {out}")
        page.get_by_role("button", name="Use in Chat").click()
        expect(page.get_by_text("pick a run in the list first")).to_be_visible()  # a warning, no tab change
        expect(page.get_by_role("tab", name="Train")).to_have_attribute("aria-selected", "true")

        page.locator("#train-run-pick input").click()
        page.get_by_role("option", name="run · done · 1/1").click()
        expected = f"base={out / 'tiny-base'} adapter={out / 'adapter'}"
        for button, tab in (("Use in Chat", "Chat"), ("Evaluate", "Evaluate")):
            page.get_by_role("tab", name="Train").click()
            page.get_by_role("button", name=button).click()
            expect(page.get_by_role("tab", name=tab)).to_have_attribute("aria-selected", "true")
            expect(page.locator(f"#received-{tab.lower()}")).to_have_text(expected)
    finally:
        demo.close()
