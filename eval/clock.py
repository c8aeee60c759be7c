"""A task's own clock: its time limit counts only while it has what it needs to run.

A local model serves one request at a time and an endpoint a few (`Model.slots`); with more tasks in
flight than that, a task would spend its time limit waiting for its turn and be scored as a timeout
before it ran. So each task sees the shared model through `ClockedModel`, which stops the task's clock
while it queues for a slot, and the clock starts only once the task's sandbox is up.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from agent.models.base import ChatMessage, Chunk, Message, Model, to_chat


class TaskClock:
    """Seconds a task has been running, not counting the time it waited for a model slot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: float | None = None
        self._waiting = 0  # calls queued for a slot right now (the visualizer tool may queue beside the loop)
        self._paused_at = 0.0
        self._waited = 0.0

    def start(self) -> None:
        with self._lock:
            self._started = time.monotonic()

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """The clock stands still inside this block."""
        with self._lock:
            if self._waiting == 0:
                self._paused_at = time.monotonic()
            self._waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self._waiting -= 1
                if self._waiting == 0:
                    self._waited += time.monotonic() - self._paused_at

    def seconds(self) -> float:
        with self._lock:
            if self._started is None:
                return 0.0
            now = time.monotonic()
            paused = now - self._paused_at if self._waiting else 0.0
            return max(0.0, now - self._started - self._waited - paused)

    @contextlib.contextmanager
    def limit(self, seconds: float, on_expiry: Callable[[], None]) -> Iterator[None]:
        """Call `on_expiry` once the task has run `seconds` of its own time, unless the block ends first."""
        done = threading.Event()

        def watch() -> None:
            while not done.wait(max(0.01, seconds - self.seconds())):
                if self.seconds() >= seconds:
                    on_expiry()
                    return

        watcher = threading.Thread(target=watch, name="eval-clock", daemon=True)
        self.start()
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()


class ClockedModel(Model):
    """One task's view of a shared model: the same slots and backend, with the wait for a slot off its clock."""

    def __init__(self, model: Model, clock: TaskClock) -> None:  # no slots of its own: it queues on `model`'s
        self.model = model
        self.clock = clock
        self.name = model.name

    def __getattr__(self, name: str):
        if name == "model":  # not set yet (a copy being built): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.model, name)

    def stream(
        self, messages: Sequence[Message | ChatMessage], *, stop: Sequence[str] = (), max_new_tokens: int = 1024
    ) -> Iterator[Chunk]:
        with self.clock.waiting():
            self.model.slots.acquire()
        try:
            yield from self.model._stream(to_chat(messages), list(stop), max_new_tokens)
        finally:
            self.model.slots.release()

    def _stream(self, messages: list[ChatMessage], stop: list[str], max_new_tokens: int) -> Iterator[Chunk]:
        return self.model._stream(messages, stop, max_new_tokens)
