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


ARENAS = """
import ctypes, os, sys, tempfile, threading
from core.memory import limit_arenas

if sys.argv[1] == "limited":
    assert limit_arenas(2)
libc = ctypes.CDLL(None)
libc.malloc.restype = libc.fopen.restype = ctypes.c_void_p
libc.free.argtypes = libc.fclose.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
start = threading.Barrier(8)

def work():
    start.wait()  # all eight allocate at once, so each would want an arena of its own
    for _ in range(200):
        pieces = [libc.malloc(2000) for _ in range(500)]
        for piece in pieces:
            libc.free(piece)

threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
report = tempfile.NamedTemporaryFile(suffix=".xml", delete=False).name
stream = libc.fopen(report.encode(), b"w")
libc.malloc_info(0, stream)
libc.fclose(stream)
print(open(report).read().count("<heap nr="))
os.remove(report)
"""


def test_the_apps_threads_share_two_allocator_arenas():
    counts = {}
    for mode in ("default", "limited"):
        done = subprocess.run([sys.executable, "-c", ARENAS, mode], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        counts[mode] = int(done.stdout)
    assert counts["limited"] <= 2 < counts["default"], counts
