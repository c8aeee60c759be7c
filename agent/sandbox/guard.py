"""The fallback level's guards, used only where bwrap cannot run.

What it guarantees, on top of the scrubbed environment, the rlimits and the seccomp
filter every worker has (no new processes, no network sockets, no ptrace):
- imports from model code are limited to an allow-list of data/science modules whose file
  access goes through Python's `open` (so OpenCV, which opens files in C, is not on it);
- attribute access to dunders and frame/code internals (`__subclasses__`, `__globals__`,
  `f_back`, `gi_frame`, ...) is refused, statically and through getattr;
- an audit hook refuses opening files outside the working directory, the task's
  attachments, a private temp dir and the Python install / system data, writing outside
  the working directory and temp dir, signals, ctypes, tracing, and rlimit changes;
  hard links from outside files, symlinks to anything but an absolute path it may read,
  and paths relative to a directory fd (which the realpath check cannot see) are refused.
This stops a model's careless or curious code; it is not a boundary against a determined
attacker in the same process (bwrap is). Runs inside the worker, standard library only.
"""

from __future__ import annotations

import ast
import builtins
import os
import sys

ALLOWED_IMPORTS = frozenset("""
    __future__ abc array ast base64 bisect calendar cmath collections colorsys copy csv dataclasses datetime decimal
    difflib enum fractions functools glob gzip hashlib heapq html io itertools json math mimetypes numbers operator
    os pathlib pprint random re shutil statistics string struct tempfile textwrap time typing unicodedata uuid
    warnings xml zipfile zoneinfo urllib
    numpy pandas PIL matplotlib scipy sympy sklearn skimage openpyxl docx pptx pypdf reportlab bs4 markdown
    """.split())
SAFE_DUNDERS = frozenset("""
    __init__ __name__ __qualname__ __doc__ __version__ __class__ __module__ __file__ __len__ __str__ __repr__
    __iter__ __next__ __enter__ __exit__ __add__ __eq__ __lt__ __hash__ __call__ __getitem__ __setitem__ __contains__
    """.split())
BLOCKED_NAMES = frozenset("""
    f_back f_globals f_locals f_builtins f_code f_trace gi_frame gi_code gi_yieldfrom cr_frame cr_code cr_await
    ag_frame ag_code tb_frame tb_next co_code mro sys builtins ctypes _ctypes gc inspect importlib subprocess
    _posixsubprocess socket posix signal resource _thread
    """.split())
REMOVED_BUILTINS = ("eval", "exec", "compile", "globals", "locals", "vars", "breakpoint", "input", "help", "memoryview")
BLOCKED_EVENTS = frozenset("""
    os.system os.exec os.fork os.forkpty os.posix_spawn os.spawn os.kill os.killpg subprocess.Popen pty.spawn
    socket.__new__ socket.connect socket.bind socket.getaddrinfo socket.sendto
    ctypes.dlopen ctypes.dlsym ctypes.dlsym/handle ctypes.cdata ctypes.cdata/buffer ctypes.call_function
    ctypes.addressof ctypes.string_at ctypes.wstring_at ctypes.set_errno ctypes.get_errno ctypes.seh_exception
    sys._current_frames sys.settrace sys.setprofile sys.addaudithook resource.setrlimit resource.prlimit
    os.setxattr os.removexattr os.chown os.chroot
    """.split())
PATH_EVENTS = {  # event -> positions of path arguments that are written (a hard link's source too: it can be written through)
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1), "os.symlink": (1,),
    "os.link": (0, 1), "os.chmod": (0,), "os.truncate": (0,), "os.utime": (0,), "shutil.rmtree": (0,),
    "shutil.move": (0, 1), "shutil.copyfile": (1,), "shutil.copytree": (1,),
}
# event -> positions of dir_fd arguments: a path relative to a directory fd escapes the realpath check.
DIR_FD_ARGS = {"os.remove": (1,), "os.rmdir": (1,), "os.mkdir": (2,), "os.rename": (2, 3), "os.symlink": (2,),
               "os.link": (2, 3), "os.chmod": (2,), "os.utime": (3,)}
READ_PREFIXES = ("/usr/", "/etc/localtime", "/etc/timezone", "/etc/fonts/", "/etc/mime.types", "/dev/null",
                 "/dev/urandom", "/dev/zero", "/proc/self/", "/proc/cpuinfo", "/proc/meminfo", "/sys/devices/system/cpu")


def _is_blocked_attr(name: str) -> bool:
    dunder = name.startswith("__") and name.endswith("__")
    return (dunder and name not in SAFE_DUNDERS) or name in BLOCKED_NAMES


