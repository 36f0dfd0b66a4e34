"""`threadswoole.http.Server`: Swoole's HTTP server, a `threadswoole.Server` whose main port
speaks HTTP/1.1 (contract §8): `on("request", fn(request, response))`.

Everything else is the base server's (modes, workers, reload, TLS, timers, tasks): the HTTP
parsing runs in the reactor that owns each connection, the request callback in the worker
(inline in BASE and THREAD, in a worker process in PROCESS mode).
"""

from __future__ import annotations

from typing import Any, Callable

from threadswoole.constants import SWOOLE_BASE, SWOOLE_SOCK_TCP
from threadswoole.server import Server as BaseServer
from threadswoole.server import settings as schema
from threadswoole.server.events import normalise

# The settings an added port inherits from an HTTP server (§5.8): its protocol and options.
HTTP_PORT_KEYS = frozenset({
    "open_http_protocol", "document_root", "enable_static_handler", "static_handler_locations",
    "http_index_files", "http_autoindex", "upload_tmp_dir", "upload_max_filesize", "http_parse_post",
    "http_parse_cookie", "http_parse_files", "http_compression", "http_compression_level",
    "compression_min_length", "package_max_length",
})
REFUSED_EVENTS = frozenset({"receive", "connect"})  # seed 003: the HTTP server does not take them


class Server(BaseServer):
    """An HTTP/1.1 server; see the README's HTTP section for an example per mode."""

    protocol_flag = "open_http_protocol"
    port_keys = HTTP_PORT_KEYS

    def __init__(self, host: str = "0.0.0.0", port: int = 0, mode: int = SWOOLE_BASE, sock_type: int = SWOOLE_SOCK_TCP) -> None:
        super().__init__(host, port, mode, sock_type)
        self.ports[0].set({self.protocol_flag: True})

    def on(self, event: str, callback: Callable[..., Any] | None = None) -> Any:
        """As Server.on; `receive` and `connect` raise ValueError (an HTTP server has none:
        register them on a Port whose protocol is switched off, `port.set(open_http_protocol=False)`)."""
        name = normalise(event)
        if name in REFUSED_EVENTS:
            raise ValueError(f"{type(self).__module__}.Server does not take {name!r} callbacks; use 'request' (or a Port without HTTP)")
        return super().on(event, callback)

    def inherited_port_settings(self) -> dict[str, Any]:
        inherited = {key: value for key, value in self.setting.items() if key in self.port_keys and key in schema.PORT_KEYS}
        inherited[self.protocol_flag] = True
        return inherited
