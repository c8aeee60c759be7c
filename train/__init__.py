"""LoRA training on MM-Traj (DESIGN.md §6). Not built yet: no tab or CLI is offered."""
