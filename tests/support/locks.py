"""A run's lock held by another process, as a run still working (or still stopping) holds it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Takes the lock as soon as it is free (a killed run's process may take a moment to go), says so, and keeps it
# until its stdin closes.
_HOLDER = """
import sys, time
from core.errors import UserError
from core.files import hold_lock

deadline = time.monotonic() + float(sys.argv[2])
while True:
    try:
        lock = hold_lock(sys.argv[1], "the other process")
        break
    except UserError:
        if time.monotonic() > deadline:
            sys.exit("the killed run's lock was never released")
        time.sleep(0.05)
print("held", flush=True)
sys.stdin.read()
"""


@contextmanager
def held_by_another_process(path: Path, seconds: float = 10.0) -> Iterator[int]:
    """The lock at `path`, held by a helper process for the block (a lock belongs to its process, so this one
    could take it again); yields the helper's pid."""
    helper = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), str(seconds)], cwd=ROOT, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert helper.stdout.readline().strip() == "held", helper.stderr.read()
        yield helper.pid
    finally:
        helper.stdin.close()
        helper.wait(timeout=30)
