"""The one interface every model backend offers the agent loop and the tools."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field


class ModelError(Exception):
    """A failure a person can act on (unreachable endpoint, bad key, missing checkpoint)."""


@dataclass
class Message:
    """One chat turn; `images` are file paths, sent to the model with this turn."""

    role: str
    text: str
    images: list[str] = field(default_factory=list)


@dataclass
class Chunk:
    """A piece of a streamed answer; token counts arrive on the last chunk."""

    text: str = ""
    input_tokens: int = 0
    output_tokens: int = 0


class Model(ABC):
    """A chat model that can see images.

    `slots` bounds how many generations run at once: one for a local GPU model,
    a configurable number for a remote endpoint.
    """

    name: str = "model"

    def __init__(self, slots: int = 1) -> None:
        self.slots = threading.BoundedSemaphore(slots)

    @abstractmethod
    def _stream(self, messages: list[Message], stop: list[str], max_new_tokens: int) -> Iterator[Chunk]:
        """Backend-specific streaming; called while holding a slot."""

    def stream(self, messages: list[Message], *, stop: list[str] = (), max_new_tokens: int = 1024) -> Iterator[Chunk]:
        with self.slots:
            yield from self._stream(messages, list(stop), max_new_tokens)

    def generate(self, messages: list[Message], *, stop: list[str] = (), max_new_tokens: int = 1024) -> Chunk:
        """The whole answer as one chunk with the token counts."""
        text, usage = [], Chunk()
        for chunk in self.stream(messages, stop=stop, max_new_tokens=max_new_tokens):
            text.append(chunk.text)
            usage.input_tokens = chunk.input_tokens or usage.input_tokens
            usage.output_tokens = chunk.output_tokens or usage.output_tokens
        return Chunk("".join(text), usage.input_tokens, usage.output_tokens)
