"""The worker process: runs inside the sandbox and executes each step with plain CPython.

Started by host.py as a script (the `agent` package is not importable inside bwrap),
it reads frames from the host on its stdin, keeps one globals dict for the whole task,
and answers each step with what the code printed, its error, and its final answer.
Tool names are functions that forward the call to the host and wait for its answer.

Model code shares this process, so it can write frames too. Each step's answer therefore
carries the step's nonce, which the host writes into a separate pipe and which the worker
reads only after the step's code has returned: code that forges an answer without it is
ignored by the host, and code that steals it from the pipe leaves the worker without it,
which the worker reports before exiting (the host then starts a fresh one).
Standard library only (plus the sibling modules protocol, seccomp and guard).
"""

from __future__ import annotations

import builtins
import os
import resource
import signal
import sys
import threading

import protocol

STEP_FILE = "<step>"
NICENESS = 10
NONCE_RECORD = 8 + 32  # the step number in 8 digits, then 32 hex digits


class ToolError(Exception):
    """A tool refused or failed; the message says why."""


class _FinalAnswer(BaseException):
    """Ends the step early; BaseException so a bare `except Exception` in model code does not swallow it."""


class _Capture:
    """sys.stdout/sys.stderr for one step: keeps the first `limit` characters and counts the rest."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, limit: int) -> None:
        self.limit, self.kept, self.parts, self.dropped = limit, 0, [], 0

    def write(self, text) -> int:
        text = str(text)
        room = self.limit - self.kept
        if room > 0:
            self.parts.append(text[:room])
            self.kept += min(room, len(text))
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def text(self) -> str:
        out = "".join(self.parts)
        if self.dropped:
            out += f"\n[output truncated: {self.dropped} more characters were printed]\n"
        return out


def describe(exc: BaseException, code: str) -> str:
    """'Type: message (line N: source)' for the innermost line of the step that failed."""
    name = type(exc).__name__
    if isinstance(exc, SyntaxError) and exc.filename == STEP_FILE:
        where = f" (line {exc.lineno}: {exc.text.strip()})" if exc.text else ""
        return f"SyntaxError: {exc.msg}{where}"
    lineno, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == STEP_FILE:
            lineno = tb.tb_lineno
        tb = tb.tb_next
    message = f"{name}: {exc}" if str(exc) else name
    lines = code.splitlines()
    if lineno and 0 < lineno <= len(lines):
        message += f" (line {lineno}: {lines[lineno - 1].strip()})"
    return message


class Worker:
    def __init__(self, frames: protocol.Reader, wfd: int, init: dict) -> None:
        self.frames, self.wfd = frames, wfd
        self.nonce_fd = init["nonce_fd"]
        os.set_blocking(self.nonce_fd, False)
        self.output_chars = init["output_chars"]
        self.fallback = init["level"] == "fallback"
        self.final: list = []
        self.tool_lock = threading.Lock()
        self.globals = {"__name__": "__main__", "final_answer": self.final_answer}
        for name in init["tools"]:
            self.globals[name] = self.tool_proxy(name)
        if self.fallback:
            import guard

            self.guard = guard
            self.globals["__builtins__"] = guard.safe_builtins(builtins.__import__)
        else:
            self.globals["__builtins__"] = builtins

    def final_answer(self, answer=None):
        self.final.append(str(answer))
        raise _FinalAnswer

    def tool_proxy(self, name: str):
        def call(*args, **kwargs):
            call_id = os.urandom(8).hex()
            try:
                request = protocol.encode({"op": "tool", "id": call_id, "name": name, "args": list(args),
                                           "kwargs": kwargs})
            except (TypeError, ValueError):
                raise TypeError(f"{name}() takes JSON values (str, numbers, lists, dicts); pass files by path") from None
            with self.tool_lock:  # one call in flight: each reply is read by the call that asked for it
                protocol.write(self.wfd, request)
                reply = self.frames.read()
                while reply.get("op") != "tool_result" or reply.get("id") != call_id:
                    reply = self.frames.read()  # a stray answer to a forged call: not ours
            if reply.get("ok"):
                return reply.get("value")
            if reply.get("kind") == "ToolError":
                raise ToolError(reply.get("error"))
            raise RuntimeError(f"tool {name} failed: {reply.get('error')}")

        call.__name__ = name
        return call

    def run(self, code: str) -> dict:
        capture = _Capture(self.output_chars)
        self.final.clear()
        error = None
        sys.stdout = sys.stderr = capture
        try:
            if self.fallback:
                import ast

                tree = ast.parse(code, STEP_FILE)
                self.guard.check_code(tree)
                compiled = compile(tree, STEP_FILE, "exec")
            else:
                compiled = compile(code, STEP_FILE, "exec")
            exec(compiled, self.globals)
        except _FinalAnswer:
            pass
        except BaseException as exc:  # noqa: BLE001 - every failure of model code is the step's error
            error = describe(exc, code)
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        if self.final:
            error = None
        final = self.final[0] if self.final else None
        return {"op": "done", "output": capture.text(), "error": error, "is_final": bool(self.final), "final_answer": final}

    def step_nonce(self, step: int) -> str | None:
        """This step's nonce from the host's pipe, read only now that the step's code has returned."""
        try:
            record = os.read(self.nonce_fd, NONCE_RECORD)
        except BlockingIOError:
            return None
        if len(record) != NONCE_RECORD or int(record[:8]) != step:
            return None
        return record[8:].decode()

    def serve(self) -> None:
        while True:
            try:
                message = self.frames.read()
            except protocol.ProtocolError:
                return
            if message.get("op") == "tool_result":
                continue  # the answer to a call that model code forged
            if message.get("op") != "run":
                return
            reply = self.run(message["code"])
            nonce = self.step_nonce(message.get("step"))
            if nonce is None:  # the step's code took the nonce: report it, and leave for a fresh worker
                protocol.send(self.wfd, {"op": "tampered", "step": message.get("step")})
                os._exit(protocol.TAMPERED_EXIT)
            protocol.send(self.wfd, {**reply, "nonce": nonce})


def confine(init: dict) -> bool:
    """Limits that hold for the rest of the process's life; True when seccomp is on."""
    mib = 1024 * 1024
    for limit, value in ((resource.RLIMIT_AS, init["memory_mb"] * mib), (resource.RLIMIT_FSIZE, init["file_mb"] * mib),
                         (resource.RLIMIT_CPU, init["cpu_seconds"]), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_NOFILE, 1024)):
        resource.setrlimit(limit, (value, value))
    if init["level"] == "bwrap":
        # Counted per user inside bwrap's user namespace, so only this sandbox's threads count
        # (the kernel exempts a root-owned process; the host adds a pids cgroup then).
        resource.setrlimit(resource.RLIMIT_NPROC, (init["threads"], init["threads"]))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with EFBIG instead of killing us
    os.nice(NICENESS)  # a busy step yields the CPU to the app serving the page
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the host
    import seccomp

    confined = seccomp.install()
    if init["level"] == "fallback":
        import guard

        guard.install_audit_hook(init["write_roots"], init["read_roots"])
    return confined


def main() -> None:
    frames, wfd = protocol.Reader(os.dup(0)), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    init = frames.read()
    confined = confine(init)
    worker = Worker(frames, wfd, init)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    protocol.send(wfd, {"op": "ready", "seccomp": confined, "pid": os.getpid()})
    worker.serve()


if __name__ == "__main__":
    main()
