"""What a Response needs from the server: a way to send bytes and files and to close.

The server implements `Transport` for each request's connection: inline in BASE and THREAD
mode (the worker owns the socket), over IPC to the owning reactor in PROCESS mode, or from a
task worker for ``Response.create(fd)``. The HTTP code never touches a socket itself.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Transport"]


@runtime_checkable
class Transport(Protocol):
    """The connection a Response writes to. Methods return False (having recorded the error
    code with `threadswoole._context.set_error`) when the connection is gone or full."""

    def send(self, data: bytes) -> bool:
        """Queue `data` for the peer, in order with everything sent before."""
        ...

    def sendfile(self, path: str, offset: int, length: int) -> bool:
        """Queue `length` bytes of the file at `path` from `offset` (the caller checked both)."""
        ...

    def close(self) -> bool:
        """Close the connection once everything queued has been written."""
        ...
