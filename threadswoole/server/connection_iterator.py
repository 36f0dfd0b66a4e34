"""`server.connections` and `port.connections`: live session ids, iterable, with len()."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from threadswoole._context import current

if TYPE_CHECKING:
    from threadswoole.server import Server


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
