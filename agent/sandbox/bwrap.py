"""Which isolation this machine offers, and the bwrap command line for a worker.

Under bwrap the worker sees: /usr and the Python install read-only, a few /etc files
the C library and fonts need, a private /proc and /dev, an empty tmpfs /tmp that is
also its $HOME, its working directory read-write, and each attachment read-only at
the name the task uses. No network (only its own loopback), no other processes, no
repository, no data directory, no keys. It runs as uid 65534 without capabilities,
cannot create user namespaces, and dies with the host.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger("agent.sandbox")

WORKER_DIR = Path(__file__).resolve().parent
WORKER_FILES = ("worker.py", "protocol.py", "seccomp.py")
MOUNTED_WORKER_DIR = "/opt/mat-sandbox"
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "fonts", "mime.types", "alternatives")
LEVELS = ("bwrap", "fallback")


def python_roots() -> list[str]:
    """Directories the interpreter and its packages live in (the venv and the base install)."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             str(Path(os.path.realpath(sys.executable)).parent.parent)}
    return sorted(r for r in roots if not r.startswith("/usr/") and r != "/usr")


def bwrap_command(workdir: Path, mounts: dict[str, Path], env: dict[str, str], tmp_mb: int,
                  command: list[str] | None = None) -> list[str]:
    """The argv that runs the worker (or `command`) under bwrap; `mounts` maps in-sandbox paths to real files."""
    # The tmpfs goes first: binds made after it stay visible even where they lie under /tmp
    # (a checkout, a venv or a working directory in /tmp).
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--unshare-user",
            "--uid", "65534", "--gid", "65534", "--disable-userns", "--hostname", "sandbox",
            "--size", str(tmp_mb * 1024 * 1024), "--tmpfs", "/tmp", "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for name in ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for root in python_roots():
        args += ["--ro-bind", root, root]
    for name in WORKER_FILES:
        args += ["--ro-bind", str(WORKER_DIR / name), f"{MOUNTED_WORKER_DIR}/{name}"]
    args += ["--proc", "/proc", "--dev", "/dev", "--bind", str(workdir), str(workdir)]
    for target, real in mounts.items():
        args += ["--ro-bind", str(real), target]
    args += ["--chdir", str(workdir), "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args + (command or [sys.executable, "-s", "-E", "-B", f"{MOUNTED_WORKER_DIR}/worker.py"])


def fallback_command() -> list[str]:
    return [sys.executable, "-s", "-E", "-B", str(WORKER_DIR / "worker.py")]


def sandbox_level() -> str:
    """'bwrap' where it works here, else 'fallback'; MAT_SANDBOX=fallback forces the fallback."""
    return _level(os.environ.get("MAT_SANDBOX", "").strip().lower())


@functools.lru_cache(maxsize=None)
def _level(requested: str) -> str:
    if requested == "fallback":
        level = "fallback"
    else:
        problem = bwrap_problem()
        level = "fallback" if problem else "bwrap"
        if problem:
            logger.warning("bwrap cannot isolate code here (%s); using the weaker fallback sandbox", problem)
    logger.info("sandbox level: %s", level)
    return level


def sandbox_notice() -> str:
    """One line for the terminal and the Chat tab: the level in use and, under the fallback, how to get bwrap."""
    level = sandbox_level()
    if level == "bwrap":
        return "`bwrap` — model-written code runs isolated from keys, network and your files."
    weaker = ("model-written code runs under the weaker fallback "
              "(keys and network still withheld, but your files only guarded in-process, not isolated)")
    if os.environ.get("MAT_SANDBOX", "").strip().lower() == "fallback":
        return f"`fallback` (MAT_SANDBOX=fallback) — {weaker}. Unset MAT_SANDBOX for the isolated bwrap sandbox."
    if shutil.which("bwrap") is None:
        return (f"`fallback` — bubblewrap is not installed, so {weaker}. "
                "For the isolated sandbox: `apt-get install bubblewrap`, then restart.")
    return f"`fallback` — bwrap is installed but cannot isolate code here ({bwrap_problem()}), so {weaker}."


@functools.lru_cache(maxsize=1)
def bwrap_problem() -> str | None:
    """None when a worker-shaped command runs under bwrap, else why not (checked once)."""
    if shutil.which("bwrap") is None:
        return "bwrap is not installed (Debian/Ubuntu package 'bubblewrap')"
    with tempfile.TemporaryDirectory(prefix="mat-bwrap-probe-") as probe:
        argv = bwrap_command(Path(probe), {}, {"PATH": "/usr/bin:/bin"}, 16,
                             [sys.executable, "-s", "-E", "-c", "import json, resource, ctypes"])
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"probe failed: {exc}"
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    return None
