"""The opening handshake (RFC 6455 §4), pure: request headers in, response bytes out.

Server side: `server_handshake` validates an Upgrade request, computes Sec-WebSocket-Accept,
chooses the subprotocol and negotiates permessage-deflate, and returns a `Handshake` with the
``101 Switching Protocols`` bytes and the parameters for `WebSocketCodec`/`MessageEncoder`; a
bad request raises `HandshakeError` whose ``response`` is the 400 answer to send before closing.

Headers are a mapping with lower-case names, repeated headers joined with ", " (how
``http.Request.header`` holds them). Client side (tests, benchmarks, a client):
`client_request` and `check_response`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from threadswoole.protocol.websocket.deflate import DeflateParameters, accept_response, negotiate

__all__ = [
    "GUID", "KEY_PATTERN", "HandshakeError", "Handshake", "accept_key", "is_valid_key", "tokens",
    "check_request", "choose_subprotocol", "response_101", "response_400", "server_handshake",
    "client_key", "client_request", "check_response",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY_PATTERN = re.compile(r"[+/0-9A-Za-z]{21}[AQgw]==")  # seed 003: base64 of exactly 16 bytes


class HandshakeError(ValueError):
    """An Upgrade request that cannot be accepted; ``response`` is the full 400 response."""

    def __init__(self, detail: str, response: bytes) -> None:
        super().__init__(detail)
        self.detail = detail
        self.response = response


@dataclass(frozen=True)
class Handshake:
    """An accepted handshake: the 101 response to send and what the connection negotiated."""

    response: bytes
    accept: str
    subprotocol: str | None = None
    deflate: DeflateParameters | None = None
    headers: tuple[tuple[str, str], ...] = ()  # the 101's headers, in order


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(sha1(key + GUID))."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def is_valid_key(key: str | None) -> bool:
    """True if `key` is base64 of 16 bytes (the seed's regex plus a real decode)."""
    if not key or not KEY_PATTERN.fullmatch(key):
        return False
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def tokens(value: str | None) -> list[str]:
    """The comma-separated tokens of a header value, stripped (case kept)."""
    if not value:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]


def check_request(method: str, headers: Mapping[str, str], http_version: str = "1.1") -> str:
    """Validate an opening handshake request (RFC 6455 §4.2.1); return its Sec-WebSocket-Key.

    Raises HandshakeError (with the 400 response) naming the first problem found.
    """
    def fail(detail: str, **extra: str) -> HandshakeError:
        return HandshakeError(detail, response_400(detail, extra_headers=extra.items()))

    if method != "GET":
        raise fail(f"WebSocket handshake needs GET, not {method}")
    try:
        major, minor = (int(part) for part in http_version.split("."))
    except ValueError:
        raise fail(f"bad HTTP version {http_version!r}") from None
    if (major, minor) < (1, 1):
        raise fail(f"WebSocket handshake needs HTTP/1.1 or later, not HTTP/{http_version}")
    if not headers.get("host"):
        raise fail("missing Host header")
    if "websocket" not in (t.lower() for t in tokens(headers.get("upgrade"))):
        raise fail("Upgrade header does not name websocket")
    if "upgrade" not in (t.lower() for t in tokens(headers.get("connection"))):
        raise fail("Connection header does not name Upgrade")
    version = (headers.get("sec-websocket-version") or "").strip()
    if version != "13":
        # §4.4: name the versions we speak, so the client can retry with one of them.
        raise fail(f"unsupported Sec-WebSocket-Version {version or '(missing)'!r}", **{"Sec-WebSocket-Version": "13"})
    key = (headers.get("sec-websocket-key") or "").strip()
    if not is_valid_key(key):
        raise fail("Sec-WebSocket-Key is not base64 of 16 bytes")
    return key