def check_code(tree: ast.AST) -> None:
    """Refuse a step whose source names internals; raises PermissionError with the line."""
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.Name) and node.id != "__name__":
            name = node.id if node.id.startswith("__") and node.id.endswith("__") else None
        if name and _is_blocked_attr(name):
            raise PermissionError(f"blocked by the sandbox: access to '{name}' is not allowed (line {node.lineno})")


def safe_builtins(real_import) -> dict:
    """A builtins dict for model code: guarded import and getattr family, no eval/exec."""
    namespace = {k: v for k, v in vars(builtins).items() if k not in REMOVED_BUILTINS}

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level or name.split(".")[0] not in ALLOWED_IMPORTS:
            raise PermissionError(f"blocked by the sandbox: import of '{name}' is not allowed")
        return real_import(name, globals, locals, fromlist, level)

    def guarded(fn):
        def attr(obj, name, *rest):
            if isinstance(name, str) and _is_blocked_attr(name):
                raise PermissionError(f"blocked by the sandbox: access to '{name}' is not allowed")
            return fn(obj, name, *rest)

        attr.__name__ = fn.__name__
        return attr

    namespace.update(__import__=guarded_import, getattr=guarded(getattr), setattr=guarded(setattr),
                     delattr=guarded(delattr), hasattr=guarded(hasattr))
    return namespace


def install_audit_hook(write_roots: list[str], read_roots: list[str]) -> None:
    """Refuse, for the rest of this process's life, what BLOCKED_EVENTS and the path rules forbid."""
    writable = tuple(os.path.realpath(p) + os.sep for p in write_roots)
    readable = writable + tuple(os.path.realpath(p) + os.sep for p in read_roots) + READ_PREFIXES
    attached = frozenset(os.path.realpath(p) for p in read_roots)  # attachments: read, never written
    blocked_events, path_events, dir_fd_args = BLOCKED_EVENTS, dict(PATH_EVENTS), dict(DIR_FD_ARGS)
    realpath, fspath = os.path.realpath, os.fspath

    def inside(path, roots) -> bool:
        if isinstance(path, int):
            return True
        real = realpath(fspath(path))
        if roots is writable:
            return (real + os.sep).startswith(writable) and real not in attached
        return (real + os.sep).startswith(readable) or real in attached

    def hook(event: str, args: tuple) -> None:
        if event in blocked_events:
            raise PermissionError(f"blocked by the sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = args
            if path is None:
                return
            writes = (mode is not None and any(c in mode for c in "wax+")) or (flags or 0) & (os.O_WRONLY | os.O_RDWR)
            if not inside(path, writable if writes else readable):
                raise PermissionError(f"blocked by the sandbox: {'writing' if writes else 'reading'} '{path}' is outside the working directory")
        elif event in path_events:
            for i in dir_fd_args.get(event, ()):
                if i < len(args) and args[i] not in (None, -1):
                    raise PermissionError(f"blocked by the sandbox: {event} relative to a directory fd is not allowed")
            for i in path_events[event]:
                if i < len(args) and args[i] is not None and not inside(args[i], writable):
                    raise PermissionError(f"blocked by the sandbox: {event} on '{args[i]}' is outside the working directory")
            if event == "os.symlink" and not (isinstance(args[0], str) and os.path.isabs(args[0])
                                              and inside(args[0], readable)):
                # A relative target changes meaning when the link moves; an outside one wins a race against
                # the open check (swap a checked file for the link). Absolute targets it may read are harmless.
                raise PermissionError(f"blocked by the sandbox: a symlink to '{args[0]}' is not allowed")
        elif event in ("os.listdir", "os.scandir") and args[0] is not None and not inside(args[0], readable):
            raise PermissionError(f"blocked by the sandbox: listing '{args[0]}' is outside the working directory")

    sys.addaudithook(hook)
    _refuse_dir_fd_opens()


def _refuse_dir_fd_opens() -> None:
    """os.open(path, dir_fd=...) names a file the 'open' audit event cannot see (it gets no dir_fd): refuse it.

    shutil.rmtree then uses its path-based walk, which the hook checks.
    """
    import shutil

    real_open = os.open

    def open_without_dir_fd(path, flags, mode=0o777, *, dir_fd=None):
        if dir_fd is not None:
            raise PermissionError("blocked by the sandbox: os.open relative to a directory fd is not allowed")
        return real_open(path, flags, mode)

    os.open = open_without_dir_fd
    shutil._use_fd_functions = False
