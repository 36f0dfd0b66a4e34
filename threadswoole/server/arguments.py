"""Small helpers shared by the public API: argument checks, data conversion, the connection iterator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from threadswoole._context import current

if TYPE_CHECKING:
    from threadswoole.server import Server

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


class ConnectionIterator:
    """`server.connections`: iterate live session ids ascending, `len()` works, indexing does not."""

    def __init__(self, server: "Server", port_index: int | None = None) -> None:
        self._server = server
        self._port_index = port_index

    def _sessions(self) -> list[int]:
        router = current().router
        if router is None:
            router = self._server._master_router()
        return router.client_list(self._port_index)

    def __iter__(self) -> Iterator[int]:
        return iter(self._sessions())

    def __len__(self) -> int:
        return len(self._sessions())

    def __contains__(self, fd: object) -> bool:
        return fd in self._sessions()

    def __getitem__(self, _index: Any) -> Any:
        raise TypeError("server.connections is an iterator, not a list: iterate it or use get_client_list()")

    def __repr__(self) -> str:
        return f"<ConnectionIterator of {len(self)} connections>"
