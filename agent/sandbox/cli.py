"""`python -m agent exec FILE`: run a code file exactly as an agent step runs, and say how it went."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from agent.sandbox.host import Limits, Sandbox
from core.errors import UserError

logger = logging.getLogger("agent.sandbox")


def exec_command(args: argparse.Namespace) -> int:
    """0 when the code ran; 1 when it raised, was blocked or timed out (the reason on one line of stderr)."""
    from agent.config import Settings

    try:
        code = Path(args.file).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"cannot read {args.file}: {getattr(exc, 'strerror', None) or exc}")
    try:
        attachments = _attachments(args.attach)
    except ValueError as exc:
        return _fail(str(exc))
    settings = Settings()
    workdir = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="mat-exec-"))
    _check_writable(workdir)
    limits = Limits(step_seconds=args.timeout or settings.step_timeout, memory_mb=settings.memory_mb)
    with Sandbox(workdir, attachments, _default_tools(workdir, attachments, settings.profile), limits) as sandbox:
        print(f"sandbox: {sandbox.level} · workdir: {sandbox.workdir}", file=sys.stderr)
        result = sandbox.run(code)
    if result.output:
        print(result.output, end="" if result.output.endswith("\n") else "\n")
    if result.files:
        print(f"files: {', '.join(result.files)}", file=sys.stderr)
    if result.error is not None:
        return _fail(result.error)
    if result.is_final:
        print(f"Final answer: {result.final_answer}")
    return 0


def _check_writable(workdir: Path) -> None:
    """The step writes in its working directory: a folder it cannot write is refused before the sandbox starts."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as exc:
        raise UserError(f"--workdir {workdir}: cannot write there ({exc.strerror or exc}); choose a writable "
                        "folder") from None


def _attachments(paths: list[str]) -> dict[str, Path]:
    """Each file under the name the user wrote; names that climb out ('..') are shown at their absolute path."""
    attachments = {}
    for written in paths:
        real = Path(written).resolve()
        if not real.is_file():
            raise ValueError(f"attachment not found: {written}")
        name = written if not Path(written).is_absolute() and ".." not in Path(written).parts else str(real)
        attachments[name] = real
    return attachments


def _default_tools(workdir: Path, attachments: dict[str, Path], profile: str) -> dict[str, Callable[..., Any]]:
    """The default profile's tools bound to this workdir; none (final_answer only) if agent.tools cannot load."""
    try:
        from agent.tools import bind_tools, profile_tools
        from agent.tools.base import ToolContext
    except ImportError as exc:
        logger.warning("running without tools: agent.tools is not usable (%s)", exc)
        return {}
    return bind_tools(profile_tools(profile), ToolContext(workdir=workdir, attachments=attachments))


def _fail(reason: str) -> int:
    print(" ".join(reason.split()), file=sys.stderr)
    return 1
