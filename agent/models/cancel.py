"""Stopping a model call from another thread: a run's stop switch reaches backoff sleeps and hung requests.

The agent loop calls a model from whatever thread iterates the run (Gradio hands each step
of a generator to a pool thread), while Stop is pressed on another. The run sets its stop
event as the current one around each step (`cancelled_by`); a backend that blocks (a retry's
backoff, a request to a server that does not answer) waits through `interruptible` and
`until_cancelled`, which give up within CHECK_SECONDS of the event being set. The abandoned
request finishes, or times out, on a thread of its own and its answer is dropped.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from agent.models.base import ModelError

T = TypeVar("T")
CHECK_SECONDS = 0.05
_CURRENT: ContextVar[threading.Event | None] = ContextVar("mat_model_cancel", default=None)


class ModelCancelled(ModelError):
    """The run was stopped while the model was being called."""


@contextmanager
def cancelled_by(event: threading.Event) -> Iterator[None]:
    """Model calls made inside this block stop waiting once `event` is set."""
    token = _CURRENT.set(event)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current() -> threading.Event | None:
    return _CURRENT.get()


def sleep(seconds: float, cancel: threading.Event | None) -> None:
    """time.sleep that ends early, with ModelCancelled, when `cancel` is set."""
    if cancel is None:
        threading.Event().wait(seconds)
    elif cancel.wait(seconds):
        raise ModelCancelled("stopped")


def interruptible(call: Callable[[], T], cancel: threading.Event | None) -> T:
    """`call()`, or ModelCancelled as soon as `cancel` is set; an abandoned result is closed when it comes."""
    if cancel is None:
        return call()
    outcome: list = []
    finished, abandoned = threading.Event(), threading.Event()

    def work() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome.append((False, exc))
        finished.set()
        if abandoned.is_set() and outcome[0][0]:
            _close(outcome[0][1])

    threading.Thread(target=work, name="model-call", daemon=True).start()
    while not finished.wait(CHECK_SECONDS):
        if cancel.is_set():
            abandoned.set()
            if finished.is_set() and outcome[0][0]:
                _close(outcome[0][1])
            raise ModelCancelled("stopped")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def until_cancelled(items: Any, cancel: threading.Event | None) -> Iterator[Any]:
    """The items of a blocking iterator (a response stream), ending with ModelCancelled once `cancel` is set.

    With `cancel`, the stream is read and closed on a thread of its own (closed too when the reader stops early).
    """
    if cancel is None:
        yield from items
        return
    handoff: queue.Queue = queue.Queue()
    abandoned = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in items:
                if abandoned.is_set():
                    break
                handoff.put((True, item))
            handoff.put((True, end))
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            handoff.put((False, exc))
        finally:
            _close(items)  # the producing thread owns the stream: closing it from another could race a read

    threading.Thread(target=produce, name="model-stream", daemon=True).start()
    try:
        while True:
            try:
                ok, item = handoff.get(timeout=CHECK_SECONDS)
            except queue.Empty:
                if cancel.is_set():
                    raise ModelCancelled("stopped") from None
                continue
            if not ok:
                raise item
            if item is end:
                return
            yield item
    finally:
        abandoned.set()


def _close(value: Any) -> None:
    close = getattr(value, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001 - best effort on a request nobody waits for
            pass
