"""Packing: trajectories share a row, each attending only to itself.

First-fit-decreasing fills rows up to a token budget. A packed row carries position ids that restart at 0 for
every trajectory; for Qwen2-VL they have four rows (text positions, then the three mRoPE rows computed per
trajectory by the model's own `get_rope_index`). The row is passed with no attention mask and `use_cache=False`,
so the attention in `train.attention` (or transformers' packed-sequence detection) keeps trajectories apart; the
row also carries its segment boundaries (`cu_seq_lens_q`, `max_length_q`), computed here on the CPU once, so
the attention layers never derive them on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from train.data import IGNORE, Example


@dataclass
class Batch:
    """Model keyword arguments for one packed row, and what it holds."""

    inputs: dict[str, Any]
    ids: list[str]
    tokens: int  # real tokens (without padding)
    padding: int
    images: int
    label_tokens: int
    weights: Any = None  # (rows, length): each labelled token's weight in the step's loss (`train.loss`)


def length_of(item) -> int:
    """A length, or the length of an example."""
    return item if isinstance(item, int) else len(item)


def token_weights(examples: Sequence[Example], labels):
    """Each labelled token's weight (its example's), zero elsewhere, shaped like `labels`."""
    import torch

    per_token = torch.cat([torch.full((len(e),), float(e.weight)) for e in examples])
    padded = torch.zeros(labels.shape[-1])
    padded[: per_token.shape[0]] = per_token
    return torch.where(labels != IGNORE, padded, 0.0)


def first_fit_decreasing(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Indices grouped into bins of at most `budget` tokens; longest first, each into the first bin it fits.

    A length above the budget gets a bin of its own (the encoder keeps lengths under the max length).
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    room: list[int] = []
    for index in order:
        for slot, free in enumerate(room):
            if lengths[index] <= free:
                bins[slot].append(index)
                room[slot] -= lengths[index]
                break
        else:
            bins.append([index])
            room.append(budget - lengths[index])
    return bins


def rope_index_fn(model):
    """The model's `get_rope_index` (Qwen2-VL family), found through PEFT and task wrappers; None otherwise."""
    for module in model.modules():
        if hasattr(module, "get_rope_index") and hasattr(module, "language_model"):
            return module.get_rope_index
    return None


def add_rope_positions(examples: Sequence[Example], model) -> None:
    """Give each example its own (3, L) mRoPE positions, computed alone, as it would be served."""
    import torch

    rope_index = rope_index_fn(model)
    for example in examples:
        if example.position_ids is not None:
            continue
        length = len(example)
        if rope_index is None:
            example.position_ids = torch.arange(length).expand(3, length).clone()
            continue
        positions, _ = rope_index(
            example.input_ids[None],
            mm_token_type_ids=example.mm_token_type_ids[None],
            image_grid_thw=example.image_grid_thw,
        )
        example.position_ids = positions[:, 0].clone()


def pack(examples: Sequence[Example], *, pad_id: int, pad_to_multiple: int = 1) -> Batch:
    """One row holding `examples` back to back, position ids restarting per example, padded at the end.

    Padding (only to reach `pad_to_multiple`) is a segment of its own with masked labels.
    """
    import torch

    length = sum(len(e) for e in examples)
    padding = -length % pad_to_multiple
    input_ids = [e.input_ids for e in examples]
    labels = [e.labels for e in examples]
    types = [e.mm_token_type_ids for e in examples]
    text_positions = [torch.arange(len(e)) for e in examples]
    rope = [e.position_ids if e.position_ids is not None else torch.arange(len(e)).expand(3, len(e))
            for e in examples]
    if padding:
        input_ids.append(torch.full((padding,), pad_id, dtype=torch.long))
        labels.append(torch.full((padding,), IGNORE, dtype=torch.long))
        types.append(torch.zeros(padding, dtype=types[0].dtype))
        text_positions.append(torch.arange(padding))
        rope.append(torch.arange(padding).expand(3, padding))
    positions = torch.cat([torch.cat(text_positions)[None], torch.cat(rope, dim=1)], dim=0)
    segments = [len(e) for e in examples] + ([padding] if padding else [])
    cu_seqlens = torch.tensor([0] + segments, dtype=torch.int32).cumsum(0, dtype=torch.int32)
    inputs: dict[str, Any] = {
        "input_ids": torch.cat(input_ids)[None],
        "labels": torch.cat(labels)[None],
        "mm_token_type_ids": torch.cat(types)[None],
        "position_ids": positions[:, None, :],  # (4, 1, L)
        "cu_seq_lens_q": cu_seqlens, "cu_seq_lens_k": cu_seqlens,
        "max_length_q": max(segments), "max_length_k": max(segments),
    }
    with_images = [e for e in examples if e.pixel_values is not None]
    if with_images:
        inputs["pixel_values"] = torch.cat([e.pixel_values for e in with_images])
        inputs["image_grid_thw"] = torch.cat([e.image_grid_thw for e in with_images])
    return Batch(
        inputs=inputs,
        ids=[e.id for e in examples],
        tokens=length,
        padding=padding,
        images=sum(e.n_images for e in examples),
        label_tokens=int(sum((e.labels != IGNORE).sum() for e in examples)),
        weights=token_weights(examples, inputs["labels"][0])[None],
    )


def plan_rows(examples: Sequence[Example] | Sequence[int], row_tokens: int) -> list[list[int]]:
    """Rows of example indices (examples or their lengths) filling `row_tokens` each (first-fit-decreasing)."""
    return first_fit_decreasing([length_of(e) for e in examples], row_tokens)
