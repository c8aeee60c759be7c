"""The host side of the sandbox: one worker process per task, steps sent over a pipe.

The worker keeps the task's variables between steps. A step that runs past its time,
or is stopped, kills the worker; the next step starts a fresh one (variables lost, and
the error says so). Tool calls arrive from the worker as frames and run here, in the
app's process, where their arguments are checked; their time does not count toward
the step's limit.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from agent.sandbox import protocol
from agent.sandbox.bwrap import LEVELS, bwrap_command, fallback_command, python_roots, sandbox_level

logger = logging.getLogger("agent.sandbox")

START_SECONDS = 60.0
SPIN_SECONDS = 0.0002  # how long the host polls for a step's answer before sleeping (see protocol.Reader)
# A worker's lifetime CPU budget (RLIMIT_CPU): bounds threads left spinning between steps,
# which the per-step wall clock does not see. Generous: a task is many steps.
CPU_STEPS, CPU_SECONDS_MIN = 20, 600
LOST = "the worker was restarted, so variables from earlier steps are lost"


@dataclass
class Limits:
    step_seconds: float = 60.0
    memory_mb: int = 4096
    file_mb: int = 256
    output_chars: int = 20_000


@dataclass
class ExecResult:
    output: str
    error: str | None = None
    is_final: bool = False
    final_answer: str | None = None
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0


class StepFailed(Exception):
    """The step ended without an answer from the worker; the message is the step's error."""


def _is_tool_error(exc: Exception) -> bool:
    """isinstance(exc, agent.tools.base.ToolError) without importing agent.tools (which loads every tool)."""
    base = sys.modules.get("agent.tools.base")
    return base is not None and isinstance(exc, base.ToolError)


