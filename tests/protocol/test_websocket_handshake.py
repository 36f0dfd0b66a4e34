"""The opening handshake: request validation, accept key, subprotocol, extensions, 101 / 400."""

from __future__ import annotations

import pytest

from threadswoole.protocol.websocket import DeflateParameters
from threadswoole.protocol.websocket.handshake import (
    HandshakeError,
    accept_key,
    check_request,
    check_response,
    choose_subprotocol,
    client_request,
    is_valid_key,
    response_400,
    server_handshake,
)

pytestmark = pytest.mark.timeout(30)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3


def request(**changes: str | None) -> dict[str, str]:
    headers = {"host": "example.com", "upgrade": "websocket", "connection": "Upgrade",
               "sec-websocket-key": KEY, "sec-websocket-version": "13"}
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return headers


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def test_accept_key_of_the_rfc_example() -> None:
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("key,valid", [
    (KEY, True), ("AQIDBAUGBwgJCgsMDQ4PEA==", True),
    ("dGhlIHNhbXBsZSBub25jZQ=", False), ("dGhlIHNhbXBsZSBub25jZQ", False),
    ("dGhlIHNhbXBsZSBub25jZR==", False),  # last char not in [AQgw]
    ("dGhlIHNhbXBsZSBub25j ZQ==", False), ("", False), (None, False),
    ("dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ==", False), ("dGhlIHNhbXBsZSBub25jZQ==, " + KEY, False),
])
def test_key_validation(key: str | None, valid: bool) -> None:
    assert is_valid_key(key) is valid


def test_a_good_request_gets_101() -> None:
    shake = server_handshake("GET", request(connection="keep-alive, Upgrade", upgrade="WebSocket"))
    status, headers, body = parse_response(shake.response)
    assert status == 101 and body == b""
    assert headers["upgrade"] == "websocket" and headers["connection"] == "Upgrade"
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert headers["sec-websocket-version"] == "13"
    assert "sec-websocket-protocol" not in headers and "sec-websocket-extensions" not in headers
    assert shake.deflate is None and shake.subprotocol is None
    assert check_response(status, headers, KEY) is None


@pytest.mark.parametrize("method,version,changes,needle", [
    ("POST", "1.1", {}, "GET"),
    ("GET", "1.0", {}, "HTTP/1.1"),
    ("GET", "1.1", {"host": None}, "Host"),
    ("GET", "1.1", {"upgrade": None}, "Upgrade"),
    ("GET", "1.1", {"upgrade": "h2c"}, "Upgrade"),
    ("GET", "1.1", {"connection": "keep-alive"}, "Connection"),
    ("GET", "1.1", {"sec_websocket_version": "8"}, "Version"),
    ("GET", "1.1", {"sec_websocket_version": None}, "Version"),
    ("GET", "1.1", {"sec_websocket_key": None}, "Key"),
    ("GET", "1.1", {"sec_websocket_key": "tooshort=="}, "Key"),
    ("GET", "1.1", {"sec_websocket_key": "!!!!!!!!!!!!!!!!!!!!!A=="}, "Key"),
])
def test_bad_requests_get_400(method: str, version: str, changes: dict[str, str | None], needle: str) -> None:
    with pytest.raises(HandshakeError) as info:
        server_handshake(method, request(**changes), http_version=version)
    assert needle in info.value.detail
    status, headers, body = parse_response(info.value.response)
    assert status == 400 and headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body) and body.decode() == info.value.detail
    if needle == "Version":
        assert headers["sec-websocket-version"] == "13"  # RFC 6455 §4.4


def test_check_request_returns_the_key() -> None:
    assert check_request("GET", request(), "1.1") == KEY
    assert check_request("GET", request(), "2.0") == KEY


@pytest.mark.parametrize("configured,offered,chosen", [
    ("chat", "chat", "chat"),
    ("chat", "superchat, chat", "chat"),
    ("chat", None, None),  # echo only when the request carried one (api.md §9)
    ("chat", "other", None),  # never name a protocol the client did not ask for
    (None, "chat", None),
    ("", "chat", None),
    ("v2, v1", "v1, v2", "v2"),  # our preference order
    ("Chat", "chat", None),  # case-sensitive tokens
])
def test_subprotocol_choice(configured: str | None, offered: str | None, chosen: str | None) -> None:
    assert choose_subprotocol(configured, offered) == chosen
    headers = request(sec_websocket_protocol=offered) if offered else request()
    shake = server_handshake("GET", headers, subprotocol=configured)
    _, response_headers, _ = parse_response(shake.response)
    assert response_headers.get("sec-websocket-protocol") == chosen and shake.subprotocol == chosen


def test_compression_is_negotiated_only_when_enabled_and_offered() -> None:
    offer = "permessage-deflate; client_max_window_bits"
    shake = server_handshake("GET", request(sec_websocket_extensions=offer), compression=True)
    status, headers, _ = parse_response(shake.response)
    assert headers["sec-websocket-extensions"] == "permessage-deflate"
    assert shake.deflate == DeflateParameters()
    assert check_response(status, headers, KEY) == DeflateParameters()
    assert server_handshake("GET", request(sec_websocket_extensions=offer)).deflate is None
    assert server_handshake("GET", request(), compression=True).deflate is None
    swoole = server_handshake("GET", request(sec_websocket_extensions=offer), compression=True, context_takeover=False)
    assert "server_no_context_takeover; client_no_context_takeover" in swoole.response.decode()


def test_extra_headers_are_added_and_checked() -> None:
    shake = server_handshake("GET", request(), extra_headers=[("Server", "threadswoole")])
    assert b"\r\nServer: threadswoole\r\n" in shake.response
    with pytest.raises(ValueError):
        server_handshake("GET", request(), extra_headers=[("X", "a\r\nInjected: 1")])
    assert response_400("nope").endswith(b"\r\n\r\nnope")


def test_client_request_round_trip() -> None:
    raw, key = client_request("127.0.0.1:9501", "/chat", subprotocols=["a", "b"],
                              extensions="permessage-deflate")
    head = raw.decode().split("\r\n")
    assert head[0] == "GET /chat HTTP/1.1" and raw.endswith(b"\r\n\r\n")
    headers = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in head[1:] if line}
    shake = server_handshake("GET", headers, subprotocol="b", compression=True)
    status, response_headers, _ = parse_response(shake.response)
    assert shake.subprotocol == "b"
    assert check_response(status, response_headers, key) == DeflateParameters()
    with pytest.raises(ValueError):
        check_response(status, response_headers, KEY)  # wrong key -> wrong accept
    with pytest.raises(ValueError):
        check_response(400, response_headers, key)


def test_settings_helpers() -> None:
    from threadswoole.protocol.websocket import MessageEncoder, accept_handshake, make_codec

    settings = {"websocket_subprotocol": "chat", "websocket_compression": True, "package_max_length": 1234,
                "open_websocket_ping_frame": True, "open_websocket_close_frame": True}
    headers = request(sec_websocket_protocol="chat", sec_websocket_extensions="permessage-deflate")
    shake = accept_handshake("GET", headers, settings)
    assert shake.subprotocol == "chat" and shake.deflate == DeflateParameters()
    codec = make_codec(settings, shake.deflate)
    assert (codec.max_message_size, codec.deflate, codec.deliver_ping, codec.deliver_pong, codec.deliver_close) == (
        1234, shake.deflate, True, False, True)
    assert MessageEncoder(shake.deflate).compressing
    plain = make_codec({})
    assert plain.max_message_size == 2 * 1024 * 1024 and plain.deflate is None and not plain.deliver_ping
    assert accept_handshake("GET", headers, {}).deflate is None
