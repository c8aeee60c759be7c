"""Both sandbox levels as pytest params.

bwrap is skipped only where it is not installed; where it is installed but cannot isolate
code, its tests run and fail, since that is a fault to see rather than a package to add.
"""

from __future__ import annotations

import shutil

import pytest


def level_params() -> list:
    absent = shutil.which("bwrap") is None
    bwrap = pytest.param("bwrap", marks=pytest.mark.skipif(absent, reason="bwrap is not installed (apt-get install bubblewrap)"))
    return [bwrap, "fallback"]
