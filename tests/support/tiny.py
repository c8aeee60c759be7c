"""The tiny Qwen2-VL checkpoint and a photo as session fixtures (registered in tests/conftest.py), and `ask`:

    def test_something(tiny_checkpoint, vlm_photo):
        LocalVLM(tiny_checkpoint).generate(ask(images=(vlm_photo,)))
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from agent.models.base import ChatMessage, Message, to_chat
from agent.models.tiny import build_tiny_qwen2vl


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2-VL (config, weights, tokenizer, processor), built once per test session."""
    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny") / "tiny-qwen2vl")


@pytest.fixture(scope="session")
def vlm_photo(tmp_path_factory) -> str:
    """A 640x480 photo: larger than the tiny models' pixel budgets, so resizing is exercised."""
    path = tmp_path_factory.mktemp("img") / "photo.png"
    Image.new("RGB", (640, 480), (30, 160, 60)).save(path)
    return str(path)


def ask(text: str = "What is in the picture?", images: tuple[str, ...] = ()) -> list[ChatMessage]:
    """A system turn and a user turn with `images`, in the chat shape backends read."""
    return to_chat([Message("system", "You are an agent."), Message("user", text, list(images))])
