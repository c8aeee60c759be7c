"""Tool paths under attack: a file swapped for a link while the tool opens it, output directories replaced by links.

Model code runs while the tools it called work, so each test races a swapping thread against real
tools (and, under bwrap, a swapping thread inside the sandbox against the app), and asserts what a
user would notice: the secret (an outside file, the app's own environment) never comes back, and
nothing is written outside the working directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from agent.models.base import Chunk, Model
from agent.sandbox import Limits, Sandbox
from agent.tools import bind_tools, profile_tools, registered
from agent.tools.base import ToolContext, ToolError

SECRET_TEXT = "outside-secret-7f3a"
SECRET_COLOR = (13, 200, 77)
PLAIN_COLOR = (255, 255, 255)
TRIES = 300


class ColorModel(Model):
    """A stand-in VLM that answers with the colour of the image it was given (so a test sees what it read)."""

    name = "color"

    def _stream(self, messages, stop, max_new_tokens):
        with Image.open(messages[0].images[0]) as img:
            yield Chunk(str(img.convert("RGB").getpixel((0, 0))))


# Half the time a plain file, half the time a link: each state lasts about 50 microseconds.
SWAP_LOOP = """
import os, sys, time
target, secret, plain = sys.argv[1:4]
with open(plain, 'rb') as f:
    data = f.read()
p, l = target + '.p.tmp', target + '.l.tmp'
def hold():
    until = time.perf_counter() + 0.00005
    while time.perf_counter() < until:
        pass
while True:
    with open(p, 'wb') as f:
        f.write(data)
    os.symlink(secret, l)
    os.replace(p, target)
    hold()
    os.replace(l, target)
    hold()
"""


class Swapper:
    """A separate process swapping `target` between a plain file and a symlink to `secret`, as model code would."""

    def __init__(self, target: Path, plain: bytes, secret: Path) -> None:
        self.target, self.plain, self.secret = target, plain, secret
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Swapper:
        self.target.write_bytes(self.plain)
        source = self.target.with_name("swap-source.bin")
        source.write_bytes(self.plain)
        self.proc = subprocess.Popen([sys.executable, "-c", SWAP_LOOP, str(self.target), str(self.secret), str(source)])
        return self

    def __exit__(self, *exc) -> None:
        self.proc.kill()
        self.proc.wait()


def _png(path: Path, color) -> Path:
    Image.new("RGB", (32, 32), color).save(path)
    return path


@pytest.fixture
def layout(tmp_path):
    workdir, outside = tmp_path / "task", tmp_path / "outside"
    (workdir / ".cache").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET_TEXT)
    _png(outside / "secret.png", SECRET_COLOR)
    ctx = ToolContext(workdir=workdir, vlm=ColorModel())
    tools = bind_tools(list(registered().values()), ctx)
    return ctx, tools, outside


def _race(call, leaked) -> list:
    """Call the tool TRIES times during the swaps; the answers that leaked."""
    leaks = []
    for _ in range(TRIES):
        try:
            answer = call()
        except ToolError:
            continue
        if leaked(answer):
            leaks.append(answer)
            break
    return leaks


def test_inspect_file_as_text_never_reads_through_a_swapped_link(layout):
    ctx, tools, outside = layout
    with Swapper(ctx.workdir / "notes.txt", b"plain notes", outside / "secret.txt"):
        leaks = _race(lambda: tools["inspect_file_as_text"](file_path="notes.txt"), lambda a: SECRET_TEXT in a)
    assert leaks == []


def test_visualizer_never_sees_a_swapped_image(layout):
    ctx, tools, outside = layout
    plain = (ctx.workdir / "p.png")
    _png(plain, PLAIN_COLOR)
    with Swapper(ctx.workdir / "photo.png", plain.read_bytes(), outside / "secret.png"):
        leaks = _race(lambda: tools["visualizer"](question="colour?", image_path="photo.png"),
                      lambda a: a == str(SECRET_COLOR))
    assert leaks == []


def test_image_tools_never_copy_a_swapped_image_into_the_task(layout):
    """DrawBox stands for every tool built on open_image (ocr, facedetection, objectlocation, segmentation, image_edit)."""
    ctx, tools, outside = layout
    plain = _png(ctx.workdir / "p.png", PLAIN_COLOR)

    def copied_secret(shown: str) -> bool:
        with Image.open(ctx.workdir / shown) as img:
            return img.convert("RGB").getpixel((31, 31)) == SECRET_COLOR

    with Swapper(ctx.workdir / "photo.png", plain.read_bytes(), outside / "secret.png"):
        leaks = _race(lambda: tools["DrawBox"](image="photo.png", bbox="(0, 0, 4, 4)"), copied_secret)
    assert leaks == []


def test_a_link_is_refused_with_a_clear_message(layout):
    ctx, tools, outside = layout
    (ctx.workdir / "link.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(ToolError, match="access to 'link.txt' is not allowed: a symbolic link"):
        tools["inspect_file_as_text"](file_path="link.txt")


def test_a_fifo_does_not_hang_the_app(layout):
    ctx, tools, _ = layout
    os.mkfifo(ctx.workdir / "pipe.txt")
    outcome: list = []
    reader = threading.Thread(target=lambda: outcome.append(_refusal(tools["inspect_file_as_text"], "pipe.txt")),
                              daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # unblock the stuck reader so the test process can end
        with open(ctx.workdir / "pipe.txt", "w"):
            pass
    assert outcome and "not a regular file" in outcome[0]


def _refusal(tool, path: str) -> str:
    try:
        return f"answered: {tool(file_path=path)}"
    except ToolError as exc:
        return str(exc)


def test_cache_replaced_by_a_link_keeps_tool_output_inside(layout):
    ctx, tools, outside = layout
    _png(ctx.workdir / "photo.png", PLAIN_COLOR)
    shutil.rmtree(ctx.workdir / ".cache")
    (ctx.workdir / ".cache").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ToolError, match="cannot write '.cache/box_.*the tool's output stays inside"):
        tools["DrawBox"](image="photo.png", bbox="(0, 0, 4, 4)")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.png", "secret.txt"]
    assert ctx.produced == []


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap is not installed (apt-get install bubblewrap)")
def test_a_new_sandbox_lays_out_attachments_without_following_links(tmp_path):
    """A nested sandbox (Solver, Plot) starts in a working directory model code already shaped."""
    workdir, outside = tmp_path / "task", tmp_path / "outside"
    workdir.mkdir()
    outside.mkdir()
    (workdir / "attachments").symlink_to(outside, target_is_directory=True)
    upload = tmp_path / "report.txt"
    upload.write_text("report")
    with Sandbox(workdir, {"attachments/report.txt": upload}, level="bwrap") as sandbox:
        assert list(outside.iterdir()) == []
        sandbox.run("print(1)")
    assert list(outside.iterdir()) == []


SWAP_IN_THE_SANDBOX = """
import os, threading
import time
done = threading.Event()
def hold():
    until = time.perf_counter() + 0.00005
    while time.perf_counter() < until:
        pass
