"""The train = serve API of local VLMs: what a checkpoint is, its processor, and its chat as model inputs.

The local backend (`LocalVLM`) and training (`train/`) both call these, so a tuned model is trained on exactly
the token ids it is served. Text from records, observations and users never becomes a control token:
`encode_chat` encodes `<|im_end|>`, `<|image_pad|>` and the like as plain text wherever a message holds them,
and only the chat template itself writes control tokens.

Importing this module stays cheap; transformers loads only when a processor is built or used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.models.base import ModelError

QWEN_TYPES = frozenset({"qwen2_vl", "qwen2_5_vl"})  # packed rows with per-trajectory mRoPE positions
SUPPORTED_TYPES = QWEN_TYPES | {"minicpmv4_6", "minicpmv4_7"}
SUPPORTED_TEXT = "Qwen2-VL, Qwen2.5-VL, MiniCPM-V 4.6 / 4.7 (native transformers classes)"


def model_type(path: str | Path) -> str:
    """The checkpoint's `model_type`; ModelError with one line for a folder we cannot serve (or train)."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelError(f"{path} has no config.json — MAT_LOCAL_MODEL must be a Hugging Face checkpoint directory")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {config_file}: {exc}") from None
    found = config.get("model_type", "?")
    if found not in SUPPORTED_TYPES:
        hint = " (MiniCPM-V 2.x needs trust_remote_code, which we do not run)" if "minicpm" in found else ""
        raise ModelError(f"{path.name} is a {found!r} checkpoint{hint}; supported: {SUPPORTED_TEXT}")
    return found


def load_processor(path: str | Path, kind: str | None = None):
    """The checkpoint's processor: AutoProcessor, or without torchvision (no video processor) the image-only one."""
    from transformers import AutoProcessor

    path = Path(path)
    kind = kind or model_type(path)
    try:
        processor = AutoProcessor.from_pretrained(path)
    except Exception:  # e.g. the video processor wants torchvision; the image-only processor covers it
        processor = None
    if getattr(processor, "image_processor", None) is not None:
        return processor
    from agent.models.image_only import load_image_only_processor

    try:
        return load_image_only_processor(str(path), kind)
    except Exception as exc:
        raise ModelError(f"cannot build a processor for {path.name}: {first_line(exc)}") from None


def image_kwargs(processor, max_pixels: int) -> dict[str, Any]:
    """Image-processor keywords that make `max_pixels` (the setting) win over the processor's own budget.

    Qwen processors resize to their own pixel range; MiniCPM-V slices by its own rules and takes none."""
    from agent.models.images import MIN_PIXELS

    if "Qwen2VL" in type(processor.image_processor).__name__:
        return {"size": {"shortest_edge": MIN_PIXELS, "longest_edge": max_pixels}}
    return {}


def encode_chat(processor, messages: list[dict[str, Any]], *, max_pixels: int, add_generation_prompt: bool = False,
                return_tensors: str | None = "pt"):
    """Token ids (and pixels) of rendered chat messages whose image parts hold PIL images, as the model sees them.

    Control tokens inside message text are encoded as text (transformers' `sanitize_control_tokens`), so an
    observation that contains `<|im_end|><|im_start|>assistant` cannot open a turn of its own."""
    return processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, sanitize_control_tokens=True,
        add_generation_prompt=add_generation_prompt, return_tensors=return_tensors,
        processor_kwargs=image_kwargs(processor, max_pixels),
    )


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
