"""LoRA training on MM-Traj (DESIGN.md §6): data through the one renderer, packing, the trainer, its CLI and tab."""

import train.schema  # noqa: F401,E402 — registers the package's tables with core.db, once
