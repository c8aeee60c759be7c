"""Commands run with some folders read-only or on a tiny disk, made for real with bubblewrap (a read-only bind
mount, a small tmpfs), which holds even for root, who ignores file permissions; and the one-line check of what
such a failure prints."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.support.sandbox_levels import require_bwrap

ROOT = Path(__file__).resolve().parents[2]
SMALL_DISK = 256 * 1024


def jailed(command: Sequence[str], *, read_only: Sequence[Path] = (), small: Path | None = None,
           size: int = SMALL_DISK, timeout: int = 120) -> subprocess.CompletedProcess:
    """`command` (in the repository root) with `read_only` folders mounted read-only, or a `size`-byte disk at
    `small`."""
    require_bwrap()
    jail = ["bwrap", "--dev-bind", "/", "/"]
    for folder in read_only:
        jail += ["--ro-bind", str(folder), str(folder)]
    if small is not None:
        jail += ["--size", str(size), "--tmpfs", str(small)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([*jail, *command], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def one_line(result: subprocess.CompletedProcess, *words: str) -> str:
    """The command's one line on stderr (exit code 2, no traceback), which names every one of `words`."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: ") and all(word in lines[0] for word in words), lines[0]
    return lines[0]
