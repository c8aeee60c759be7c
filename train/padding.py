"""Padded batches: one trajectory per row, rows of similar length together, a real attention mask.

For models whose positions we cannot restart per trajectory inside a row (MiniCPM-V: a Qwen3.5 language model
with linear-attention layers, whose recurrent state would flow from one packed trajectory into the next). Rows are
padded on the right, so every real token sees exactly the tokens it sees alone (causal attention and the
linear-attention recurrence only look back); the mask keeps padding out of the loss and the attention.
Sorting by length before grouping keeps the padding small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from train.data import IGNORE, Example
from train.packing import Batch, length_of, token_weights


def plan_batches(examples: Sequence[Example] | Sequence[int], token_budget: int) -> list[list[int]]:
    """Indices (of examples or their lengths) grouped by length: a group grows while rows x its longest row stays
    within `token_budget`. A single example longer than the budget gets a group of its own.
    """
    lengths = [length_of(e) for e in examples]
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    groups: list[list[int]] = []
    current: list[int] = []
    for index in order:  # ascending, so the newcomer is the group's longest row
        if current and (len(current) + 1) * lengths[index] > token_budget:
            groups.append(current)
            current = []
        current.append(index)
    return groups + ([current] if current else [])


def pad(examples: Sequence[Example], *, pad_id: int, pad_to_multiple: int = 1, with_types: bool = False) -> Batch:
    """A (rows, length) batch, padded on the right, with an attention mask; the images of every row are
    concatenated in row order, as the model scatters them over its image tokens in that order.

    `with_types`: pass `mm_token_type_ids` (MiniCPM-V 4.7 places image tokens on a canvas with them).
    """
    import torch

    tokens = sum(len(e) for e in examples)
    longest = max(len(e) for e in examples)
    length = longest + (-longest % pad_to_multiple)
    rows = len(examples)
    input_ids = torch.full((rows, length), pad_id, dtype=torch.long)
    labels = torch.full((rows, length), IGNORE, dtype=torch.long)
    mask = torch.zeros((rows, length), dtype=torch.long)
    types = torch.zeros((rows, length), dtype=torch.long)
    for row, example in enumerate(examples):
        size = len(example)
        input_ids[row, :size] = example.input_ids
        labels[row, :size] = example.labels
        mask[row, :size] = 1
        types[row, :size] = example.mm_token_type_ids
    inputs: dict[str, Any] = {"input_ids": input_ids, "labels": labels, "attention_mask": mask}
    if with_types:
        inputs["mm_token_type_ids"] = types
    with_images = [e for e in examples if e.pixel_values is not None]
    if with_images:  # NaViT-packed patches (1, C, P, N): every tile of every image along the last axis
        inputs["pixel_values"] = torch.cat([e.pixel_values for e in with_images], dim=-1)
        inputs["target_sizes"] = torch.cat([e.target_sizes for e in with_images])
    return Batch(
        inputs=inputs,
        ids=[e.id for e in examples],
        tokens=tokens,
        padding=rows * length - tokens,
        images=sum(e.n_images for e in examples),
        label_tokens=int(sum((e.labels != IGNORE).sum() for e in examples)),
        weights=torch.stack([token_weights([e], row) for e, row in zip(examples, labels, strict=True)]),
    )


def padding_fraction(examples: Sequence[Example] | Sequence[int], groups: Sequence[Sequence[int]]) -> float:
    """Share of padded positions over all groups (before any rounding to a multiple)."""
    lengths = [length_of(e) for e in examples]
    real = sum(lengths[i] for group in groups for i in group)
    total = sum(len(group) * max(lengths[i] for i in group) for group in groups)
    return 1 - real / total if total else 0.0
