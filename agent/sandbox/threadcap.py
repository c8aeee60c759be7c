"""A cap on the threads a worker may start when the app runs as root.

The worker sets RLIMIT_NPROC on itself, which the kernel counts per user inside bwrap's user
namespace, so it caps exactly the sandbox's threads, except when that user maps to root
outside: the kernel exempts root from the limit. There (a container running as root) the host
puts the worker into a pids cgroup of its own whose `pids.max` bounds its tasks, threads included.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import uuid
from pathlib import Path

logger = logging.getLogger("agent.sandbox")

REMOVE_TRIES = 20
PREFIX = "mat-sandbox-"
STALE_SECONDS = 60
PIDS_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))  # cgroup v1, then v2 with pids enabled


@functools.lru_cache(maxsize=1)
def _warn_uncapped() -> None:
    logger.warning("running as root without a writable pids cgroup: the sandbox's threads are not capped")


class PidsCgroup:
    """A fresh pids cgroup; `wrap` starts a command inside it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def create(cls, max_tasks: int) -> PidsCgroup | None:
        """None where not root or no pids controller is writable here (RLIMIT_NPROC is enough then)."""
        if os.geteuid() != 0:
            return None
        for root in PIDS_ROOTS:
            if not (root / "pids.max").exists() and not (root / "cgroup.procs").exists():
                continue
            _sweep(root)
            directory = root / f"{PREFIX}{uuid.uuid4().hex[:12]}"
            try:
                directory.mkdir()
                (directory / "pids.max").write_text(str(max_tasks))
                if (directory / "cpu.weight").exists():  # cgroup v2 shares CPU by group: keep the app's share
                    (directory / "cpu.weight").write_text("10")
                return cls(directory)
            except OSError as exc:
                logger.debug("no pids cgroup under %s: %s", root, exc)
                try:
                    directory.rmdir()
                except OSError:
                    pass
        _warn_uncapped()
        return None

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` started from inside the cgroup: a shell joins it, then becomes `argv`.

        Joining from Popen's preexec_fn instead would make Python fork() the whole app rather than
        vfork(): for a large app with many threads that cost more CPU than the sandbox's own work.
        """
        return ["/bin/sh", "-c", 'echo 0 > "$1" && shift && exec "$@"', "sh", str(self.directory / "cgroup.procs"),
                *argv]

    def remove(self) -> None:
        """Remove the cgroup once its processes are gone (bwrap's inner ones die a moment after the outer one).

        One left behind (the app exited first) is swept by the next `create` once it is old and empty.
        """
        for _ in range(REMOVE_TRIES):
            if _rmdir(self.directory):
                return
            time.sleep(0.01)
        threading.Thread(target=self._rmdir_soon, name="pids-cgroup-cleanup", daemon=True).start()

    def _rmdir_soon(self) -> None:
        for _ in range(REMOVE_TRIES):
            time.sleep(0.1)
            if _rmdir(self.directory):
                return
        logger.warning("could not remove the pids cgroup %s", self.directory)


def _rmdir(directory: Path) -> bool:
    """True once `directory` is gone; a cgroup with tasks in it cannot be removed."""
    try:
        directory.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _sweep(root: Path) -> None:
    """Remove the empty cgroups of sandboxes that ended without cleaning up (old enough not to be starting now)."""
    for stale in root.glob(f"{PREFIX}*"):
        try:
            if time.time() - stale.stat().st_mtime > STALE_SECONDS:
                _rmdir(stale)
        except OSError:
            pass
