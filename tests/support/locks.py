"""Taking a run's lock from a test, as another process working on the run would hold it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO

from core.errors import UserError
from core.files import hold_lock


def held_once_free(path: Path, seconds: float = 10.0) -> IO:
    """The run's lock, once the killed run's last process has let go of it (a sandbox child it was
    spawning at the kill holds it until its exec)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return hold_lock(path, "the other process")
        except UserError:
            assert time.monotonic() < deadline, "the killed run's lock was never released"
            time.sleep(0.05)
