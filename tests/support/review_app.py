"""The launched app (all tabs, as `python app.py` serves it) over a temp store holding the MM-Traj sample."""

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
def review_server(data_dir: Path, sample: Path, auth: str | None = None) -> Iterator[tuple[str, Settings]]:
    """Serve the app on a free port; yields (url, settings) and closes the server afterwards."""
    from app import build_app, launch_kwargs

    settings = Settings(data_dir=data_dir, auth=auth)
    with Store(settings.db) as store:
        store.import_file(sample, source="release")
    demo = build_app(settings)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_kwargs(settings))
    try:
        yield f"http://127.0.0.1:{port}/", settings
    finally:
        demo.close()
