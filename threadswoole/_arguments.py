"""Argument checks and conversions shared by the public API (Server, Process, Client) and the
routers: wire data as bytes (contract R4) and session ids (R3, §18.2)."""

from __future__ import annotations

from typing import Any

Data = bytes | bytearray | memoryview | str


def as_bytes(data: Any) -> bytes:
    """Wire data: bytes as they are, str as UTF-8, bytearray/memoryview copied (the caller may reuse them)."""
    kind = type(data)
    if kind is bytes:
        return data
    if kind is str:
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode()
    raise TypeError(f"data must be bytes, bytearray, memoryview or str, not {kind.__name__}")


def check_session(fd: Any) -> int:
    """A session id given by user code: a positive int (R3, §18.2)."""
    if type(fd) is int and fd > 0:
        return fd
    if isinstance(fd, bool) or not isinstance(fd, int):
        raise TypeError(f"fd must be an int session id, not {type(fd).__name__}")
    raise ValueError(f"fd must be a positive session id, got {fd}")
