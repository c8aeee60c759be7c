"""LoRA training on MM-Traj (DESIGN.md §6): data through the one renderer, packing, the trainer, its CLI and tab."""
