"""Response heads of `threadswoole serve` (threadswoole/serve/head.py): pure functions."""

from __future__ import annotations

import pytest

from threadswoole.serve.head import HeaderError, asgi_headers, assemble, error_page, wsgi_headers, wsgi_status

NOW = 1_700_000_000.0


def test_status_lines():
    assert wsgi_status("200 OK") == (200, b"HTTP/1.1 200 OK\r\n")
    assert wsgi_status("299 Custom reason") == (299, b"HTTP/1.1 299 Custom reason\r\n")
    assert wsgi_status("404") == (404, b"HTTP/1.1 404 Not Found\r\n")  # the standard phrase filled in
    for bad in ("OK", "2000 OK", "20 OK", "200 OK\r\nX: y", b"200 OK", 200, "099 Low"):
        with pytest.raises(HeaderError):
            wsgi_status(bad)


def test_wsgi_headers_facts_and_bytes():
    block = wsgi_headers([("Content-Type", "text/plain"), ("Content-Length", "13"), ("Set-Cookie", "a=1")])
    assert block.data == b"Content-Type: text/plain\r\nContent-Length: 13\r\nSet-Cookie: a=1\r\n"
    assert (block.content_length, block.has_server, block.has_date, block.close) == (13, False, False, False)
    assert wsgi_headers([("Content-Type", "text/plain"), ("Content-Length", "13"), ("Set-Cookie", "a=1")]) is block  # cached
    assert wsgi_headers([("Server", "mine"), ("Date", "x")]).has_server is True
    closing = wsgi_headers([("Connection", "close")])
    assert closing.close is True and closing.data == b""  # honoured, not repeated
    assert wsgi_headers([("Connection", "keep-alive")]).data == b""
    assert wsgi_headers([("X-Latin", "caf\xe9")]).data == b"X-Latin: caf\xe9\r\n"


@pytest.mark.parametrize("headers,message", [
    ([("Keep-Alive", "timeout=5")], "hop-by-hop"),
    ([("Transfer-Encoding", "chunked")], "hop-by-hop"),
    ([("Upgrade", "h2c")], "hop-by-hop"),
    ([("X-Bad", "a\r\nInjected: 1")], "CR, LF or NUL"),
    ([("Bad Name", "x")], "not a token"),
    ([("X", b"bytes")], "must be str"),
    ([("Content-Length", "12a")], "not a number"),
    ([("Content-Length", "1"), ("Content-Length", "1")], "twice"),
    ([["X", "list"]], "tuple"),
    ((("X", "y"),), "must be a list"),
    ([("X", "\u20ac")], "latin-1"),
])
def test_wsgi_headers_refused(headers, message):
    with pytest.raises(HeaderError, match=message):
        wsgi_headers(headers)


def test_asgi_headers():
    block = asgi_headers([(b"content-type", b"text/plain"), [b"content-length", b"2"]])  # lists are accepted
    assert block.data == b"content-type: text/plain\r\ncontent-length: 2\r\n" and block.content_length == 2
    assert asgi_headers([(b"connection", b"close")]).close is True
    for bad in ([(b"transfer-encoding", b"chunked")], [("content-type", "text/plain")], [(b"x", b"a\nb")], 5):
        with pytest.raises(HeaderError):
            asgi_headers(bad)


def test_assemble_adds_server_and_date_once_per_second():
    block = wsgi_headers([("Content-Type", "text/plain")])
    _, line = wsgi_status("200 OK")
    head = assemble(line, block, NOW, b"Content-Length: 2\r\n")
    assert head == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: threadswoole\r\n"
                    b"Date: Tue, 14 Nov 2023 22:13:20 GMT\r\nContent-Length: 2\r\n\r\n")
    assert assemble(line, block, NOW + 0.5, b"") == head.replace(b"Content-Length: 2\r\n", b"")
    assert b"22:13:21" in assemble(line, block, NOW + 1, b"")
    own = wsgi_headers([("Server", "mine"), ("Date", "then")])
    assert assemble(line, own, NOW, b"") == b"HTTP/1.1 200 OK\r\nServer: mine\r\nDate: then\r\n\r\n"


def test_error_page():
    page = error_page(500, NOW)
    head, _, body = page.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 Internal Server Error\r\n") and b"Connection: close" in head
    assert body == b"500 Internal Server Error\n" and b"Content-Length: 26" in head


def test_each_worker_has_its_own_head_caches():
    """A worker passes its own HeadCaches (free-threaded builds: no cache two threads read)."""
    from threadswoole.serve.head import HeadCaches

    mine, theirs = HeadCaches(), HeadCaches()
    headers = [("Content-Type", "text/plain"), ("Content-Length", "2")]
    block = wsgi_headers(headers, mine.wsgi)
    assert wsgi_headers(list(headers), mine.wsgi) is block and list(mine.wsgi.values()) == [block]
    other = wsgi_headers(headers, theirs.wsgi)
    assert other is not block and (other.data, other.content_length) == (block.data, 2)
    assert wsgi_status("200 OK", mine.status) == (200, b"HTTP/1.1 200 OK\r\n") and list(mine.status) == ["200 OK"]
    assert not theirs.status
    raw = [(b"content-type", b"text/plain")]
    assert asgi_headers(raw, mine.asgi) is asgi_headers(raw, mine.asgi) and not theirs.asgi
    with pytest.raises(HeaderError):
        wsgi_headers([("Bad Name", "x")], mine.wsgi)
    with pytest.raises(HeaderError):
        wsgi_headers([["Content-Type", "text/plain"]], mine.wsgi)  # a list item: unhashable, refused
