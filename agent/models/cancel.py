"""Stopping a model call from another thread: a run's stop switch reaches backoff sleeps and hung requests.

The agent loop calls a model from whatever thread iterates the run (Gradio hands each step
of a generator to a pool thread), while Stop is pressed on another. The run sets its stop
event as the current one around each step (`cancelled_by`); a backend that blocks (a retry's
backoff, a request to a server that does not answer) waits through `interruptible` and
`until_cancelled`, which give up within CHECK_SECONDS of the event being set. The abandoned
request finishes, or times out, on a thread of its own and its answer is dropped.

The waiting calls do not poll: one watch thread, running only while calls wait, looks at their
stop events every CHECK_SECONDS and wakes those stopped, so a run of many slow requests in flight
costs a tick of one thread, not a wake-up of each.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
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
    if cancel.is_set():
        raise ModelCancelled("stopped")
    outcome: list = []
    ended = threading.Event()  # the call returned or raised, or the run was stopped
    lock = threading.Lock()

    def work() -> None:
        try:
            result = (True, call())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            result = (False, exc)
        with lock:
            outcome.append(result)
            dropped = len(outcome) > 1
        ended.set()
        if dropped and result[0]:
            _close(result[1])

    with _watch.waking(cancel, ended.set):
        threading.Thread(target=work, name="model-call", daemon=True).start()
        ended.wait()
    with lock:
        if not outcome:
            outcome.append(None)  # marks the call abandoned: its result is closed when it comes
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
        with _watch.waking(cancel, lambda: handoff.put((False, ModelCancelled("stopped")))):
            while True:
                ok, item = handoff.get()
                if not ok:
                    raise item
                if item is end:
                    return
                yield item
    finally:
        abandoned.set()


class _Watch:
    """One thread that, while calls wait, checks their stop events every CHECK_SECONDS and wakes the stopped ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[threading.Event, Callable[[], None]]] = {}
        self._tokens = itertools.count()
        self._running = False

    @contextmanager
    def waking(self, cancel: threading.Event, wake: Callable[[], None]) -> Iterator[None]:
        """While inside, `wake()` is called once, within CHECK_SECONDS of `cancel` being set."""
        token = next(self._tokens)
        with self._lock:
            self._waiting[token] = (cancel, wake)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="model-cancel-watch", daemon=True).start()
        try:
            yield
        finally:
            with self._lock:
                self._waiting.pop(token, None)

    def _run(self) -> None:
        while True:
            time.sleep(CHECK_SECONDS)
            with self._lock:
                if not self._waiting:
                    self._running = False
                    return
                stopped = [token for token, (cancel, _) in self._waiting.items() if cancel.is_set()]
                wakes = [self._waiting.pop(token)[1] for token in stopped]
            for wake in wakes:
                wake()


_watch = _Watch()


def _close(value: Any) -> None:
    close = getattr(value, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001 - best effort on a request nobody waits for
            pass
