"""Memory in a long-running app: freed memory given back to the system, and collections kept short.

glibc's allocator keeps what a burst of requests freed (many threads, many short-lived strings) for reuse instead
of returning it, so a server's resident memory climbs with each burst although nothing is leaked: under
`bench/app_load.py`'s load, `malloc_trim` gave back 129 of an in-process app's 608 MB. It also gives each of
Gradio's worker threads its own arena, up to eight per core, and each keeps its own free pieces: with Python's
objects, SQLite's memory and the bytes in use all flat over six rounds of that load, the free pieces grew from
15 to 46 MB. Two arenas held them under 12 MB. Where the C library is not glibc (macOS, musl) this does nothing.

Python's full garbage collection walks every tracked object while holding the GIL, so every request waits for
it: 0.15 s in the app as built, over a second in a process that has loaded more (the test suite measured 1.7 s
at 1.6 million objects). What startup built lives as long as the app, so it is frozen out of collection.
"""

from __future__ import annotations

import ctypes
import gc
import threading
import time

from core import defaults

_M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h


def limit_arenas(count: int = defaults.MALLOC_ARENAS) -> bool:
    """Let all threads share `count` allocator arenas; call before threads start (glibc fixes the limit when
    it makes its second arena). False where the C library cannot."""
    try:
        return bool(ctypes.CDLL(None).mallopt(_M_ARENA_MAX, count))
    except (OSError, AttributeError):
        return False


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


def freeze_startup() -> int:
    """Leave every object alive now (modules, the built page) out of later collections; returns how many."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
