"""Model backends, and `load_model` which picks one from the settings.

The train = serve API (`agent.models.vlm`), public for `train/`: `model_type(path)` (the checkpoint's
architecture, refused in one line if we cannot serve it), `load_processor(path)`, `image_kwargs(processor,
max_pixels)` and `encode_chat(processor, messages, max_pixels=...)`, which turns rendered messages
(`agent.render.render_messages`) into token ids and pixels with control tokens in message text kept as text.

Importing this package stays cheap: torch, transformers and openai load only when a model is built.
"""

from __future__ import annotations

import threading
from pathlib import Path

from agent.models.base import Chunk, Message, Model, ModelError
from agent.models.vlm import QWEN_TYPES, encode_chat, image_kwargs, load_processor, model_type
from core import defaults

__all__ = ["QWEN_TYPES", "SETUP_HELP", "Chunk", "Message", "Model", "ModelError", "encode_chat", "image_kwargs",
           "load_model", "load_processor", "model_type", "setup_help"]

SETUP_HELP = """\
No model is configured. Set one of these in the environment, then restart the app:

  An OpenAI-compatible endpoint
    OpenAI:   MAT_API_KEY=sk-...  (or OPENAI_API_KEY)   MAT_MODEL=gpt-4o-mini
    vLLM:     vllm serve Qwen/Qwen2-VL-7B-Instruct
              MAT_BASE_URL=http://localhost:8000/v1    MAT_MODEL=Qwen/Qwen2-VL-7B-Instruct
    Ollama:   MAT_BASE_URL=http://localhost:11434/v1   MAT_MODEL=qwen2.5vl:7b
    (MAT_MODEL may be left out for a local server: its first listed model is used)

  A local checkpoint (Qwen2-VL, Qwen2.5-VL, MiniCPM-V 4.6 / 4.7) run with transformers
    MAT_LOCAL_MODEL=/path/to/Qwen2-VL-7B-Instruct      MAT_ADAPTER=/path/to/lora-adapter (optional)

  A smoke test without any model: python -m agent run "TASK" --tiny  (random weights, answers are noise)"""


_cache: dict[tuple, Model] = {}
_cache_lock = threading.Lock()


def setup_help() -> str:
    """How to configure a model, for a person who has not yet."""
    return SETUP_HELP


def load_model(settings, *, which: str = "controller", tiny: bool = False) -> Model:
    """The model `settings` describe: the agent's controller, or the visualizer tool's VLM.

    `settings.vlm_model` names the VLM (a checkpoint directory, or a model on the endpoint); without it the
    VLM is the controller. Instances are shared per process, so a local model loads once and a remote
    endpoint's concurrency limit holds across callers.
    """
    if which not in ("controller", "vlm"):
        raise ValueError(f"which must be 'controller' or 'vlm', not {which!r}")
    if tiny:
        from agent.models.tiny import build_tiny_qwen2vl

        with _cache_lock:  # two callers must not build the same directory at once
            path = build_tiny_qwen2vl(settings.data_dir / "tiny-qwen2vl")
        return _local(path, None, settings)
    vlm = settings.vlm_model if which == "vlm" else None
    if vlm and Path(vlm).expanduser().is_dir():
        return _local(Path(vlm), None, settings)
    if settings.local_model and not vlm:
        return _local(Path(settings.local_model), settings.adapter, settings)
    if settings.base_url or settings.api_key:
        name = vlm or settings.model or (None if settings.base_url else defaults.OPENAI_MODEL)
        return _remote(name, settings)
    raise ModelError(SETUP_HELP)


def _local(path: Path, adapter: str | None, settings) -> Model:
    adapter_key = str(Path(adapter).expanduser().resolve()) if adapter else None
    sampling = settings.sampling()
    key = ("local", str(Path(path).expanduser().resolve()), adapter_key, settings.max_pixels, tuple(sampling.items()))
    with _cache_lock:
        if key not in _cache:
            from agent.models.local_vlm import LocalVLM

            _cache[key] = LocalVLM(path, adapter, max_pixels=settings.max_pixels, sampling=sampling)
        return _cache[key]


def _remote(name: str | None, settings) -> Model:
    key = ("remote", name, settings.base_url, settings.api_key, settings.max_pixels, settings.remote_concurrency)
    with _cache_lock:
        if key not in _cache:
            from agent.models.openai_compat import OpenAICompatModel

            _cache[key] = OpenAICompatModel(
                name,
                settings.base_url,
                settings.api_key,
                max_pixels=settings.max_pixels,
                slots=settings.remote_concurrency,
            )
        return _cache[key]
