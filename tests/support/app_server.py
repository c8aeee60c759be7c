"""Launch the real app on a free local port for client and browser tests."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

from agent.config import Settings
from core.ui import serve


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_app(settings: Settings) -> Iterator[str]:
    """The app's URL while it serves; closed afterwards."""
    from app import build_app, launch_kwargs

    demo = build_app(settings)
    url = serve(demo, "127.0.0.1", free_port(), block=False, quiet=True, **launch_kwargs(settings))
    try:
        yield url
    finally:
        demo.close()


def message_texts(history: list[dict]) -> list[str]:
    """The text of each chat message as gradio_client returns it (content may be a list of typed parts)."""
    texts = []
    for message in history:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.append("".join(p.get("text", "") for p in content if isinstance(p, dict)))
        else:
            texts.append("")
    return texts
