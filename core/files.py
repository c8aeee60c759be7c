"""Files written whole or not at all: an export or a record cut short by a full disk or a kill leaves the
previous file (or nothing), never half of one. And a lock file, so one process at a time works on a run."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from core.errors import UserError


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """A file handle whose content replaces `path` only when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, mode, encoding=None if "b" in mode else encoding) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A fresh folder to fill; it takes `path`'s place (replacing an earlier one) only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part"))
    try:
        yield partial
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            partial.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            partial.rename(path)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def hold_lock(path: str | Path, what: str) -> IO:
    """Take `path`'s lock for as long as the returned file stays open; refused while another process holds it.

    A POSIX lock (`lockf`), not `flock`: it belongs to this process alone, so the kernel drops it the moment the
    process ends, however it ends, and children forked meanwhile (a DataLoader's workers, a sandbox being spawned)
    do not keep it after a `kill -9`. For the same reason, one process taking the same lock twice is not refused.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path, "a+")  # noqa: SIM115 - held open on purpose: closing it releases the lock
    try:
        fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the whole file, from byte 0
    except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: another process holds it
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise UserError(f"{what} is being worked on by another process (pid {holder}); "
                        "wait for it to end, or stop it first") from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock
