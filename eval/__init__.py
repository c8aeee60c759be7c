"""GTA and GAIA evaluation (DESIGN.md §7). Not built yet: no tab or CLI is offered."""
