"""A seccomp filter the worker installs on itself before running any model code.

It refuses, at the kernel, what no agent step needs and what namespaces alone do not
stop: new processes (fork, vfork, clone without CLONE_THREAD, exec), sockets other
than AF_UNIX, ptrace / process_vm_* on other processes, and io_uring (its requests bypass
seccomp, since the kernel runs them in its own workers). Threads still work
(clone3 answers ENOSYS, so the C library falls back to clone with CLONE_THREAD).
Runs inside the worker, standard library only.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

# (audit arch, {name: syscall number}) per machine.
_ARCHES = {
    "x86_64": (0xC000003E, {
        "fork": 57, "vfork": 58, "clone": 56, "clone3": 435, "execve": 59, "execveat": 322,
        "socket": 41, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    }),
    "aarch64": (0xC00000B7, {
        "clone": 220, "clone3": 435, "execve": 221, "execveat": 281,
        "socket": 198, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    }),
}
_DENIED = ("fork", "vfork", "execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev",
           "io_uring_setup", "io_uring_enter", "io_uring_register")

_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_CLONE_THREAD, _AF_UNIX, _X32_BIT = 0x00010000, 1, 0x40000000
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2


def _program(arch: int, numbers: dict[str, int]) -> list[tuple[int, int, int, int]]:
    """BPF as (code, jump-true, jump-false, k); jumps are relative, resolved from labels."""
    eperm, enosys = _ERRNO | errno.EPERM, _ERRNO | errno.ENOSYS
    denied = [numbers[name] for name in _DENIED if name in numbers]
    body: list[tuple] = [
        (_LD_W_ABS, 0, 0, 4),
        (_JEQ_K, 0, "eperm", arch),
        (_LD_W_ABS, 0, 0, 0),
        (_JGE_K, "eperm", 0, _X32_BIT),
        *[(_JEQ_K, "eperm", 0, nr) for nr in denied],
        (_JEQ_K, "enosys", 0, numbers["clone3"]),
        (_JEQ_K, "clone", 0, numbers["clone"]),
        (_JEQ_K, "socket", 0, numbers["socket"]),
        (_RET_K, 0, 0, _ALLOW),
        ("clone", (_LD_W_ABS, 0, 0, 16)),
        (_JSET_K, "allow", "eperm", _CLONE_THREAD),
        ("socket", (_LD_W_ABS, 0, 0, 16)),
        (_JEQ_K, "allow", "eperm", _AF_UNIX),
        ("allow", (_RET_K, 0, 0, _ALLOW)),
        ("eperm", (_RET_K, 0, 0, eperm)),
        ("enosys", (_RET_K, 0, 0, enosys)),
    ]
    labels, flat = {}, []
    for item in body:
        if isinstance(item[0], str):
            labels[item[0]] = len(flat)
            item = item[1]
        flat.append(item)
    resolve = lambda target, here: labels[target] - here - 1 if isinstance(target, str) else target  # noqa: E731
    return [(code, resolve(jt, i), resolve(jf, i), k) for i, (code, jt, jf, k) in enumerate(flat)]


def install() -> bool:
    """Confine this process for good; False (nothing installed) on an unknown machine."""
    machine = _ARCHES.get(platform.machine())
    if machine is None:
        return False
    program = _program(*machine)
    raw = b"".join(struct.pack("=HBBI", code, jt, jf, k) for code, jt, jf, k in program)
    filters = ctypes.create_string_buffer(raw)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = SockFprog(len(program), ctypes.cast(filters, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")
    return True
