"""The launched app (all tabs, as `python app.py` serves it) over a temp store holding the MM-Traj sample."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from agent.config import Settings
from core.ui import serve
from review.store import Store
from tests.support.app_server import free_port


@contextmanager
def review_server(data_dir: Path, sample: Path, auth: str | None = None) -> Iterator[tuple[str, Settings]]:
    """Serve the app on a free port; yields (url, settings) and closes the server afterwards."""
    from app import build_app, launch_kwargs

    settings = Settings(data_dir=data_dir, auth=auth)
    with Store(settings.db) as store:
        store.import_file(sample, source="release")
    demo = build_app(settings)
    url = serve(demo, "127.0.0.1", free_port(), block=False, quiet=True, **launch_kwargs(settings))
    try:
        yield url, settings
    finally:
        demo.close()


@contextmanager
def linked_review_server(data_dir: Path, sample: Path, links_to: dict[str, dict]) -> Iterator[tuple[str, Settings]]:
    """A page with the Review tab and a "Sender" tab whose buttons (named by `links_to`'s keys) send their address
    to Review through `core.ui.Links`, as Chat's Save and Synthesize do."""
    import gradio as gr

    from app import launch_kwargs
    from core.ui import Links, wire
    from review.ui import build_review_tab

    settings = Settings(data_dir=data_dir)
    with Store(settings.db) as store:
        store.import_file(sample, source="release")
    with gr.Blocks() as demo:
        with gr.Tabs() as tabs:
            links = Links(tabs)
            with gr.Tab("Sender", id="sender"):
                for label, address in links_to.items():
                    wire(gr.Button(label).click, lambda address=address: links.go("review", **address), [],
                         links.outputs("review"))
            with gr.Tab("Review", id="review"):
                build_review_tab(settings, links)
    url = serve(demo, "127.0.0.1", free_port(), block=False, quiet=True, **launch_kwargs(settings))
    try:
        yield url, settings
    finally:
        demo.close()


def unchanged(outputs) -> bool:
    """A refused action answers with a warning and leaves every output as it was (bare updates)."""
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return all(isinstance(o, dict) and set(o) <= {"__type__", "props"} for o in outputs)
