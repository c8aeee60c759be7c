"""The loss of an optimizer step as a weighted sum over its assistant tokens, whichever row or process they sit in.

Every labelled token gets a weight fixed by the plan before the step runs, so the step's loss (and gradient) is
the same on one process or many, in one row or several:

- `token`: every assistant token of the step weighs the same, 1 / (assistant tokens of the step);
- `sequence`: every trajectory of the step weighs the same, its tokens sharing 1 / (trajectories of the step).
  MAT's scripts average over each micro-batch of 2 padded trajectories, then over micro-batches and devices, so
  a long trajectory counts as much as a short one; `sequence` keeps that, independent of how rows are packed.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import UserError

NORMALIZATIONS = ("token", "sequence")


def example_weights(label_tokens: Sequence[int], normalization: str) -> list[float]:
    """The weight of each labelled token of each example of one step."""
    if normalization == "token":
        total = max(sum(label_tokens), 1)
        return [1.0 / total] * len(label_tokens)
    if normalization == "sequence":
        return [1.0 / (len(label_tokens) * max(count, 1)) for count in label_tokens]
    raise UserError(f"--loss-normalization must be one of {', '.join(NORMALIZATIONS)}, not {normalization!r}")


def weighted_loss(logits, labels, weights):
    """sum over positions of weight x next-token cross-entropy; `labels` and `weights` are aligned with the
    inputs (B, L), as the model's own loss takes them (shifted here)."""
    import torch.nn.functional as F

    from train.data import IGNORE

    shifted = labels[:, 1:].reshape(-1)
    per_token = F.cross_entropy(logits[:, :-1].float().reshape(shifted.shape[0], -1), shifted,
                                ignore_index=IGNORE, reduction="none")
    return (per_token * weights[:, 1:].reshape(-1)).sum()
