"""Escape corpus: what model-written code must not be able to do, at both sandbox levels.

Each test asserts the effect a user would notice (a secret printed, a file changed, a
connection accepted, the app killed), not just that some error was raised.
"""

from __future__ import annotations

import os
import signal
import socket
import threading

import pytest

from agent.sandbox import Limits, Sandbox
from tests.support.sandbox_levels import level_params

SECRET = "sk-test-not-for-the-sandbox"


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("outside") / "secret.txt"
    path.write_text(SECRET)
    return path


@pytest.fixture(scope="module", params=level_params())
def box(request, tmp_path_factory):
    saved = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = SECRET
    try:
        with Sandbox(tmp_path_factory.mktemp("work"), limits=Limits(step_seconds=30), level=request.param) as sandbox:
            yield sandbox
    finally:
        os.environ.pop("OPENAI_API_KEY")
        if saved is not None:
            os.environ["OPENAI_API_KEY"] = saved


@pytest.fixture(scope="module", params=level_params())
def tight(request, tmp_path_factory):
    """A sandbox with small limits, for the tests that hit them."""
    limits = Limits(step_seconds=2, memory_mb=768, file_mb=8)
    with Sandbox(tmp_path_factory.mktemp("tight"), limits=limits, level=request.param) as sandbox:
        yield sandbox


def shows_secret(result) -> bool:
    return SECRET in result.output or SECRET in (result.error or "") or SECRET in (result.final_answer or "")


def test_environment_has_no_keys(box):
    result = box.run("import os\nprint(dict(os.environ))\nprint(open('/proc/self/environ').read())")
    assert not shows_secret(result)
    assert "OPENAI_API_KEY" not in result.output


def test_parent_environ_through_proc(box):
    result = box.run(f"print(open('/proc/{os.getpid()}/environ').read())")
    assert result.error is not None
    assert not shows_secret(result)


def test_reading_a_file_outside(box, secret_file):
    result = box.run(f"print(open({str(secret_file)!r}).read())")
    assert result.error is not None and not shows_secret(result)
    listing = box.run(f"import os\nprint(os.listdir({str(secret_file.parent)!r}))")
    assert "secret.txt" not in listing.output


def test_reading_system_secrets(box):
    result = box.run("print(open('/etc/shadow').read())")
    assert result.error is not None and result.output == ""


def test_writing_outside(box, secret_file):
    target = secret_file.parent / "planted.txt"
    result = box.run(f"open({str(target)!r}, 'w').write('x')")
    assert result.error is not None
    assert not target.exists()
    overwrite = box.run(f"open({str(secret_file)!r}, 'a').write('x')")
    assert overwrite.error is not None and secret_file.read_text() == SECRET


def test_c_library_writing_outside(box, secret_file):
    target = secret_file.parent / "from_opencv.png"
    box.run(f"import cv2, numpy as np\ncv2.imwrite({str(target)!r}, np.zeros((2, 2), 'uint8'))")
    assert not target.exists()


def test_symlink_out_of_the_workdir(box, secret_file):
    result = box.run(f"import os\nos.symlink({str(secret_file)!r}, 'link.txt')\nprint(open('link.txt').read())")
    assert not shows_secret(result)


@pytest.mark.parametrize("code", [
    "import subprocess\nsubprocess.run(['touch', 'pwned'])",
    "import os\nos.system('touch pwned')",
    "import os\nos.execv('/usr/bin/touch', ['touch', 'pwned'])",
    "import os\nif os.fork() == 0:\n    open('pwned', 'w').write('child')\n    os._exit(0)",
    "import ctypes\nctypes.CDLL(None).system(b'touch pwned')",
    "import os\nos.posix_spawn('/usr/bin/touch', ['touch', 'pwned'], {})",
])
def test_no_new_processes(box, code):
    result = box.run(code)
    assert result.error is not None or "pwned" not in result.files
    assert not (box.workdir / "pwned").exists()


def test_subclasses_walk_to_popen(box):
    code = (
        "for cls in ().__class__.__base__.__subclasses__():\n"
        "    if cls.__name__ == 'Popen':\n"
        "        cls(['touch', 'pwned']).wait()\n"
    )
    result = box.run(code)
    assert not (box.workdir / "pwned").exists()
    if box.level == "fallback":
        assert "blocked by the sandbox" in result.error


