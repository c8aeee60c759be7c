"""Opening files under a directory in one step, never following a link: the app's side of every tool path.

Model code runs concurrently with the tools it calls, so "check the path, then open it by name"
loses to a thread that swaps the file for a symlink in between (to the app's /proc/self/environ,
say). Here the check *is* the open: Linux's openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
RESOLVE_NO_MAGICLINKS resolves the whole path relative to a directory fd and refuses any link or
escape; where openat2 is missing (old kernels, some seccomp profiles) each component is opened
with O_NOFOLLOW relative to the previous one's fd, which gives the same guarantee. Callers then
use the fd (or its bytes), never the name again. Standard library only (the sandbox host uses it too).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import stat
from pathlib import Path

_SYS_OPENAT2 = 437  # the same number on x86_64 and aarch64
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x02, 0x04, 0x08
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class PathRefused(OSError):
    """The path leaves the directory, goes through a link, or names something that is not a plain file."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


@functools.lru_cache(maxsize=1)
def _syscall():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc.syscall


def _openat2(dirfd: int, path: str, flags: int, mode: int) -> int:
    mode = mode if flags & os.O_CREAT else 0  # openat2 refuses a mode without O_CREAT
    how = _OpenHow(flags, mode, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
    fd = _syscall()(ctypes.c_long(_SYS_OPENAT2), ctypes.c_long(dirfd), ctypes.c_char_p(os.fsencode(path)),
                    ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


@functools.lru_cache(maxsize=1)
def openat2_works() -> bool:
    """Whether this kernel (and any seccomp filter around us) allows openat2."""
    root = os.open("/", _DIR_FLAGS)
    try:
        os.close(_openat2(root, ".", _DIR_FLAGS, 0))
        return True
    except OSError:
        return False
    finally:
        os.close(root)


def _walk(dirfd: int, parts: list[str], flags: int, mode: int) -> int:
    """The fallback: one component at a time, each opened with O_NOFOLLOW relative to the last."""
    opened: list[int] = []
    try:
        current = dirfd
        for part in parts[:-1]:
            current = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=current)
            opened.append(current)
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=current)
    finally:
        for fd in opened:
            os.close(fd)


def parts_of(path: str) -> list[str]:
    """The components of a relative path, '.' dropped; refuses absolute paths and any '..'."""
    if not path or os.path.isabs(path):
        raise PathRefused(errno.EXDEV, "not a path inside the directory", path)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise PathRefused(errno.EXDEV, "not a path inside the directory", path)
    return parts


def open_beneath(root: str | Path, path: str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """An fd for `path` (relative) under `root`, opened without following any link or leaving `root`.

    PathRefused when a component is a link or climbs out; other OSErrors (ENOENT, ...) pass through.
    """
    parts = parts_of(path)
    dirfd = os.open(root, _DIR_FLAGS)
    try:
        if openat2_works():
            return _openat2(dirfd, "/".join(parts), flags | os.O_CLOEXEC, mode)
        return _walk(dirfd, parts, flags, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EXDEV, errno.ENOTDIR):  # ENOTDIR: O_DIRECTORY|O_NOFOLLOW on a link
            raise PathRefused(exc.errno, "a symbolic link or a path out of the directory", path) from None
        raise
    finally:
        os.close(dirfd)


def open_regular(root: str | Path, path: str) -> int:
    """A read-only fd of a plain file under `root` with a single name (no FIFO, device or hard-linked file).

    O_NONBLOCK keeps a FIFO planted by model code from hanging the app; a second hard link could
    be an outside file linked in, so only singly-linked files are read.
    """
    fd = open_beneath(root, path, os.O_RDONLY | os.O_NONBLOCK)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(info.st_mode) else "a file with several hard links"
        raise PathRefused(errno.EPERM, what, path)
    os.set_blocking(fd, True)
    return fd


def make_dirs(root: str | Path, path: str) -> int:
    """`mkdir -p path` under `root` without following links; returns an fd of the last directory."""
    current = os.open(root, _DIR_FLAGS)
    try:
        for part in parts_of(path):
            try:
                os.mkdir(part, 0o755, dir_fd=current)
            except FileExistsError:
                pass
            try:
                child = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=current)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise PathRefused(exc.errno, "a symbolic link or a file where a directory should be", path) from None
                raise
            os.close(current)
            current = child
    except BaseException:
        os.close(current)
        raise
    return current


def create_new(root: str | Path, path: str, mode: int = 0o644) -> int:
    """A write-only fd of a file that did not exist, under `root`, parents made; never through a link."""
    *parents, name = parts_of(path)
    dirfd = make_dirs(root, "/".join(parents)) if parents else os.open(root, _DIR_FLAGS)
    try:
        return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dirfd)
    finally:
        os.close(dirfd)


def unlink_if_empty(root: str | Path, path: str) -> None:
    """Remove `path` under `root` if it is still an empty plain file; links and directories are left alone."""
    *parents, name = parts_of(path)
    try:
        dirfd = open_beneath(root, "/".join(parents), _DIR_FLAGS) if parents else os.open(root, _DIR_FLAGS)
    except OSError:
        return
    try:
        info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        if stat.S_ISREG(info.st_mode) and info.st_size == 0:
            os.unlink(name, dir_fd=dirfd)
    except OSError:
        pass
    finally:
        os.close(dirfd)