class Sandbox:
    """Runs model-written code, one step at a time, in a worker isolated at `level`.

    `level` may force "bwrap" or "fallback"; by default MAT_SANDBOX or the strongest
    level that works here (see bwrap.py and guard.py for what each guarantees).
    """

    def __init__(self, workdir: Path, attachments: dict[str, Path] | None = None,
                 tools: dict[str, Callable[..., Any]] | None = None, limits: Limits | None = None,
                 *, level: str | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        (self.workdir / ".cache").mkdir(parents=True, exist_ok=True)  # where MM-Traj-style code saves files
        self.attachments = {name: Path(real).resolve() for name, real in (attachments or {}).items()}
        self.tools = dict(tools or {})
        self.limits = limits or Limits()
        self.level = level or sandbox_level()
        if self.level not in LEVELS:
            raise ValueError(f"unknown sandbox level '{self.level}': use one of {', '.join(LEVELS)}")
        self._private = Path(tempfile.mkdtemp(prefix="mat-sandbox-"))
        self._placeholders: list[Path] = []
        self._mounts = self._lay_out_attachments()
        self._seen = self._snapshot()  # the working directory as the last step left it
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._reader: protocol.Reader | None = None
        self._ready = False
        self._stopped = False
        self._closed = False
        logger.info("sandbox level %s for %s", self.level, self.workdir)
        self._start()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, code: str) -> ExecResult:
        """One step; variables persist between calls unless a step was stopped."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this sandbox is closed")
            started = time.perf_counter()
            if self._stopped:
                self._discard()  # stopped between steps: this step starts afresh
            self._stopped = False
            try:
                if self._proc is None:
                    self._start()
                reply = self._step(code)
                result = ExecResult(output=reply.get("output") or "", error=reply.get("error"),
                                    is_final=bool(reply.get("is_final")), final_answer=reply.get("final_answer"))
            except StepFailed as failed:
                self._discard()
                result = ExecResult(output="", error=str(failed))
            result.files = self._changed()
            result.seconds = time.perf_counter() - started
            return result

    def kill(self) -> None:
        """Stop the running step now (any thread); the next step gets a fresh worker."""
        self._stopped = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """End the worker and remove what the sandbox itself put into the working directory."""
        self.kill()
        with self._lock:
            self._closed = True
            self._discard()
        for placeholder in self._placeholders:
            if placeholder.is_file() and placeholder.stat().st_size == 0:
                placeholder.unlink()
        self._placeholders.clear()
        shutil.rmtree(self._private, ignore_errors=True)

    def _start(self) -> None:
        home = self._private / "home"
        home.mkdir(exist_ok=True)
        in_sandbox_tmp = "/tmp" if self.level == "bwrap" else str(home)
        threads = str(min(4, os.cpu_count() or 1))
        env = {"PATH": "/usr/bin:/bin", "HOME": in_sandbox_tmp, "TMPDIR": in_sandbox_tmp, "LANG": "C.UTF-8",
               "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{in_sandbox_tmp}/.matplotlib", "OMP_NUM_THREADS": threads,
               "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        if self.level == "bwrap":
            tmp_mb = max(64, self.limits.file_mb)
            argv = bwrap_command(self.workdir, self._mounts, env, tmp_mb)
        else:
            argv = fallback_command()
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=env, cwd=self.workdir, start_new_session=True, bufsize=0)
        self._reader = protocol.Reader(self._proc.stdout.fileno(), spin=SPIN_SECONDS)
        self._ready = False
        init = {"op": "init", "level": self.level, "tools": sorted(self.tools),
                "memory_mb": self.limits.memory_mb, "file_mb": self.limits.file_mb,
                "cpu_seconds": int(max(CPU_SECONDS_MIN, CPU_STEPS * self.limits.step_seconds)),
                "output_chars": self.limits.output_chars,
                "write_roots": [str(self.workdir), str(home)],
                "read_roots": [*python_roots(), *(str(p) for p in self.attachments.values())]}
        protocol.send(self._proc.stdin.fileno(), init)

    def _step(self, code: str) -> dict:
        limit = self.limits.step_seconds
        try:
            if not self._ready:
                ready = self._reader.read(time.monotonic() + START_SECONDS)
                if ready.get("op") != "ready":
                    raise protocol.ProtocolError(f"unexpected first frame {ready.get('op')!r}")
                self._ready = True
            protocol.send(self._proc.stdin.fileno(), {"op": "run", "code": code})
            deadline = time.monotonic() + limit
            while True:
                message = self._reader.read(deadline)
                if message.get("op") == "done":
                    return message
                if message.get("op") != "tool":
                    raise protocol.ProtocolError(f"unexpected frame {message.get('op')!r}")
                paused = time.monotonic()
                reply = self._call_tool(message)
                deadline += time.monotonic() - paused
                protocol.send(self._proc.stdin.fileno(), reply)
        except TimeoutError:
            if not self._ready:
                raise StepFailed(f"the sandbox worker did not start within {START_SECONDS:g} s") from None
            raise StepFailed(f"step exceeded {limit:g} s and was stopped; {LOST}") from None
        except (protocol.ProtocolError, OSError) as exc:
            raise StepFailed(self._why_gone(exc)) from None

    def _why_gone(self, exc: Exception) -> str:
        if self._stopped:
            return f"the step was stopped; {LOST}"
        proc = self._proc
        try:
            code = proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return f"the sandbox worker broke the protocol ({exc}); {LOST}"
        if not self._ready:
            detail = proc.stderr.read().decode(errors="replace").strip().splitlines()
            return f"the sandbox worker failed to start: {detail[-1] if detail else f'exit code {code}'}"
        if code == -signal.SIGKILL:
            return f"the worker was killed (probably over the {self.limits.memory_mb} MB memory limit); {LOST}"
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        return f"the worker exited during the step ({how}); {LOST}"

    def _call_tool(self, message: dict) -> dict:
        name, args, kwargs = message.get("name"), message.get("args"), message.get("kwargs")
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is None or not isinstance(args, list) or not isinstance(kwargs, dict):
            return {"op": "tool_result", "ok": False, "kind": "ToolError", "error": f"no tool call {name!r} here"}
        try:
            value = tool(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a tool's failure is reported to the model, not raised here
            if _is_tool_error(exc):
                return {"op": "tool_result", "ok": False, "kind": "ToolError", "error": str(exc)}
            logger.exception("tool %s failed", name)
            return {"op": "tool_result", "ok": False, "kind": "error", "error": f"{type(exc).__name__}: {exc}"}
        return {"op": "tool_result", "ok": True, "value": json.loads(json.dumps(value, default=str))}

    def _discard(self) -> None:
        proc, self._proc, self._reader, self._ready = self._proc, None, None, False
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            pipe.close()

    def _lay_out_attachments(self) -> dict[str, Path]:
        """Make each attachment visible at its name; returns bwrap's mounts (in-sandbox path -> real file)."""
        mounts: dict[str, Path] = {}
        for name, real in self.attachments.items():
            target = Path(name) if Path(name).is_absolute() else self.workdir / name
            if self.level == "bwrap":
                if not target.is_absolute() or self.workdir in target.parents:
                    if not target.exists() and not target.is_symlink():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.touch()
                        self._placeholders.append(target)
                mounts[str(target)] = real
            elif self.workdir in target.parents and not target.exists() and not target.is_symlink():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(real)
            elif target.resolve() != real:
                logger.warning("attachment %s is not visible in the fallback sandbox (only at %s)", name, real)
        return mounts

    def _attachment_paths(self) -> set[str]:
        return {name for name in self.attachments if not Path(name).is_absolute()}

    def _snapshot(self) -> dict[str, tuple[int, int]]:
        """Relative path -> (mtime, size) of every file in the working directory."""
        seen: dict[str, tuple[int, int]] = {}
        root = str(self.workdir)
        stack = [root]
        while stack:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        stat = entry.stat(follow_symlinks=False)
                        seen[entry.path[len(root) + 1:]] = (stat.st_mtime_ns, stat.st_size)
        return seen

    def _changed(self) -> list[str]:
        """Files created or modified since the last step ended (attachments aside)."""
        skip = self._attachment_paths()
        before, self._seen = self._seen, self._snapshot()
        return sorted(p for p, sig in self._seen.items() if before.get(p) != sig and p not in skip)
