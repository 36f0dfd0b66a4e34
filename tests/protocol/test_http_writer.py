"""The HTTP writer half: status lines, Date cache, header encoding, chunks, error answers."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from threadswoole.protocol.http import writer

pytestmark = pytest.mark.timeout(30)


def test_status_lines_cover_httpstatus() -> None:
    for status in HTTPStatus:
        assert writer.status_line(status.value) == f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode()
        assert writer.is_known_status(status.value)
    assert not writer.is_known_status(999)
    assert writer.status_line(200, "Fine") == b"HTTP/1.1 200 Fine\r\n"
    assert writer.status_line(599) == b"HTTP/1.1 599 Unknown\r\n"
    assert writer.reason_phrase(404) == "Not Found"


def test_date_is_imf_fixdate_and_cached_per_second() -> None:
    assert writer.date_value(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert writer.date_value(784111777.9) is writer.date_value(784111777.1)  # same second: the cached str
    assert writer.date_bytes(784111777.5) == b"Sun, 06 Nov 1994 08:49:37 GMT"
    assert writer.date_value(784111778) == "Sun, 06 Nov 1994 08:49:38 GMT"
    assert writer.http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"


def test_plain_response_is_the_default_head_then_the_body() -> None:
    now = 1_700_000_000.25

    def expected(connection: str, length: int) -> bytes:
        return (f"HTTP/1.1 200 OK\r\nServer: {writer.SERVER_NAME}\r\nDate: {writer.http_date(now)}\r\n"
                f"Connection: {connection}\r\nContent-Type: text/html\r\nContent-Length: {length}\r\n\r\n").encode()

    assert writer.plain_response(now, True, 13, b"Hello, World!") == expected("keep-alive", 13) + b"Hello, World!"
    assert writer.plain_response(now + 0.5, True, 13, b"Hello, World!") == expected("keep-alive", 13) + b"Hello, World!"
    assert writer.plain_response(now, False, 13, b"Hello, World!") == expected("close", 13) + b"Hello, World!"
    assert writer.plain_response(now, True, 5) == expected("keep-alive", 5)  # HEAD: the length, no body
    # more lengths than are kept in one second: still right (the kept heads are dropped, rebuilt)
    for length in range(writer.PLAIN_LENGTHS_KEPT * 2):
        assert writer.plain_response(now, True, length, b"x" * length) == expected("keep-alive", length) + b"x" * length
    later = writer.plain_response(now + 1, True, 13, b"Hello, World!")
    assert writer.http_date(now + 1).encode() in later and writer.http_date(now).encode() not in later


def test_encode_headers_latin1_with_utf8_fallback() -> None:
    assert writer.encode_headers([("A", "b"), ("C", "é")]) == b"A: b\r\nC: \xe9\r\n"
    assert writer.encode_headers([("A", "€")]) == "A: €\r\n".encode("utf-8")
    assert writer.response_head(204, [("X", "1")]) == b"HTTP/1.1 204 No Content\r\nX: 1\r\n\r\n"


def test_chunk_framing() -> None:
    assert writer.chunk(b"hello") == b"5\r\nhello\r\n"
    assert writer.chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert writer.LAST_CHUNK == b"0\r\n\r\n"
    assert writer.CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.mark.parametrize("status", [400, 413, 501, 505])
def test_error_response_is_complete_and_closes(status: int) -> None:
    response = writer.error_response(status)
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == writer.status_line(status).rstrip(b"\r\n")
    assert b"Connection: close" in lines
    assert f"Content-Length: {len(body)}".encode() in lines
    assert body == f"{status} {HTTPStatus(status).phrase}\n".encode()
    assert writer.error_response(status) is response  # built once
