"""Length-prefixed JSON frames between the host and the worker.

JSON, never pickle: the host must not unpickle what untrusted code could forge.
This file runs on both sides (the worker imports it as a top-level module), so it
uses the standard library only.
"""

from __future__ import annotations

import json
import os
import struct

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024


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


def read_exact(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise ProtocolError("the pipe was closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(fd: int) -> dict:
    (size,) = HEADER.unpack(read_exact(fd, HEADER.size))
    if size > MAX_FRAME:
        raise ProtocolError(f"frame of {size} bytes is over the {MAX_FRAME} byte limit")
    return decode(read_exact(fd, size))


def decode(body: bytes) -> dict:
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise ProtocolError(f"not a JSON frame: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("a frame must hold a JSON object")
    return message