def swap():
    while not done.is_set():
        with open('p.tmp', 'w') as f:
            f.write('plain notes')
        os.symlink('/proc/self/environ', 'l.tmp')
        os.replace('p.tmp', 'notes.txt')
        hold()
        os.replace('l.tmp', 'notes.txt')
        hold()
with open('notes.txt', 'w') as f:
    f.write('plain notes')
thread = threading.Thread(target=swap)
thread.start()
for _ in range(200):
    try:
        text = inspect_file_as_text(file_path='notes.txt')
    except Exception:
        continue
    if 'plain notes' not in text:
        print(text[:4000])
        break
done.set()
thread.join()
"""


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap is not installed (apt-get install bubblewrap)")
def test_sandbox_code_racing_a_tool_never_reads_the_apps_environment(tmp_path):
    with open("/proc/self/environ", "rb") as environ:
        app_only = [e.decode(errors="replace") for e in environ.read().split(b"\0") if b"=" in e
                    and e.split(b"=")[0] not in (b"PATH", b"HOME", b"LANG", b"TMPDIR")]
    assert app_only, "the test process has no environment of its own to look for"
    ctx = ToolContext(workdir=tmp_path)
    with Sandbox(tmp_path, {}, bind_tools(profile_tools("mat"), ctx), Limits(step_seconds=60), level="bwrap") as box:
        result = box.run(SWAP_IN_THE_SANDBOX)
    assert result.error is None, result.error
    assert not any(entry in result.output for entry in app_only)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap is not installed (apt-get install bubblewrap)")
def test_a_link_is_not_offered_as_a_file_the_step_made(tmp_path):
    """The page shows a step's files from the host: a link to the app's environment must not be one of them."""
    with Sandbox(tmp_path, level="bwrap") as box:
        result = box.run("import os\nos.symlink('/proc/self/environ', 'env.png')\nopen('real.png', 'wb').write(b'x')")
    assert result.files == ["real.png"]


@pytest.mark.parametrize("openat2", [True, False], ids=["openat2", "component-walk"])
def test_both_ways_of_opening_refuse_links_anywhere_in_the_path(tmp_path, monkeypatch, openat2):
    from agent.sandbox import beneath

    if openat2 and not beneath.openat2_works():
        pytest.skip("this kernel has no openat2; the component walk is what runs here")
    monkeypatch.setattr(beneath, "openat2_works", lambda: openat2)
    workdir, outside = tmp_path / "task", tmp_path / "outside"
    (workdir / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET_TEXT)
    (workdir / "sub" / "notes.txt").write_text("inside")
    (workdir / "dirlink").symlink_to(outside, target_is_directory=True)
    (workdir / "sub" / "filelink.txt").symlink_to(outside / "secret.txt")
    ctx = ToolContext(workdir=workdir)
    assert ctx.read_bytes("sub/notes.txt") == b"inside"
    for path in ("dirlink/secret.txt", "sub/filelink.txt"):
        with pytest.raises(ToolError, match="not allowed: a symbolic link"):
            ctx.read_bytes(path)
    (workdir / ".cache").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ToolError, match="cannot write"):
        ctx.write_output("x", ".txt", lambda f: f.write(b"x"))
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
