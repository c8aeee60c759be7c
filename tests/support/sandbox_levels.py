"""Both sandbox levels as pytest params.

The bwrap param carries the `bwrap` mark: where bwrap is not installed its tests skip
(fail under CI=true, see tests/support/skips.py); where it is installed but cannot
isolate code, they run and fail, since that is a fault to see rather than a package to add.
"""

from __future__ import annotations

import shutil

import pytest

from tests.support.skips import missing


def level_params() -> list:
    return [pytest.param("bwrap", marks=pytest.mark.bwrap), "fallback"]


def require_bwrap() -> None:
    if shutil.which("bwrap") is None:
        missing("bwrap", "apt-get install bubblewrap")
