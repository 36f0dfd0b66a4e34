"""Which application protocol a listener speaks, from its effective settings.

Raw streams (with or without framing) are built here; HTTP, WebSocket and RESP come from their
own packages, imported when a listener asks for them (those packages import the server layer
for their Server subclasses, so they are not imported at module level here).
"""

from __future__ import annotations

from typing import Any, Mapping

from threadswoole.connections.application import ApplicationProtocol


# The callback a listener of each protocol cannot run without (contract §5.4).
REQUIRED_CALLBACK = {"raw": "receive", "http": "request", "websocket": "message", "redis": None}


def name_for(settings: Mapping[str, Any]) -> str:
    """The protocol a stream listener with these effective settings speaks."""
    if settings.get("open_websocket_protocol"):
        return "websocket"
    if settings.get("open_http_protocol"):
        return "http"
    if settings.get("open_redis_protocol"):
        return "redis"
    return "raw"


def for_listener(settings: Mapping[str, Any], server: Any = None) -> ApplicationProtocol:
    """The protocol of a stream listener of `server` whose effective settings are `settings`."""
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
