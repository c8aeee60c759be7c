"""The tiny Qwen2-VL checkpoint as a session fixture (registered in tests/conftest.py):

    def test_something(tiny_checkpoint):
        model = LocalVLM(tiny_checkpoint)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.models.tiny import build_tiny_qwen2vl


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2-VL (config, weights, tokenizer, processor), built once per test session."""
    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny") / "tiny-qwen2vl")
