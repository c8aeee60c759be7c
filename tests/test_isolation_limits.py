"""Resource and protocol attacks on the sandbox: disk, threads, io_uring, slow tools, forged frames, fallback links.

Each test asserts the effect a user would notice: the disk stays bounded, the app's step
ends on time, later steps report their own output, an outside file stays unread.
"""

from __future__ import annotations

import errno
import os
import shutil
import time

import pytest

from agent.sandbox import Limits, Sandbox
from tests.support.sandbox_levels import level_params

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap is not installed (apt-get install bubblewrap)")


def _disk_used(root) -> int:
    return sum(p.lstat().st_blocks * 512 for p in root.rglob("*"))


@pytest.mark.parametrize("level", level_params())
def test_a_step_cannot_fill_the_disk(tmp_path, level):
    limits = Limits(step_seconds=30, disk_mb=64, file_mb=16)
    code = ("import os\nchunk = b'x' * (1 << 20)\nfor i in range(100):\n"
            "    with open(f'fill_{i}.bin', 'wb') as f:\n        for _ in range(16):\n            f.write(chunk)\n")
    with Sandbox(tmp_path, limits=limits, level=level) as box:
        result = box.run(code)
        assert "over the 64 MB disk quota of a step" in (result.error or "")
        assert _disk_used(tmp_path) < 400 * 2**20  # stopped long before the 1.6 GB the code asks for
        assert box.run("print('next')").output == "next\n"


@pytest.mark.parametrize("level", level_params())
def test_a_quick_step_over_the_quota_is_reported(tmp_path, level):
    limits = Limits(step_seconds=30, disk_mb=8, file_mb=8)
    code = "for i in range(3):\n    open(f'f{i}.bin', 'wb').write(b'x' * (6 << 20))\nprint('wrote')"
    with Sandbox(tmp_path, limits=limits, level=level) as box:
        result = box.run(code)
    assert "over the 8 MB disk quota of a step" in (result.error or "")


THREADS = """
import threading
started, hold = 0, threading.Event()
try:
    for _ in range(1000):
        threading.Thread(target=hold.wait, daemon=True).start()
        started += 1
except RuntimeError as exc:
    print('refused:', exc)
hold.set()
print('started', started)
"""


@needs_bwrap
def test_threads_are_capped(tmp_path):
    with Sandbox(tmp_path, limits=Limits(step_seconds=30), level="bwrap") as box:
        result = box.run(THREADS)
        assert result.error is None, result.error
        started = int(result.output.split("started")[-1])
        assert started < Limits().threads and "refused: can't start new thread" in result.output
        assert box.run("print('still here')").output == "still here\n"


IO_URING = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
fd = libc.syscall(425, 4, params)
print(fd, ctypes.get_errno())
"""


@needs_bwrap
def test_io_uring_is_refused(tmp_path):
    with Sandbox(tmp_path, level="bwrap") as box:
        result = box.run(IO_URING)
    assert result.output.split() == ["-1", str(errno.EPERM)]


@pytest.mark.usefixtures("timed_heap")
@pytest.mark.parametrize("level", level_params())
def test_tool_time_counts_against_the_step(tmp_path, level):
    tools = {"slow": lambda: time.sleep(3) or "late"}
    with Sandbox(tmp_path, tools=tools, limits=Limits(step_seconds=1), level=level) as box:
        started = time.monotonic()
        result = box.run("print(slow())")
        took = time.monotonic() - started
        assert "step exceeded 1 s" in (result.error or "") and took < 2
        assert box.run("print('next')").output == "next\n"


def _stop_soon(box):
    import threading

    threading.Timer(0.5, box.kill).start()


@pytest.mark.usefixtures("timed_heap")
@pytest.mark.parametrize("level", level_params())
def test_stop_ends_a_step_waiting_on_a_tool(tmp_path, level):
    tools = {"slow": lambda: time.sleep(5) or "late"}
    with Sandbox(tmp_path, tools=tools, limits=Limits(step_seconds=30), level=level) as box:
        started = time.monotonic()
        _stop_soon(box)
        result = box.run("print(slow())")
    assert "stopped" in (result.error or "") and time.monotonic() - started < 1.5


FORGE = """
import json, os, struct
def frame(message):
    body = json.dumps(message).encode()
    return struct.pack('>I', len(body)) + body
