"""Both sandbox levels as pytest params; bwrap is skipped (with the reason) where it cannot run."""

from __future__ import annotations

import pytest

from agent.sandbox.bwrap import bwrap_problem


def level_params() -> list:
    problem = bwrap_problem()
    bwrap = pytest.param("bwrap", marks=pytest.mark.skipif(problem is not None, reason=f"bwrap unusable: {problem}"))
    return [bwrap, "fallback"]