@pytest.mark.parametrize("code", [
    "g = final_answer.__globals__\nprint(g['os'])",
    "g = getattr(final_answer, '__glob' + 'als__')\nprint(g)",
    "print(__builtins__)",
    "gen = (x for x in [1])\nprint(gen.gi_frame.f_back.f_globals)",
    "try:\n    1 / 0\nexcept Exception as e:\n    print(e.__traceback__.tb_frame.f_globals)",
    "import sys\nprint(sys.modules)",
    "import os\nprint(os.sys.modules)",
    "import numpy as np\nprint(np.ctypeslib.ctypes)",
    "import builtins\nbuiltins.__import__('subprocess')",
    "print(type.__subclasses__(object))",
])
def test_introspection_reaches_nothing_secret(box, code):
    """The fallback refuses it outright; under bwrap it runs, but the worker holds nothing worth reaching."""
    result = box.run(code)
    assert not shows_secret(result)
    if box.level == "fallback":
        assert result.error is not None and "blocked by the sandbox" in result.error
        assert result.output == ""


def test_no_network_to_a_server_on_the_host(box):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    accepted: list = []
    thread = threading.Thread(target=lambda: accepted.append(_accept(server)))
    thread.start()
    result = box.run(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')")
    thread.join()
    server.close()
    assert result.error is not None and "connected" not in result.output
    assert accepted == [None]


def _accept(server: socket.socket):
    try:
        return server.accept()
    except socket.timeout:
        return None


def test_cannot_signal_the_app(box):
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    try:
        result = box.run(f"import os, signal\nos.kill({os.getpid()}, signal.SIGUSR1)")
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert result.error is not None
    assert received == []


def test_killing_its_own_parent_only_ends_the_step(box):
    result = box.run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(0.2)")
    if box.level == "fallback":
        assert "blocked by the sandbox" in result.error
    assert box.run("print('still here')").output == "still here\n"


def test_infinite_loop_is_stopped_and_the_next_step_works(tight):
    tight.run("kept = 1")
    result = tight.run("while True:\n    pass")
    assert result.error == ("step exceeded 2 s and was stopped; "
                            "the worker was restarted, so variables from earlier steps are lost")
    assert result.seconds < 5
    after = tight.run("print('fresh', 'kept' in dir())")
    assert after.output == "fresh False\n"


def test_huge_allocation_fails_cleanly(tight):
    result = tight.run("data = bytearray(8 * 1024 ** 3)")
    assert result.error.startswith("MemoryError")
    growing = tight.run("chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 1024 ** 2))")
    assert growing.error is not None
    assert tight.run("print(6 * 7)").output == "42\n"


def test_fork_bomb_goes_nowhere(tight):
    result = tight.run("import os\nwhile True:\n    os.fork()")
    assert result.error is not None and "PermissionError" in result.error
    assert tight.run("print('alive')").output == "alive\n"


def test_file_beyond_the_size_limit(tight):
    result = tight.run("with open('big.bin', 'wb') as f:\n    for _ in range(20):\n        f.write(b'x' * 1024 ** 2)")
    assert result.error is not None and "File too large" in result.error
    assert (tight.workdir / "big.bin").stat().st_size <= 8 * 1024 ** 2
    assert tight.run("print('ok')").output == "ok\n"


def test_stop_from_another_thread(tight):
    timer = threading.Timer(0.3, tight.kill)
    timer.start()
    result = tight.run("import time\ntime.sleep(1.5)")
    timer.join()
    assert result.error.startswith("the step was stopped")
    assert tight.run("print('next')").output == "next\n"


def test_garbage_on_the_protocol_pipe_only_ends_the_step(tight):
    result = tight.run("import os\nfor fd in range(3, 12):\n    try:\n        os.write(fd, b'\\xff' * 8)\n"
                       "    except OSError:\n        pass\nimport time\ntime.sleep(5)")
    assert result.error is not None and "variables from earlier steps are lost" in result.error
    assert result.seconds < 4
    assert tight.run("print('recovered')").output == "recovered\n"


def test_stop_between_steps_does_not_fail_the_next_one(tight):
    tight.run("x = 1")
    tight.kill()
    assert tight.run("print('again')").output == "again\n"


def test_model_code_runs_below_the_apps_priority(box):
    result = box.run("import os\nprint(os.nice(0))")
    assert result.output == f"{os.nice(0) + 10}\n"
