"""Synthesis of MM-Traj tasks and trajectories (DESIGN.md §5). Not built yet: no tab or CLI is offered."""
