"""Every command fails in one line: a refusal, a file it cannot write, a full disk, a port in use.

`run_main(main)` runs a CLI's `main()` and turns what a person can act on into `error: ...` on stderr
with exit code 2, instead of a traceback; a bug still shows its traceback.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable

from core.errors import UserError

_ADVICE = {
    errno.EACCES: "permission denied: choose a folder you can write, or fix its permissions",
    errno.EPERM: "operation not permitted: choose a folder you can write",
    errno.EROFS: "the file system is read-only: choose a folder on a writable disk",
    errno.ENOSPC: "no space left on the disk: free some space, or choose another disk",
    errno.EDQUOT: "the disk quota is exceeded: free some space, or choose another disk",
    errno.ENOENT: "no such file or folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EADDRINUSE: "the port is in use: stop the other server, or choose another port",
}


def describe(exc: OSError) -> str:
    """An OSError as one line naming the path and what to do."""
    advice = _ADVICE.get(exc.errno or 0, exc.strerror or str(exc))
    return f"{exc.filename}: {advice}" if exc.filename else advice


def run_main(main: Callable[[], int | None]) -> int:
    """Run a CLI's main; a refusal or an OS failure becomes one line on stderr and exit code 2."""
    try:
        return main() or 0
    except UserError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
    except OSError as exc:
        print(f"error: {describe(exc)}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 2
