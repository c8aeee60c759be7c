"""The one way a tab attaches a handler: refusals warn and leave the page as it was.

A `UserError` becomes a warning toast and every output keeps its value (no red overlays, nothing
typed is lost, every button stays clickable). Any other exception is a bug: its traceback goes to
the log and the page shows one line. Gradio is imported only when a handler runs or is attached.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

from core.errors import UserError

_log = logging.getLogger("mat.ui")


def wire(trigger: Callable, fn: Callable, inputs: Any, outputs: Any, api_name: str | None = None,
         **options: Any) -> Any:
    """Attach `fn` to `trigger` (`button.click`, `timer.tick`, ...); events without a name stay off the API."""
    count = len(outputs) if isinstance(outputs, (list, tuple)) else 1
    return trigger(forgiving(fn, count), inputs, outputs, api_name=api_name,
                   api_visibility="public" if api_name else "private", **options)


def forgiving(fn: Callable, outputs: int) -> Callable:
    """`fn` with refusals turned into a warning that leaves its `outputs` outputs as they were."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 — shown as one line; a bug's traceback is logged
                yield _refused(exc, outputs)
        return streaming

    @functools.wraps(fn)
    def handler(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 — shown as one line; a bug's traceback is logged
            return _refused(exc, outputs)
    return handler


def one_line(exc: BaseException) -> str:
    """An exception as one line a person can read: the message alone for a refusal, the type for a bug."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, UserError) else f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _refused(exc: Exception, outputs: int):
    import gradio as gr

    if isinstance(exc, UserError):
        gr.Warning(one_line(exc))
    else:
        _log.exception("a page handler failed")
        gr.Warning(f"Something went wrong: {one_line(exc)[:300]} (details in the app's log)")
    unchanged = tuple(gr.skip() for _ in range(outputs))
    return unchanged[0] if outputs == 1 else unchanged


def serve(demo: Any, host: str, port: int, *, block: bool = True, tries: int = 3, **launch: Any) -> str:
    """Launch `demo` on host:port; returns its URL (after the server stops, when `block`).

    Gradio checks that the page answers within 3 s of starting and gives up otherwise ("When localhost is
    not accessible, a shareable link must be created"); on a busy machine the first page can take longer,
    so a failed check is retried, on the same port, before it counts.
    """
    for attempt in range(1, tries + 1):
        try:
            demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, **launch)
            return f"http://{host}:{port}/"
        except ValueError as exc:
            if "localhost is not accessible" not in str(exc) or attempt == tries:
                raise
            _log.warning("the page did not answer in time (try %d of %d); launching again", attempt, tries)
            demo.close()
    raise AssertionError("unreachable")


class Links:
    """Links between the tabs of one page: a handler anywhere switches to a tab and hands it an address
    (`{"source": "synthesis:abc"}`, `{"open": "traj-id"}`, ...), which that tab applies to itself.

    `app.py` makes one for the page inside `gr.Tabs`; a tab that can be linked to calls `address(name)` for the
    component whose `.change` it listens to; a tab that links out adds `outputs(name)` to an event's outputs
    and returns `go(name, ...)` from its handler.
    """

    def __init__(self, tabs: Any) -> None:
        self.tabs = tabs
        self._addresses: dict[str, Any] = {}

    def address(self, tab: str) -> Any:
        """The hidden state that carries addresses to `tab` (made on first use, inside the page's Blocks)."""
        import gradio as gr

        if tab not in self._addresses:
            self._addresses[tab] = gr.State(None)
        return self._addresses[tab]

    def outputs(self, tab: str) -> list[Any]:
        return [self.tabs, self.address(tab)]

    def go(self, tab: str, **address: Any) -> tuple[Any, dict]:
        """The values for `outputs(tab)`: select the tab, and hand it `address` (a fresh one, even if repeated)."""
        import time

        import gradio as gr

        return gr.Tabs(selected=tab), {**address, "sent": time.time()}
