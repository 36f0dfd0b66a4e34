"""A Response's transport in a running server: the calling worker's router, for one session.

The router already knows where the session lives (this worker's own connection in BASE and
THREAD, a reactor thread of the master in PROCESS mode, another worker's when it is not ours),
so the HTTP code writes through it and never touches a socket. `Response.create(fd)` builds
one for any live HTTP connection, from any worker (task workers included).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from threadswoole._context import current, set_error
from threadswoole.errors import ErrorCode
from threadswoole.state import shared as layout

HTTP_PROTOCOLS = frozenset({"http", "websocket"})


class SessionTransport:
    """`threadswoole.http.Transport` over a worker's router, for one session; `send_function`
    is the worker's Server.send fast path (one frame to the socket for a connection of ours).

    `send(data)` is that function with the session bound (a `functools.partial`, built once
    per connection): no Python frame of its own between Response.end and the socket, about
    300 instructions less per response than a method (callgrind, cghttp.sh)."""

    __slots__ = ("router", "session", "send_function", "send")

    def __init__(self, router: Any, session: int, send_function: Any = None) -> None:
        self.router = router
        self.session = session
        self.send_function = send_function or current().send_function or _router_send(router)
        self.send = partial(self.send_function, session)  # send(data: bytes) -> bool

    def sendfile(self, path: str, offset: int, length: int) -> bool:
        return self.router.sendfile(self.session, path, offset, length)

    def close(self) -> bool:
        return self.router.close(self.session, False)


def _router_send(router: Any) -> Any:
    return lambda session, data, server_socket=-1: router.send(session, data)


# The facts of a detached request, in its connection record (C_HTTP_DETACHED), so that
# Response.create(fd) in any worker answers it as the request asked: a HEAD gets no body, an
# HTTP/1.0 or `Connection: close` request a close.
DETACHED, HEAD, HTTP_1_0, CLOSE = 1, 2, 4, 8


def remember_detached(fd: int, method: str, version: str, keep_alive: bool) -> None:
    """Response.detach(): note how the request must be answered, for Response.create."""
    router = current().router
    state = getattr(router, "state", None)
    if state is None or not state.alive(fd):
        return
    state.q[state.record_base(fd) + layout.C_HTTP_DETACHED] = (
        DETACHED | (HEAD if method == "HEAD" else 0) | (HTTP_1_0 if version == "1.0" else 0) | (0 if keep_alive else CLOSE))


def detached_request(state: Any, fd: int) -> dict[str, Any]:
    """The Response constructor's method/version/keep_alive for a detached request of `fd`
    (the defaults, GET 1.1 keep-alive, when none was detached); the note is used up."""
    word = state.record_base(fd) + layout.C_HTTP_DETACHED
    facts = state.q[word]
    if not facts:
        return {}
    state.q[word] = 0
    return {"method": "HEAD" if facts & HEAD else "GET", "version": "1.0" if facts & HTTP_1_0 else "1.1", "keep_alive": not facts & CLOSE}


def transport_for(fd: int) -> tuple[SessionTransport, Any] | bool:
    """The transport of a live HTTP connection and its listener, for the calling worker;
    False (last error 1005) when `fd` is not one (Response.create, contract §8)."""
    ctx = current()
    router, server = ctx.router, ctx.server
    if router is None or server is None:
        return set_error(ErrorCode.SESSION_NOT_EXIST)
    state = router.state
    if isinstance(fd, bool) or not isinstance(fd, int) or fd <= 0 or not state.alive(fd):
        return set_error(ErrorCode.SESSION_NOT_EXIST)
    port_index = state.q[state.record_base(fd) + layout.C_PORT_INDEX]
    ports = server.ports
    if not 0 <= port_index < len(ports) or ports[port_index].protocol.name not in HTTP_PROTOCOLS:
        return set_error(ErrorCode.SESSION_NOT_EXIST)
    return SessionTransport(router, fd), ports[port_index]
