"""Each step's rows with their pixels, built as training reaches them, in DataLoader worker processes.

The plan (`train.trainer.plan_steps`) fixes every step's rows up front from lengths alone; this process trains
rows `rank, rank + world, ...` of each step (each row once per epoch over all processes). A worker reads a row's
token ids from the memory-mapped cache, reads and decodes its images and runs the image processor (the pixels
serving computes); only the rows of the next few steps exist at once, so memory does not grow with the data set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from train.cache import TokenCache
from train.data import DataError, Example, add_pixels


@dataclass
class Item:
    """One row of one step for this process: example indices, each example's token weight, and whether the row
    only fills the last step (weights 0, not counted)."""

    indices: list[int]
    weights: list[float]
    filler: bool = False


class Rows:
    """A map-style dataset over this process's rows, in training order (torch's DataLoader reads it)."""

    def __init__(self, cache: TokenCache, reader, processor, max_pixels: int, items: Sequence[Item]) -> None:
        self.cache, self.reader, self.processor = cache, reader, processor
        self.max_pixels, self.items = max_pixels, list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int) -> tuple[Item, list[Example]]:
        item = self.items[position]
        return item, [self.example(index, weight) for index, weight in zip(item.indices, item.weights, strict=True)]

    def example(self, index: int, weight: float) -> Example:
        entry = self.cache.index[index]
        example = Example(id=entry["id"], weight=weight, n_images=len(entry["images"]), **self.cache.tokens(index))
        found = [self.reader.read(name) for name in entry["images"]]
        if any(data is None for data in found):
            raise DataError(f"record {entry['id']!r}: an image is no longer readable; the data changed during the run")
        add_pixels(example, self.processor, found, self.max_pixels)
        return example


def loader(rows: Rows, workers: int):
    """Rows in order, `workers` processes ahead of training (0: built in this process). The loader seeds its
    workers from its own generator, so the training RNG (dropout) is the same whether a run resumed or not."""
    import torch
    from torch.utils.data import DataLoader

    return DataLoader(rows, batch_size=None, shuffle=False, num_workers=workers, collate_fn=_as_is,
                      worker_init_fn=_worker_start if workers else None, prefetch_factor=2 if workers else None,
                      generator=torch.Generator().manual_seed(0))


def _as_is(item: Any) -> Any:
    return item


def _worker_start(worker: int) -> None:
    """Each worker opens its own image archive (a zip handle must not be shared) and uses one thread."""
    import torch
    from torch.utils.data import get_worker_info

    from review.formats import ImageSource

    torch.set_num_threads(1)
    rows = get_worker_info().dataset
    if isinstance(rows.reader, ImageSource):
        rows.reader = ImageSource(rows.reader.location)
