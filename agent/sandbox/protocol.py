"""Length-prefixed JSON frames between the host and the worker.

JSON, never pickle: the host must not unpickle what untrusted code could forge.
This file runs on both sides (the worker imports it as a top-level module), so it
uses the standard library only.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
TAMPERED_EXIT = 3  # the worker's exit code when a step's code took the step's nonce (see worker.py)


class ProtocolError(Exception):
    """The other side closed the pipe or sent something that is not a frame."""


def encode(message: dict) -> bytes:
    """A frame; TypeError/ValueError for anything that is not plain JSON."""
    body = json.dumps(message).encode()
    return HEADER.pack(len(body)) + body


def write(fd: int, frame: bytes) -> None:
    data = memoryview(frame)
    while data:
        data = data[os.write(fd, data):]


def send(fd: int, message: dict) -> None:
    write(fd, encode(message))


class Reader:
    """Buffered frames from a pipe: one read() usually brings a whole frame; `deadline` bounds the wait.

    With `spin` seconds, a reader that waits with a deadline first polls without sleeping for
    that long: a short step's answer then arrives without paying a sleeping thread's wake-up,
    the largest part of a warm step's cost on a small virtual machine.
    """

    def __init__(self, fd: int, spin: float = 0.0) -> None:
        self.fd, self.buffer, self.spin = fd, bytearray(), spin
        if spin:
            os.set_blocking(fd, False)

    def read(self, deadline: float | None = None) -> dict:
        """The next frame; TimeoutError past `deadline` (time.monotonic), ProtocolError on a closed pipe."""
        while True:
            if len(self.buffer) >= HEADER.size:
                (size,) = HEADER.unpack_from(self.buffer)
                if size > MAX_FRAME:
                    raise ProtocolError(f"frame of {size} bytes is over the {MAX_FRAME} byte limit")
                end = HEADER.size + size
                if len(self.buffer) >= end:
                    body = bytes(self.buffer[HEADER.size:end])
                    del self.buffer[:end]
                    return decode(body)
            if deadline is not None:
                self._wait(deadline)
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise ProtocolError("the pipe was closed")
            self.buffer += chunk


    def _wait(self, deadline: float) -> None:
        """Return once the pipe is readable; TimeoutError at the deadline."""
        spin_until = time.monotonic() + self.spin
        while time.monotonic() < spin_until:
            if select.select([self.fd], [], [], 0)[0]:
                return
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([self.fd], [], [], left)[0]:
            raise TimeoutError


def decode(body: bytes) -> dict:
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise ProtocolError(f"not a JSON frame: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("a frame must hold a JSON object")
    return message
