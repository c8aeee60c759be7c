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
