"""Giving freed memory back to the system in a long-running app.

glibc's allocator keeps what a burst of requests freed (many threads, many short-lived strings) for reuse instead
of returning it, so a server's resident memory climbs with each burst although nothing is leaked: under
`bench/app_load.py`'s load, `malloc_trim` gave back 129 of an in-process app's 608 MB. Where the C library has no
`malloc_trim` (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import threading
import time

from core import defaults


def trim() -> bool:
    """Return freed heap memory to the system now; False where the C library cannot."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def trim_every(seconds: float = defaults.MEMORY_TRIM_SECONDS) -> threading.Thread:
    """Trim on a daemon thread every `seconds`, for the life of the process."""

    def loop() -> None:
        while trim():
            time.sleep(seconds)

    thread = threading.Thread(target=loop, name="malloc-trim", daemon=True)
    thread.start()
    return thread
