"""A model stand-in that replays recorded assistant turns (of MM-Traj records) in order.

Everything around it is real: the loop parses, the sandbox executes, tools run.
"""

from __future__ import annotations

from collections.abc import Iterator

from agent.models.base import ChatMessage, Chunk, Model
from agent.render import message_text


class ReplayModel(Model):
    name = "replay"

    def __init__(self, turns: list[str], *, chunk_size: int = 16, tail: str = "") -> None:
        super().__init__(slots=1)
        self.turns = list(turns)
        self.chunk_size = chunk_size
        self.tail = tail
        self.seen: list[list[ChatMessage]] = []

    @classmethod
    def from_record(cls, record: dict, **kwargs) -> ReplayModel:
        return cls([t["value"] for t in record["conversations"] if t["from"] == "assistant"], **kwargs)

    def _stream(self, messages: list[ChatMessage], stop: list[str], max_new_tokens: int) -> Iterator[Chunk]:
        self.seen.append(messages)
        text = (self.turns.pop(0) if self.turns else "I have nothing more to say.") + self.tail
        pieces = [text[i:i + self.chunk_size] for i in range(0, len(text), self.chunk_size)]
        for piece in pieces[:-1]:
            yield Chunk(piece)
        yield Chunk(pieces[-1] if pieces else "", input_tokens=sum(len(message_text(m)) for m in messages) // 4,
                    output_tokens=len(text) // 4)
