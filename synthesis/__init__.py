"""Synthesis of MM-Traj tasks and trajectories (DESIGN.md §5): seven resumable stages that write into the store.

queries -> describe -> files -> check -> solve -> judge -> replay; see `pipeline.py` for how they run together,
`llm.py` for the pay-once request store, `__main__.py` for the CLI and `ui.py` for the Synthesize tab (`launch.py`
starts its jobs, `progress.py` says where a run stands).
"""

import synthesis.schema  # noqa: F401,E402 — registers the package's tables with core.db, once
