"""A long-running app gives back the memory a burst of requests freed: glibc would otherwise keep it, and the
app's resident memory would climb with every burst although nothing leaks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BURST = """
import os
from core.memory import trim

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

blocks = [bytes(4000) for _ in range(50_000)]  # 200 MB in pieces the C allocator hands out from its heap
kept = blocks[::100]  # a few stay alive between them, as a server's long-lived objects do
del blocks
before = rss_mb()
assert trim()
print(round(before), round(rss_mb()))
"""


def test_memory_a_burst_freed_goes_back_to_the_system():
    done = subprocess.run([sys.executable, "-c", BURST], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    before, after = map(int, done.stdout.split())
    assert before > 150, "the freed burst was not kept: nothing to give back"
    assert after < before / 4, (before, after)


PAUSE = """
import gc, time
from core.memory import freeze_startup

startup = [{"name": str(n), "parts": [n, (n,)]} for n in range(400_000)]  # what loading and building leave alive

def full_collection():
    began = time.perf_counter()
    gc.collect()
    return time.perf_counter() - began

before = min(full_collection() for _ in range(3))
frozen = freeze_startup()
after = max(full_collection() for _ in range(3))
print(frozen, before, after)
"""


def test_what_startup_built_is_left_out_of_collections_that_pause_every_request():
    done = subprocess.run([sys.executable, "-c", PAUSE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    frozen, before, after = done.stdout.split()
    assert int(frozen) >= 800_000  # every dict and list above (tuples of numbers are never tracked)
    assert float(after) < float(before) / 10, (before, after)
