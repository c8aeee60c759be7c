"""The one interface every model backend offers the agent loop and the tools."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import UserError


class ModelError(UserError):
    """A failure a person can act on (unreachable endpoint, bad key, missing checkpoint)."""


@dataclass
class Message:
    """A one-off chat turn (a tool's question); `images` are file paths shown before the text.

    Agent turns come from `agent.render.render_messages` as chat dicts instead; backends take both.
    """

    role: str
    text: str
    images: list[str] = field(default_factory=list)

    def to_chat(self) -> dict[str, Any]:
        parts: list[dict[str, str]] = [{"type": "image", "image": str(p)} for p in self.images]
        return {"role": self.role, "content": [*parts, {"type": "text", "text": self.text}]}


ChatMessage = dict[str, Any]  # {"role": ..., "content": [{"type": "text"|"image", ...}]}, see agent.render


def to_chat(messages: Sequence[Message | ChatMessage]) -> list[ChatMessage]:
    """Messages in the one chat shape every backend reads."""
    return [m.to_chat() if isinstance(m, Message) else m for m in messages]


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
    def _stream(self, messages: list[ChatMessage], stop: list[str], max_new_tokens: int) -> Iterator[Chunk]:
        """Backend-specific streaming of chat-shaped messages; called while holding a slot."""

    def stream(
        self, messages: Sequence[Message | ChatMessage], *, stop: Sequence[str] = (), max_new_tokens: int = 1024
    ) -> Iterator[Chunk]:
        with self.slots:
            yield from self._stream(to_chat(messages), list(stop), max_new_tokens)

    def generate(
        self, messages: Sequence[Message | ChatMessage], *, stop: Sequence[str] = (), max_new_tokens: int = 1024
    ) -> Chunk:
        """The whole answer as one chunk with the token counts."""
        text, usage = [], Chunk()
        for chunk in self.stream(messages, stop=stop, max_new_tokens=max_new_tokens):
            text.append(chunk.text)
            usage.input_tokens = chunk.input_tokens or usage.input_tokens
            usage.output_tokens = chunk.output_tokens or usage.output_tokens
        return Chunk("".join(text), usage.input_tokens, usage.output_tokens)