def choose_subprotocol(configured: str | None, offered: str | None) -> str | None:
    """The subprotocol to answer: the first of `configured` (websocket_subprotocol, one name or
    a comma-separated preference list) that the client offered, else None.

    Only a protocol the request carried is ever sent back (api.md §9): a browser fails the
    connection when the response names a protocol it did not ask for.
    """
    wanted = tokens(configured)
    offered_set = set(tokens(offered))
    for name in wanted:
        if name in offered_set:
            return name
    return None


def response_101(
    key: str,
    subprotocol: str | None = None,
    extensions: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> tuple[bytes, list[tuple[str, str]]]:
    """The ``101 Switching Protocols`` response bytes and its header list."""
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
        ("Sec-WebSocket-Version", "13"),
    ]
    if subprotocol:
        headers.append(("Sec-WebSocket-Protocol", subprotocol))
    if extensions:
        headers.append(("Sec-WebSocket-Extensions", extensions))
    headers.extend(_checked_headers(extra_headers))
    lines = ["HTTP/1.1 101 Switching Protocols"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), headers


def response_400(detail: str = "Bad Request", extra_headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A ``400 Bad Request`` answer (plain text body `detail`) for a failed handshake."""
    body = detail.encode("utf-8")
    lines = ["HTTP/1.1 400 Bad Request", "Content-Type: text/plain; charset=utf-8",
             f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in _checked_headers(extra_headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _checked_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    result = []
    for name, value in headers:
        if any(c in str(name) + str(value) for c in "\r\n\0"):
            raise ValueError(f"header {name!r} contains CR, LF or NUL")
        result.append((str(name), str(value)))
    return result


def server_handshake(
    method: str,
    headers: Mapping[str, str],
    *,
    http_version: str = "1.1",
    subprotocol: str | None = None,
    compression: bool = False,
    context_takeover: bool = True,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> Handshake:
    """Accept an Upgrade request or raise HandshakeError (see the module docstring).

    `subprotocol` is the websocket_subprotocol setting, `compression` websocket_compression
    (permessage-deflate is then negotiated when the client offers it; `context_takeover=False`
    makes both sides reset after each message, as Swoole answers).
    """
    key = check_request(method, headers, http_version)
    chosen = choose_subprotocol(subprotocol, headers.get("sec-websocket-protocol"))
    deflate = negotiate(headers.get("sec-websocket-extensions"), context_takeover) if compression else None
    response, response_headers = response_101(
        key, chosen, deflate.response_value() if deflate is not None else None, extra_headers
    )
    return Handshake(response, accept_key(key), chosen, deflate, tuple(response_headers))


# -- client side ----------------------------------------------------------------------------
def client_key() -> str:
    """A fresh Sec-WebSocket-Key (16 random bytes, base64)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def client_request(
    host: str,
    path: str = "/",
    key: str | None = None,
    subprotocols: Iterable[str] = (),
    extensions: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> tuple[bytes, str]:
    """An opening handshake request and the key it carries (to check the answer with)."""
    key = key or client_key()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    protocols = list(subprotocols)
    if protocols:
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(protocols)}")
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    lines += [f"{name}: {value}" for name, value in _checked_headers(extra_headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), key


def check_response(status: int, headers: Mapping[str, str], key: str) -> DeflateParameters | None:
    """Client side: validate a handshake response; return the accepted deflate parameters.

    Raises ValueError when the server did not switch, or answered a wrong accept value or an
    extension answer a client must reject.
    """
    if status != 101:
        raise ValueError(f"server answered {status}, not 101")
    if "websocket" not in (t.lower() for t in tokens(headers.get("upgrade"))):
        raise ValueError("response Upgrade header does not name websocket")
    if "upgrade" not in (t.lower() for t in tokens(headers.get("connection"))):
        raise ValueError("response Connection header does not name Upgrade")
    if (headers.get("sec-websocket-accept") or "").strip() != accept_key(key):
        raise ValueError("wrong Sec-WebSocket-Accept")
    return accept_response(headers.get("sec-websocket-extensions"))
