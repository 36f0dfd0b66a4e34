"""`Port`: one listening socket with its own settings and callbacks (contract §5.8).

The constructor's listener is `server.ports[0]`; `add_listener` adds more. A port's
effective settings are the per-listener defaults, then (for the main port only) the
server's `set()` values, then the port's own `set()` values. At `start()` the port resolves
everything the reactor needs per connection (framer factory, callbacks, limits, TLS) into
plain attributes, so the hot path never looks settings up.
"""

from __future__ import annotations

import socket
import types
from typing import TYPE_CHECKING, Any, Callable, Mapping

from threadswoole._aliases import alias
from threadswoole.connections.application import ApplicationProtocol
from threadswoole.connections.listener import bound_port, family_type, open_listener, split_type
from threadswoole.errors import StateError
from threadswoole.server import protocols
from threadswoole.server import settings as schema
from threadswoole.server.events import PORT_EVENTS, CallbackTable

if TYPE_CHECKING:
    from threadswoole.server import Server


class Port:
    """A listener: `host`, `port` (the OS port when 0 was asked), `type`, `sock` (its fileno)."""

    getSocket = alias("get_socket")

    def __init__(self, server: "Server", host: str, port: int, sock_type: int, index: int, *, require_init: Callable[[str], None], server_callbacks: CallbackTable) -> None:
        kind, ssl = split_type(sock_type)
        self._server = server
        self._require_init = require_init  # the server's phase check (set/on only before start)
        self._server_callbacks = server_callbacks  # fallbacks for events this port did not set
        self.kind = kind
        self.ssl = ssl
        self.family, self.socktype = family_type(kind)
        self._socket = open_listener(host, port, kind)
        self.host = host
        self.port = bound_port(self._socket)
        self.type = sock_type
        self.sock = self._socket.fileno()
        self.index = index
        self._own: dict[str, Any] = {}
        self._callbacks = CallbackTable(PORT_EVENTS)
        # resolved at start()
        self.protocol: ApplicationProtocol = ApplicationProtocol()  # raw, until prepare()
        self.tcp_nodelay = False
        self.delay_receive = False
        self.tls_context: Any = None
        self.high_watermark = 0
        self.low_watermark = 0
        self.heartbeat_idle_time = 0.0
        self.on_connect: Callable[..., Any] | None = None
        self.on_receive: Callable[..., Any] | None = None
        self.on_close: Callable[..., Any] | None = None
        self.on_packet: Callable[..., Any] | None = None
        self.on_buffer_full: Callable[..., Any] | None = None
        self.on_buffer_empty: Callable[..., Any] | None = None

    def __repr__(self) -> str:
        return f"<Port {self.host}:{self.port} type={self.type}>"

    @property
    def is_stream(self) -> bool:
        return self.socktype == socket.SOCK_STREAM

    @property
    def is_tcp(self) -> bool:
        return self.family in (socket.AF_INET, socket.AF_INET6) and self.is_stream

    @property
    def listening_socket(self) -> socket.socket:
        return self._socket

    # -- configuration (before start) -----------------------------------------------------
    def set(self, settings: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        """Per-port settings (framing, TLS, buffers, heartbeat idle time); init-only."""
        self._require_init("Port.set")
        self._own.update(schema.validate(settings, kwargs, port=True))

    def on(self, event: str, callback: Callable[..., Any] | None = None) -> Any:
        """Register a connection event for this port only; init-only. Without a callback, a decorator."""
        self._require_init("Port.on")
        if callback is None:

            def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
                self._callbacks.register(event, fn)
                return fn

            return decorator
        self._callbacks.register(event, callback)
        return True

    def get_callback(self, event: str) -> Callable[..., Any] | None:
        return self._callbacks.get(event)

    def get_socket(self) -> socket.socket:
        """The real listening socket (not a dup), so setsockopt takes effect."""
        return self._socket

    @property
    def setting(self) -> Mapping[str, Any]:
        return types.MappingProxyType(self.effective_settings())

    def effective_settings(self) -> dict[str, Any]:
        merged = schema.port_defaults()
        if self.index > 0:
            # §5.8: a port added to an HTTP or WebSocket server speaks its protocol until
            # its own set() says otherwise (a plain Server passes nothing on)
            merged.update(self._server.inherited_port_settings())
        if self.index == 0:
            merged.update({k: v for k, v in self._server.setting.items() if k in schema.PORT_KEYS})
        merged.update(self._own)
        return merged

    @property
    def connections(self) -> Any:
        from threadswoole.server.connection_iterator import ConnectionIterator

        return ConnectionIterator(self._server, port_index=self.index)

    # -- resolution at start() ------------------------------------------------------------
    def callback(self, name: str) -> Callable[..., Any] | None:
        return self._callbacks.lookup(name) or self._server_callbacks.lookup(name)

    def prepare(self) -> None:
        """Freeze settings and callbacks into attributes; called once by start()."""
        effective = self.effective_settings()
        if self.is_stream:
            self.protocol = protocols.for_listener(effective, self._server)
            self.tcp_nodelay = bool(effective["open_tcp_nodelay"])
            self.delay_receive = bool(effective["enable_delay_receive"])
            self.high_watermark = int(effective["buffer_high_watermark"])
            self.low_watermark = int(effective["buffer_low_watermark"])
            self.heartbeat_idle_time = float(effective["heartbeat_idle_time"] or 0)
            backlog = int(effective["backlog"])
            if self._server.setting.get("enable_reuse_port") and self.is_tcp:
                self.reopen(reuse_port=True)
            try:
                self._socket.listen(backlog)
                if effective["tcp_defer_accept"] and self.is_tcp:
                    self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, int(effective["tcp_defer_accept"]))
            except OSError as exc:
                raise StateError(f"cannot configure listener {self.host}:{self.port}: {exc}") from exc
            if self.ssl:
                from threadswoole.connections.tls import make_server_context

                self.tls_context = make_server_context(effective)
        for name in ("connect", "receive", "close", "packet", "buffer_full", "buffer_empty"):
            setattr(self, "on_" + name, self.callback(name))

    def reopen(self, *, reuse_port: bool) -> None:
        """Bind a fresh listening socket on the same address (SO_REUSEPORT only groups sockets
        that all set it before bind(); BASE workers each take one with enable_reuse_port).
        The old socket holds the port without SO_REUSEPORT, so it is closed first."""
        backlog = int(self.effective_settings()["backlog"])
        self._socket.close()
        fresh = open_listener(self.host, self.port, self.kind, backlog=backlog, reuse_port=reuse_port)
        self._socket = fresh
        self.sock = fresh.fileno()

    def close(self) -> None:
        try:
            self._socket.close()
        except OSError:
            pass
        if self.family == socket.AF_UNIX and self.is_stream:
            import os

            try:
                os.unlink(self.host)
            except OSError:
                pass
