"""The host side of the sandbox: one worker process per task, steps sent over a pipe.

The worker keeps the task's variables between steps. A step that runs past its time,
or is stopped, kills the worker; the next step starts a fresh one (variables lost, and
the error says so). Tool calls arrive from the worker as frames and run here, in the
app's process, where their arguments are checked; their time counts toward the step's
limit. A step that grows the working directory past the disk quota is stopped too.
Answers must carry the step's nonce (see worker.py); others are ignored.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from core import defaults
from agent.sandbox import beneath, protocol
from agent.sandbox.bwrap import LEVELS, bwrap_command, fallback_command, python_roots, sandbox_level
from agent.sandbox.threadcap import PidsCgroup

logger = logging.getLogger("agent.sandbox")

START_SECONDS = 60.0
SPIN_SECONDS = 0.0002  # how long the host polls for a step's answer before sleeping (see protocol.Reader)
# A worker's lifetime CPU budget (RLIMIT_CPU): bounds threads left spinning between steps,
# which the per-step wall clock does not see. Generous: a task is many steps.
CPU_STEPS, CPU_SECONDS_MIN = 20, 600
DISK_POLL = 0.05  # seconds between measurements of the working directory while a step runs
# What a directory, and at least what a file, counts toward the quota: millions of empty files
# would exhaust the disk's inodes. Directories are not measured (one stat less per step).
MIN_ENTRY_BYTES = 4096
TOOL_POLL = 0.05  # how often a step waiting on a tool looks at its deadline and the stop switch
LOST = "the worker was restarted, so variables from earlier steps are lost"
TAMPERED = f"earlier code took the sandbox's step nonce to forge its answers; {LOST}"
PRIVATE_PREFIX = "mat-sandbox-"
OWNER = ".owner"  # locked by the process that owns a private folder, for as long as it lives
UNOWNED_GRACE = 86400.0  # a folder without an owner file (being made, or left by an older version) is kept a day


@dataclass
class Limits:
    step_seconds: float = defaults.STEP_SECONDS
    memory_mb: int = defaults.SANDBOX_MEMORY_MB
    file_mb: int = defaults.SANDBOX_FILE_MB
    output_chars: int = defaults.SANDBOX_OUTPUT_CHARS
    disk_mb: int = defaults.SANDBOX_DISK_MB  # what one step may add to the working directory (and the temp dir)
    threads: int = defaults.SANDBOX_THREADS  # tasks (threads) the worker may have at once


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
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.close(beneath.make_dirs(self.workdir, ".cache"))  # where MM-Traj-style code saves files; never via a link
        self.attachments = {name: Path(real).resolve() for name, real in (attachments or {}).items()}
        self.tools = dict(tools or {})
        self.limits = limits or Limits()
        self.level = level or sandbox_level()
        if self.level not in LEVELS:
            raise ValueError(f"unknown sandbox level '{self.level}': use one of {', '.join(LEVELS)}")
        self._private = Path(tempfile.mkdtemp(prefix=PRIVATE_PREFIX))
        self._owner = _hold_owner_lock(self._private)
        self._placeholders: list[str] = []
        self._mounts = self._lay_out_attachments()
        # The working directory as the last step left it; bytes under the write roots then, and what it added.
        self._seen, self._used = self._snapshot()
        self._grown = 0
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._reader: protocol.Reader | None = None
        self._ready = False
        self._stopped = False
        self._closed = False
        self._step_no = 0
        self._nonce_w: int | None = None
        self._cgroup: PidsCgroup | None = None
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
            if result.error is None and self._grown > self.limits.disk_mb * 2**20:
                result.error = (f"the step wrote {self._grown / 2**20:.0f} MB, over the {self.limits.disk_mb} MB "
                                "disk quota of a step")
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
            beneath.unlink_if_empty(self.workdir, placeholder)
        self._placeholders.clear()
        shutil.rmtree(self._private, ignore_errors=True)
        if self._owner is not None:
            os.close(self._owner)
            self._owner = None

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
        nonce_r, self._nonce_w = os.pipe()
        os.set_blocking(self._nonce_w, False)
        self._cgroup = PidsCgroup.create(self.limits.threads)
        if self._cgroup is not None:
            argv = self._cgroup.wrap(argv)
        try:
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          env=env, cwd=self.workdir, start_new_session=True, bufsize=0,
                                          pass_fds=(nonce_r,))
        finally:
            os.close(nonce_r)
        self._reader = protocol.Reader(self._proc.stdout.fileno(), spin=SPIN_SECONDS)
        self._ready = False
        init = {"op": "init", "level": self.level, "tools": sorted(self.tools), "nonce_fd": nonce_r,
                "threads": self.limits.threads, "memory_mb": self.limits.memory_mb,
                "file_mb": min(self.limits.file_mb, self.limits.disk_mb),
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
            nonce = self._send_run(code)
            deadline = time.monotonic() + limit
            next_check = time.monotonic() + DISK_POLL
            while True:
                try:
                    message = self._reader.read(min(deadline, next_check))
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        raise
                    measured = time.monotonic()
                    self._check_disk()
                    # Measuring a large working directory takes time: keep it under a tenth of the host's CPU.
                    next_check = time.monotonic() + max(DISK_POLL, 10 * (time.monotonic() - measured))
                    continue
                op = message.get("op")
                if op == "done" and message.get("nonce") == nonce:
                    return message
                if op == "tool":
                    protocol.send(self._proc.stdin.fileno(), self._call_tool(message, deadline))
                elif op == "tampered":
                    raise StepFailed(TAMPERED)
                elif op == "done":
                    logger.warning("ignored a forged or stale answer from the sandbox (wrong step nonce)")
                else:
                    raise protocol.ProtocolError(f"unexpected frame {op!r}")
        except TimeoutError:
            if not self._ready:
                raise StepFailed(f"the sandbox worker did not start within {START_SECONDS:g} s") from None
            raise StepFailed(f"step exceeded {limit:g} s and was stopped; {LOST}") from None
        except (protocol.ProtocolError, OSError) as exc:
            raise StepFailed(self._why_gone(exc)) from None

    def _send_run(self, code: str) -> str:
        """Put this step's nonce into the worker's private pipe, then send the code; returns the nonce."""
        self._step_no += 1
        nonce = os.urandom(16).hex()
        os.write(self._nonce_w, f"{self._step_no:08d}{nonce}".encode())
        protocol.send(self._proc.stdin.fileno(), {"op": "run", "code": code, "step": self._step_no})
        return nonce

    def _check_disk(self) -> None:
        """StepFailed when the step has grown the working directory past the quota."""
        grown = sum(_scan(root)[1] for root in self._write_roots()) - self._used
        if grown > self.limits.disk_mb * 2**20:
            raise StepFailed(f"the step wrote {grown / 2**20:.0f} MB, over the {self.limits.disk_mb} MB disk quota "
                             f"of a step, and was stopped; {LOST}")

    def _write_roots(self) -> list[Path]:
        """Where the worker can write on the host's disk (bwrap's /tmp is a size-limited tmpfs of its own)."""
        return [self.workdir] if self.level == "bwrap" else [self.workdir, self._private / "home"]

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
        if code == protocol.TAMPERED_EXIT:
            return TAMPERED
        if code == -signal.SIGKILL:
            return f"the worker was killed (probably over the {self.limits.memory_mb} MB memory limit); {LOST}"
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        return f"the worker exited during the step ({how}); {LOST}"

    def _call_tool(self, message: dict, deadline: float) -> dict:
        """The tool's answer, the time it takes counted in the step's: TimeoutError past `deadline`.

        The tool runs in a thread of its own so that a slow one cannot hold the step past its
        limit or a stop; one still running then finishes in the background and its answer is dropped.
        """
        answer: list[dict] = []
        finished = threading.Event()

        def work() -> None:
            answer.append(self._tool_answer(message))
            finished.set()

        threading.Thread(target=work, name=f"tool-{message.get('name')}", daemon=True).start()
        while not finished.wait(max(0.0, min(TOOL_POLL, deadline - time.monotonic()))):
            if self._stopped:
                raise protocol.ProtocolError("stopped during a tool call")
            if time.monotonic() >= deadline:
                raise TimeoutError
        return {**answer[0], "id": message.get("id")}

    def _tool_answer(self, message: dict) -> dict:
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
        if self._nonce_w is not None:
            os.close(self._nonce_w)
            self._nonce_w = None
        if self._cgroup is not None:
            self._cgroup.remove()
            self._cgroup = None

    def _lay_out_attachments(self) -> dict[str, Path]:
        """Make each attachment visible at its name; returns bwrap's mounts (in-sandbox path -> real file).

        Inside the working directory (which model code may already have filled, for a nested
        sandbox) every placeholder and link is made without following links.
        """
        mounts: dict[str, Path] = {}
        for name, real in self.attachments.items():
            target = Path(name) if Path(name).is_absolute() else self.workdir / name
            inside = self.workdir in target.parents
            try:
                if self.level == "bwrap":
                    if inside:
                        self._placeholder(str(target.relative_to(self.workdir)))
                    mounts[str(target)] = real
                elif inside:
                    self._link(str(target.relative_to(self.workdir)), real)
                elif target.resolve() != real:
                    logger.warning("attachment %s is not visible in the fallback sandbox (only at %s)", name, real)
            except beneath.PathRefused:
                logger.warning("attachment %s is not laid out: a link in the working directory is in the way", name)
        return mounts

    def _placeholder(self, relative: str) -> None:
        """An empty file for bwrap to mount the attachment on (removed at close if still empty)."""
        try:
            os.close(beneath.create_new(self.workdir, relative))
            self._placeholders.append(relative)
        except FileExistsError:
            pass

    def _link(self, relative: str, real: Path) -> None:
        parent, _, name = relative.rpartition("/")
        dirfd = beneath.make_dirs(self.workdir, parent) if parent else os.open(self.workdir, os.O_RDONLY)
        try:
            os.symlink(real, name, dir_fd=dirfd)
        except FileExistsError:
            pass
        finally:
            os.close(dirfd)

    def _attachment_paths(self) -> set[str]:
        return {name for name in self.attachments if not Path(name).is_absolute()}

    def _snapshot(self) -> tuple[dict[str, tuple[int, int]], int]:
        """Relative path -> (mtime, size) of every file in the working directory, and the bytes the write roots use."""
        seen, used = _scan(self.workdir)
        return seen, used + sum(_scan(root)[1] for root in self._write_roots()[1:])

    def _changed(self) -> list[str]:
        """Files created or modified since the last step ended (attachments aside); sets what the step added."""
        skip = self._attachment_paths()
        before = self._seen
        self._seen, used = self._snapshot()
        self._grown, self._used = used - self._used, used
        return sorted(p for p, sig in self._seen.items() if before.get(p) != sig and p not in skip)


def _hold_owner_lock(folder: Path) -> int:
    """Lock `folder`'s owner file for this process's lifetime (the kernel drops it when the process dies)."""
    fd = os.open(folder / OWNER, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def remove_stale_folders(tmp: str | Path | None = None) -> int:
    """Remove the private folders of sandboxes whose process is gone (a killed app); returns how many.

    A live sandbox, in this process or another app's, holds its folder's owner lock, so it is left alone.
    """
    removed = 0
    for folder in Path(tmp or tempfile.gettempdir()).glob(f"{PRIVATE_PREFIX}*"):
        try:
            if folder.is_symlink() or not folder.is_dir() or folder.stat().st_uid != os.getuid():
                continue
            if _owned(folder):
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed


def _owned(folder: Path) -> bool:
    try:
        fd = os.open(folder / OWNER, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:  # being made right now, or left by an older version
        return time.time() - folder.stat().st_mtime < UNOWNED_GRACE
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _scan(root: Path) -> tuple[dict[str, tuple[int, int]], int]:
    """Relative path -> (mtime, size) of each plain file under `root`, and the bytes of disk all of it takes.

    Links are not followed, nor listed.
    """
    seen: dict[str, tuple[int, int]] = {}
    used, stack, prefix = 0, [str(root)], len(str(root)) + 1
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    used += MIN_ENTRY_BYTES
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                used += max(info.st_blocks * 512, MIN_ENTRY_BYTES)
                if stat.S_ISREG(info.st_mode):  # a link is never offered to the page as the step's file
                    seen[entry.path[prefix:]] = (info.st_mtime_ns, info.st_size)
    return seen, used
