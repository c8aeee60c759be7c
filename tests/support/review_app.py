"""A launched app holding only the Review tab, over a temp store with the MM-Traj sample imported."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from agent.config import Settings
from review.store import Store


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def review_server(data_dir: Path, sample: Path, auth: list[tuple[str, str]] | None = None) -> Iterator[tuple[str, Settings]]:
    """Serve the Review tab on a free port; yields (url, settings) and closes the server afterwards."""
    import gradio as gr

    from review.ui import REVIEW_HEAD, build_review_tab

    settings = Settings(data_dir=data_dir)
    with Store(settings.db) as store:
        store.import_file(sample, source="release")
    with gr.Blocks(title="MAT Studio") as demo:
        with gr.Tab("Review"):
            build_review_tab(settings)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        head=REVIEW_HEAD, show_error=False, auth=auth)
    try:
        yield f"http://127.0.0.1:{port}/", settings
    finally:
        demo.close()
