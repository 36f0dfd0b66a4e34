"""Response against a recording transport: every rule of api.md §8 and checklist items 44/47."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import pytest
from http_fakes import RecordingTransport, parse_response

from threadswoole.errors import ErrorCode, StateError, get_last_error
from threadswoole.http import HttpOptions, Response

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()


def make(transport: RecordingTransport, **kw) -> Response:
    return Response(transport, 7, **kw)


# -- end ---------------------------------------------------------------------------------------
def test_handler_that_does_nothing_gets_200_empty(transport: RecordingTransport) -> None:
    response = make(transport)
    assert response.finish_if_open() is True
    parsed = transport.response()
    assert (parsed.status, parsed.body, parsed.header("content-length")) == (200, b"", "0")
    assert parsed.header("content-type") == "text/html"
    assert parsed.header("server") == "threadswoole" and parsed.header("date").endswith(" GMT")
    assert parsed.header("connection") == "keep-alive" and not transport.closed
    assert response.finish_if_open() is False  # already ended: auto-end does nothing


def test_end_once_second_returns_false(transport: RecordingTransport) -> None:
    response = make(transport)
    assert response.end(b"hello") is True
    assert response.end(b"again") is False
    assert get_last_error() == ErrorCode.HTTP_CONTEXT_UNAVAILABLE
    assert response.write(b"x") is False
    assert transport.response().body == b"hello"
    assert len([c for c in transport.calls if c[0] == "send"]) == 1  # head and body in one send


def test_end_accepts_str_bytearray_memoryview(transport: RecordingTransport) -> None:
    for data, wire in (("héllo", "héllo".encode()), (bytearray(b"ab"), b"ab"), (memoryview(b"cd"), b"cd")):
        t = RecordingTransport()
        Response(t).end(data)
        assert t.response().body == wire
    with pytest.raises(TypeError):
        make(transport).end(123)  # type: ignore[arg-type]


def test_not_keep_alive_closes_after_response(transport: RecordingTransport) -> None:
    make(transport, keep_alive=False).end(b"bye")
    assert transport.response().header("connection") == "close"
    assert transport.calls[-1] == ("close",)
    # the application asking for close
    t = RecordingTransport()
    response = make(t)
    response.header("Connection", "close")
    response.end(b"x")
    assert t.closed and t.response().header("connection") == "close"


def test_end_over_buffer_output_size_is_1202(transport: RecordingTransport) -> None:
    response = make(transport, options=HttpOptions(buffer_output_size=10))
    assert response.end(b"x" * 11) is False
    assert get_last_error() == ErrorCode.DATA_LENGTH_TOO_LARGE
    assert transport.calls == [] and not response.ended
    assert response.end(b"x" * 10) is True


# -- write -------------------------------------------------------------------------------------
def test_write_then_end_is_chunked(transport: RecordingTransport) -> None:
    response = make(transport)
    assert response.write(b"hello ") and response.write("world")
    assert response.header_sent
    assert response.end() is True
    parsed = transport.response()
    assert parsed.header("transfer-encoding") == "chunked" and parsed.header("content-length") is None
    assert parsed.chunks == [b"hello ", b"world"] and transport.wire.endswith(b"0\r\n\r\n")


def test_end_with_data_after_write_is_valueerror(transport: RecordingTransport) -> None:
    response = make(transport)
    response.write(b"a")
    with pytest.raises(ValueError):
        response.end(b"x")
    assert response.end() is True


def test_write_chunk_over_buffer_output_size(transport: RecordingTransport) -> None:
    response = make(transport, options=HttpOptions(buffer_output_size=4))
    assert response.write(b"12345") is False
    assert get_last_error() == ErrorCode.DATA_LENGTH_TOO_LARGE
    assert response.write(b"1234") is True


def test_write_empty_sends_head_only(transport: RecordingTransport) -> None:
    response = make(transport)
    assert response.write(b"") is True
    assert transport.wire.endswith(b"\r\n\r\n")  # the head, no empty chunk (it would end the body)
    response.end()
    assert transport.response().body == b""


def test_write_http10_is_raw_and_closes(transport: RecordingTransport) -> None:
    response = make(transport, version="1.0", keep_alive=True)
    response.write(b"abc")
    response.write(b"def")
    response.end()
    head, _, body = transport.wire.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head and body == b"abcdef"
    assert transport.closed


# -- header / status / cookie --------------------------------------------------------------------------------
def test_header_ucwords_and_replace(transport: RecordingTransport) -> None:
    response = make(transport)
    assert response.header("content-type", "application/json") is True
    assert response.header("x-custom-NAME", "1") is True
    assert response.header("X-CUSTOM-name", "2") is True  # same key: replaced
    assert response.header("x-raw", "r", ucwords=False) is True
    response.end(b"{}")
    parsed = transport.response()
    assert parsed.header("Content-Type") == "application/json"
    assert parsed.all("X-Custom-Name") == ["2"]
    assert ("x-raw", "r") in parsed.headers
    assert [k for k, _ in parsed.headers].count("Content-Type") == 1


@pytest.mark.parametrize("key", ["X-A\r\nB", "X_Under", "Ünïcode", "a b", "a:b", ""])
def test_header_bad_key_is_valueerror(transport: RecordingTransport, key: str) -> None:
    with pytest.raises(ValueError):
        make(transport).header(key, "v")


def test_header_value_rules(transport: RecordingTransport) -> None:
    response = make(transport)
    with pytest.raises(TypeError):
        response.header("X-A", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        response.header("X-A", "a\r\nSet-Cookie: evil=1")
    with pytest.raises(TypeError):
        response.header(5, "x")  # type: ignore[arg-type]
    assert response.header("X-Num", 5) is True  # numbers are written as text
    response.end()
    assert transport.response().header("x-num") == "5"


def test_header_status_cookie_false_after_end_or_write(transport: RecordingTransport) -> None:
    response = make(transport)
    response.write(b"x")
    assert response.header("X-Late", "1") is False
    assert get_last_error() == ErrorCode.HTTP_CONTEXT_UNAVAILABLE
    assert response.status(404) is False
    assert response.cookie("a", "b") is False
    response.end()
    assert response.header("X-Later", "1") is False
    assert b"X-Late" not in transport.wire


def test_status_known_unknown(transport: RecordingTransport) -> None:
    response = make(transport)
    with pytest.raises(ValueError):
        response.status(999)
    with pytest.raises(TypeError):
        response.status("404")  # type: ignore[arg-type]
    assert response.status(404) is True
    response.end(b"nope")
    assert (transport.response().status, transport.response().reason) == (404, "Not Found")
    t = RecordingTransport()
    r = Response(t)
    r.status(200, "Fine Thanks")
    r.end()
    assert t.response().reason == "Fine Thanks"


def test_cookies(transport: RecordingTransport) -> None:
    response = make(transport)
    assert response.cookie("session", "a b;c", 0, "/", "example.com", True, True) is True
    assert response.cookie("session", "second") is True  # same key twice: both sent
    assert response.raw_cookie("raw", "a%20b") is True
    assert response.rawcookie("raw2", "x") is True and response.rawCookie("raw3", "y") is True
    assert response.cookie("gone") is True
    with pytest.raises(ValueError):
        response.raw_cookie("bad", "a b")
    with pytest.raises(ValueError):
        response.cookie("bad;name", "x")
    with pytest.raises(ValueError):
        response.cookie("", "x")
    response.end()
    cookies = transport.response().all("Set-Cookie")
    assert cookies[0] == "session=a%20b%3Bc; path=/; domain=example.com; secure; HttpOnly"
    assert cookies[1] == "session=second; path=/"
    assert cookies[2:5] == ["raw=a%20b; path=/", "raw2=x; path=/", "raw3=y; path=/"]
    assert cookies[5] == "gone=deleted; expires=Thu, 01-Jan-1970 00:00:01 GMT; Max-Age=0; path=/"


def test_cookie_expire_has_max_age(transport: RecordingTransport) -> None:
    import time
    response = make(transport)
    response.cookie("a", "1", int(time.time()) + 3600)
    response.end()
    [line] = transport.response().all("Set-Cookie")
    assert "; expires=" in line and " GMT; Max-Age=" in line
    assert 3590 <= int(line.split("Max-Age=")[1].split(";")[0]) <= 3600


# -- redirect / detach / create ------------------------------------------------------------------------------
def test_redirect_is_302_with_location_and_ends(transport: RecordingTransport) -> None:
    response = make(transport)
    assert response.redirect("http://example.com/next") is True
    assert response.ended and response.end() is False
    parsed = transport.response()
    assert parsed.status == 302 and parsed.header("location") == "http://example.com/next"
    t = RecordingTransport()
    Response(t).redirect("/perm", 301)
    assert t.response().status == 301
    with pytest.raises(ValueError):
        Response(RecordingTransport()).redirect("/x", 999)


def test_detach(transport: RecordingTransport) -> None:
    response = make(transport)
    assert response.detach() is True and response.detached
    assert response.finish_if_open() is False  # no auto-end after detach
    assert response.end(b"x") is False and transport.calls == []
    ended = make(RecordingTransport())
    ended.end()
    assert ended.detach() is False


def test_create_outside_a_running_server_is_false_with_1005() -> None:
    """Response.create(fd) finds live HTTP connections through the calling worker; outside
    any server there is none (the server-side cases are in tests/test_http_server*.py)."""
    from threadswoole import get_last_error

    assert Response.create(1) is False
    assert get_last_error() == 1005


# -- HEAD and body-less statuses -----------------------------------------------------------------------------
def test_head_request_gets_headers_only(transport: RecordingTransport) -> None:
    make(transport, method="HEAD").end(b"0123456789")
    parsed = transport.response(head_only=True)
    assert parsed.header("content-length") == "10" and transport.wire.endswith(b"\r\n\r\n")
    t = RecordingTransport()
    r = Response(t, method="HEAD")
    r.header("Content-Length", "1234")  # a HEAD answer may announce the GET size itself
    r.end()
    assert t.response(head_only=True).header("content-length") == "1234"
    t = RecordingTransport()
    r = Response(t, method="HEAD")
    r.write(b"abc")
    r.end()
    assert t.wire.endswith(b"chunked\r\n\r\n")


@pytest.mark.parametrize("status", [204, 304])
def test_bodyless_statuses(status: int) -> None:
    t = RecordingTransport()
    r = Response(t)
    r.status(status)
    r.end(b"ignored")
    parsed = t.response()
    assert parsed.header("content-length") is None and t.wire.endswith(b"\r\n\r\n")
    assert b"ignored" not in t.wire


def test_user_content_length_is_ignored(transport: RecordingTransport) -> None:
    response = make(transport)
    response.header("Content-Length", "999")
    response.header("Transfer-Encoding", "chunked")
    response.end(b"abc")
    parsed = transport.response()
    assert parsed.all("Content-Length") == ["3"] and parsed.header("transfer-encoding") is None


# -- gzip / compression ----------------------------------------------------------------------------------------
def test_gzip_level_rules(transport: RecordingTransport) -> None:
    response = make(transport, accept_encoding="gzip")
    for level in (0, 10):
        with pytest.raises(ValueError):
            response.gzip(level)
    assert response.gzip(9) is True
    response.write(b"x")
    with pytest.raises(StateError):
        response.gzip()
    response.end()
    with pytest.raises(StateError):
        response.gzip()


def test_gzip_end_and_write(transport: RecordingTransport) -> None:
    response = make(transport, accept_encoding="gzip, deflate")
    response.gzip(6)
    response.end(b"abc" * 100)
    parsed = transport.response()
    assert parsed.header("content-encoding") == "gzip" and parsed.header("vary") == "Accept-Encoding"
    assert gzip.decompress(parsed.body) == b"abc" * 100
    t = RecordingTransport()
    r = Response(t, accept_encoding="gzip")
    r.gzip()
    r.write(b"part one ")
    r.write(b"part two")
    r.end()
    parsed = t.response()
    assert gzip.decompress(parsed.body) == b"part one part two"
    # each chunk can be decoded as it arrives (sync flush)
    decoder = zlib.decompressobj(31)
    assert decoder.decompress(parsed.chunks[0]) == b"part one "


def test_gzip_without_accept_encoding_header_uses_gzip(transport: RecordingTransport) -> None:
    response = make(transport, accept_encoding=None)
    response.gzip()
    response.end(b"data" * 10)
    assert gzip.decompress(transport.response().body) == b"data" * 10


def test_automatic_compression_rules() -> None:
    body = b"<p>hello</p>" * 20
    cases = [
        ({"accept_encoding": "gzip"}, "gzip"),
        ({"accept_encoding": "deflate"}, "deflate"),
        ({"accept_encoding": "gzip;q=0.5, deflate;q=0.8"}, "deflate"),
        ({"accept_encoding": "br"}, None),
        ({"accept_encoding": None}, None),
        ({"accept_encoding": "gzip", "options": HttpOptions(http_compression=False)}, None),
        ({"accept_encoding": "gzip", "options": HttpOptions(compression_min_length=len(body) + 1)}, None),
    ]
    for kwargs, expected in cases:
        t = RecordingTransport()
        Response(t, **kwargs).end(body)
        parsed = t.response()
        assert parsed.header("content-encoding") == expected, kwargs
        decoded = {"gzip": gzip.decompress, "deflate": zlib.decompress, None: bytes}[expected](parsed.body)
        assert decoded == body
    # exactly compression_min_length bytes is compressed, one less is not
    for size, expected in ((20, "gzip"), (19, None)):
        t = RecordingTransport()
        Response(t, accept_encoding="gzip").end(b"a" * size)
        assert t.response().header("content-encoding") == expected
    # an application Content-Encoding turns it off
    t = RecordingTransport()
    r = Response(t, accept_encoding="gzip")
    r.header("Content-Encoding", "br")
    r.end(body)
    assert t.response().body == body


def test_compression_level_is_used() -> None:
    body = os.urandom(64).hex().encode() * 50
    sizes = []
    for level in (1, 9):
        t = RecordingTransport()
        Response(t, accept_encoding="gzip", options=HttpOptions(http_compression_level=level)).end(body)
        sizes.append(len(t.response().body))
    assert sizes[1] <= sizes[0]


# -- sendfile --------------------------------------------------------------------------------------------------
def test_sendfile_whole_part_and_rules(tmp_path: Path, transport: RecordingTransport) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)))
    response = make(transport)
    assert response.sendfile(path) is True
    parsed = transport.response()
    assert parsed.body == bytes(range(256)) and parsed.header("content-length") == "256"
    assert parsed.header("content-type") is None  # no guessing
    assert response.end() is False  # sendfile ended the response
    t = RecordingTransport()
    r = Response(t)
    r.header("Content-Type", "application/octet-stream")
    assert r.sendfile(str(path), 10, 5) is True
    assert t.response().body == bytes(range(10, 15)) and t.response().header("content-type") == "application/octet-stream"
    t = RecordingTransport()
    assert Response(t).sendfile(path, 250) is True and t.response().body == bytes(range(250, 256))


def test_sendfile_failures(tmp_path: Path, transport: RecordingTransport) -> None:
    response = make(transport)
    assert response.sendfile(tmp_path / "missing") is False
    assert get_last_error() == 2  # ENOENT
    assert response.sendfile(tmp_path) is False  # a directory
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    assert response.sendfile(path, 6) is False
    assert response.sendfile(path, 2, 4) is False
    with pytest.raises(ValueError):
        response.sendfile(path, -1)
    if os.geteuid() != 0:
        path.chmod(0)
        assert response.sendfile(path) is False
        path.chmod(0o644)
    assert transport.calls == [] and not response.ended
    writer = make(RecordingTransport())
    writer.write(b"x")
    with pytest.raises(StateError):
        writer.sendfile(path)


def test_sendfile_head_and_close(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    t = RecordingTransport()
    Response(t, method="HEAD", keep_alive=False).sendfile(path)
    assert [c[0] for c in t.calls] == ["send", "close"]
    assert t.response(head_only=True).header("content-length") == "5"


def test_transport_failure_ends_the_response(transport: RecordingTransport) -> None:
    transport.broken = True
    response = make(transport)
    assert response.write(b"x") is False and response.ended
    assert response.end() is False


def test_parse_response_helper_round_trip() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 204 No Content\r\n\r\n"
    first, rest = parse_response(data)
    second, rest = parse_response(rest)
    assert (first.body, second.status, rest) == (b"hi", 204, b"")