fake = frame({'op': 'done', 'output': 'FORGED', 'error': None, 'is_final': False, 'final_answer': None})
for fd in range(3, 64):
    try:
        os.write(fd, fake)
    except OSError:
        pass
print('one')
"""


@pytest.mark.parametrize("level", level_params())
def test_forged_frames_are_ignored_and_later_steps_stay_in_sync(tmp_path, level):
    with Sandbox(tmp_path, level=level) as box:
        outputs = [box.run(FORGE).output, box.run("print('two')").output, box.run("print('three')").output]
    assert outputs == ["one\n", "two\n", "three\n"]


STEAL = """
import json, os, struct
def frame(message):
    body = json.dumps(message).encode()
    return struct.pack('>I', len(body)) + body
nonce = None
for fd in range(3, 64):
    try:
        blocking = os.get_blocking(fd)
        os.set_blocking(fd, False)
        try:
            data = os.read(fd, 40)
        finally:
            os.set_blocking(fd, blocking)
        if len(data) == 40 and data[:8].isdigit():
            nonce = data[8:].decode()
    except (OSError, ValueError):
        pass
fake = frame({'op': 'done', 'output': 'FORGED', 'error': None, 'is_final': False, 'final_answer': None, 'nonce': nonce})
for fd in range(3, 64):
    try:
        os.write(fd, fake)
    except OSError:
        pass
print('one')
"""


@pytest.mark.parametrize("level", level_params())
def test_code_that_steals_the_nonce_is_caught_and_later_steps_stay_in_sync(tmp_path, level):
    with Sandbox(tmp_path, level=level) as box:
        box.run(STEAL)
        second, third = box.run("print('two')"), box.run("print('three')")
    # Its own step may report what it forged; the next one says what happened instead of showing step 1's output.
    assert second.output != "one\n"
    assert "step nonce" in (second.error or "") or second.output == "two\n"
    assert third.output == "three\n"


@pytest.fixture
def outside(tmp_path):
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_text("fallback-secret")
    return directory


def test_fallback_hard_link_to_an_outside_file_is_refused(tmp_path, outside):
    work = tmp_path / "work"
    code = (f"import os\nos.link({str(outside / 'secret.txt')!r}, 'copy.txt')\n"
            "print(open('copy.txt').read())\nopen('copy.txt', 'w').write('changed')")
    with Sandbox(work, level="fallback") as box:
        result = box.run(code)
    assert "fallback-secret" not in result.output and "os.link" in (result.error or "")
    assert (outside / "secret.txt").read_text() == "fallback-secret"


def test_fallback_symlink_to_an_outside_file_is_refused(tmp_path, outside):
    with Sandbox(tmp_path / "work", level="fallback") as box:
        result = box.run(f"import os\nos.symlink({str(outside / 'secret.txt')!r}, 'link.txt')")
    assert "a symlink to" in (result.error or "")


def test_fallback_paths_relative_to_a_directory_fd_are_refused(tmp_path, outside):
    """From a subdirectory, '../x' relative to /usr is checked as if relative to the working directory."""
    work = tmp_path / "work"
    relative = os.path.relpath(outside / "secret.txt", "/usr")
    code = (f"import os\nos.mkdir('sub')\nos.chdir('sub')\nfd = os.open('/usr', os.O_RDONLY)\n"
            f"print(os.read(os.open({relative!r}, os.O_RDONLY, dir_fd=fd), 100).decode())")
    with Sandbox(work, level="fallback") as box:
        result = box.run(code)
    assert "fallback-secret" not in result.output and "directory fd" in (result.error or "")


def test_fallback_rename_out_of_the_workdir_is_refused(tmp_path, outside):
    with Sandbox(tmp_path / "work", level="fallback") as box:
        result = box.run(f"import os\nopen('x.txt', 'w').write('x')\nos.rename('x.txt', {str(outside / 'x.txt')!r})")
    assert "os.rename" in (result.error or "") and not (outside / "x.txt").exists()


@pytest.mark.parametrize("level", level_params())
def test_many_empty_files_count_toward_the_quota(tmp_path, level):
    limits = Limits(step_seconds=30, disk_mb=8)
    code = "for i in range(4000):\n    open(f'e{i}', 'w').close()"
    with Sandbox(tmp_path, limits=limits, level=level) as box:
        result = box.run(code)
    assert "over the 8 MB disk quota of a step" in (result.error or "")
