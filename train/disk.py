"""A run's folder on a disk that may be read-only or full: checked before any work, and every failure to write
named by its path, so `python -m train` ends with one line (`core.cli.describe`) and leaves nothing half-written.

torch and safetensors report a full disk in their own exception types, without the path; `writing(path)` turns
those, and an OSError without a file name, into an OSError naming `path`.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_OS_ERROR = re.compile(r"os error (\d+)|No space left on device|Read-only file system")
_BY_TEXT = {"No space left on device": errno.ENOSPC, "Read-only file system": errno.EROFS}


def check_writable(folder: Path) -> None:
    """Refuse a folder this process cannot write (read-only disk, no permission) before anything is computed.

    A folder that does not exist yet is probed where it would be made: at its nearest existing parent."""
    probe_in = folder
    while not probe_in.exists() and probe_in != probe_in.parent:
        probe_in = probe_in.parent
    try:
        handle, name = tempfile.mkstemp(dir=probe_in, prefix=".mat-write-check-")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(folder)) from None
    os.close(handle)
    os.unlink(name)


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Failures to write inside the block as an OSError that names `path` (a full or read-only disk)."""
    try:
        yield
    except OSError as exc:
        if exc.filename:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    except Exception as exc:  # noqa: BLE001 — only a disk failure is translated; anything else goes on as it was
        code = _os_error(str(exc))
        if code is None:
            raise
        raise OSError(code, os.strerror(code), str(path)) from None


def _os_error(text: str) -> int | None:
    found = _OS_ERROR.search(text)
    if found is None:
        return None
    return int(found.group(1)) if found.group(1) else _BY_TEXT[found.group(0)]
