"""Which application protocol a listener speaks, from its effective settings.

Raw streams (with or without framing) are built here; HTTP, WebSocket and RESP come from their
own packages, imported when a listener asks for them (those packages import the server layer
for their Server subclasses, so they are not imported at module level here). A listener whose
`application_protocol` setting is a factory speaks what that factory builds (the `serve` CLI's
WSGI / ASGI / metrics listeners): the server layer never imports the package it comes from.
"""

from __future__ import annotations

from typing import Any, Mapping

from threadswoole.connections.application import ApplicationProtocol


# The callback a listener of each protocol cannot run without (contract §5.4).
# ("custom": the application_protocol's own handler needs no callback of the user.)
REQUIRED_CALLBACK = {"raw": "receive", "http": "request", "websocket": "message", "redis": None, "custom": None}


def name_for(settings: Mapping[str, Any]) -> str:
    """The protocol a stream listener with these effective settings speaks."""
    if settings.get("application_protocol") is not None:
        return "custom"
    if settings.get("open_websocket_protocol"):
        return "websocket"
    if settings.get("open_http_protocol"):
        return "http"
    if settings.get("open_redis_protocol"):
        return "redis"
    return "raw"


def for_listener(settings: Mapping[str, Any], server: Any = None) -> ApplicationProtocol:
    """The protocol of a stream listener of `server` whose effective settings are `settings`."""
    factory = settings.get("application_protocol")
    if factory is not None:
        protocol = factory(settings)
        if not isinstance(protocol, ApplicationProtocol):
            raise TypeError(f"application_protocol must build an ApplicationProtocol, not {type(protocol).__name__}")
        return protocol
    if settings.get("open_websocket_protocol"):
        from threadswoole.websocket.protocol import WebSocketProtocol

        return WebSocketProtocol(settings)
    if settings.get("open_http_protocol"):
        from threadswoole.http.protocol import HttpProtocol

        return HttpProtocol(settings)
    if settings.get("open_redis_protocol"):
        from threadswoole.redis.protocol import RedisProtocol

        return RedisProtocol(settings, server)  # answered by the server's command table
    return ApplicationProtocol(settings)
