"""Request built from codec events: header, server, get, post, cookie, raw content, aliases, laziness."""

from __future__ import annotations

import pytest

from threadswoole.http import HttpOptions, Request, RequestBuilder
from threadswoole.protocol.http import HttpCodec, HttpRequest

pytestmark = pytest.mark.timeout(30)


def event_of(raw: bytes, **codec_options) -> HttpRequest:
    [event] = HttpCodec(**codec_options).feed(raw)
    return event


def request_of(raw: bytes, options: HttpOptions | None = None, **facts) -> Request:
    return RequestBuilder(event_of(raw), options).build(3, **facts)


def test_header_lower_case_and_server_dict() -> None:
    raw = b"GET /a%20b/c?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nX-Real-IP: 10.0.0.1\r\nAccept-Language: en\r\n\r\n"
    request = request_of(raw, remote_addr="127.0.0.1", remote_port=5555, server_port=9501,
                         server_addr="127.0.0.1", request_time=1700000000.25, master_time=1699999999)
    assert request.fd == 3 and request.stream_id == 0
    assert request.header == {"host": "example.com", "x-real-ip": "10.0.0.1", "accept-language": "en"}
    assert request.server == {
        "request_method": "GET", "request_uri": "/a%20b/c", "path_info": "/a b/c", "query_string": "x=1&y=2",
        "request_time": 1700000000, "request_time_float": 1700000000.25, "server_protocol": "HTTP/1.1",
        "server_port": 9501, "server_addr": "127.0.0.1", "remote_port": 5555, "remote_addr": "127.0.0.1",
        "master_time": 1699999999,
    }
    assert request.get == {"x": "1", "y": "2"}


def test_no_query_string_key_without_query() -> None:
    request = request_of(b"GET / HTTP/1.0\r\n\r\n")
    assert "query_string" not in request.server and request.get == {}
    assert request.server["server_protocol"] == "HTTP/1.0"
    assert isinstance(request.server["request_time"], int)


def test_get_is_capped_at_128() -> None:
    query = "&".join(f"k{i}={i}" for i in range(200)).encode()
    request = request_of(b"GET /?" + query + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert len(request.get) == 128


def test_post_urlencoded_and_switch() -> None:
    body = b"name=Jos%C3%A9&tags=a+b&" + b"&".join(b"p%d=1" % i for i in range(200))
    raw = (b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded; charset=UTF-8\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body)) + body
    request = request_of(raw)
    assert request.post["name"] == "José" and request.post["tags"] == "a b" and len(request.post) == 128
    assert request.raw_content() == body == request.rawContent() == request.rawcontent()
    assert request.get_data() == raw == request.getData()
    assert request_of(raw, HttpOptions(http_parse_post=False)).post == {}
    # not parsed for GET, nor for other content types
    assert request_of(raw.replace(b"POST", b"GET", 1)).post == {}
    assert request_of(raw.replace(b"x-www-form-urlencoded", b"json")).post == {}


def test_cookie_parsing_and_switch() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nCookie: sid=abc%3D; theme=\"dark\"\r\nCookie: b64=YQ+=\r\n\r\n"
    request = request_of(raw)
    assert request.cookie == {"sid": "abc=", "theme": "dark", "b64": "YQ+="}
    assert request.header["cookie"] == 'sid=abc%3D; theme="dark"; b64=YQ+='
    assert request_of(raw, HttpOptions(http_parse_cookie=False)).cookie == {}
    assert request_of(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").cookie == {}


def test_attributes_are_lazy_and_assignable() -> None:
    request = request_of(b"GET /?a=1 HTTP/1.1\r\nHost: a\r\nCookie: c=1\r\n\r\n")
    assert request._get is request._cookie is request._server  # all still unset
    first = request.get
    assert request.get is first  # parsed once
    request.get = {"over": "ridden"}
    request.cookie = {}
    request.header = {"x": "y"}
    request.server = {}
    request.post = {"p": "1"}
    request.files = {}
    assert (request.get, request.cookie, request.header, request.post) == ({"over": "ridden"}, {}, {"x": "y"}, {"p": "1"})


def test_chunked_body_is_dechunked_in_raw_content() -> None:
    raw = b"PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    request = request_of(raw)
    assert request.raw_content() == b"abcde"
    assert request.get_data().startswith(b"PUT /x HTTP/1.1\r\n") and request.get_data().endswith(b"\r\n\r\nabcde")


def test_streamed_body_through_builder() -> None:
    codec = HttpCodec(max_buffered_body=8)
    body = b"a=1&b=" + b"x" * 100
    raw = (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body)) + body
    events = []
    for i in range(0, len(raw), 10):
        events += codec.feed(raw[i:i + 10])
    first, *chunks = events
    builder = RequestBuilder(first)
    assert not builder.complete
    with pytest.raises(ValueError):
        builder.build()
    for chunk in chunks:
        done = builder.feed(chunk)
    assert done and builder.complete and builder.rejected is None
    request = builder.build(9)
    assert request.raw_content() == body and request.post == {"a": "1", "b": "x" * 100}
    with pytest.raises(ValueError):
        builder.feed(chunks[-1])


def test_streamed_chunked_trailers_reach_the_event() -> None:
    codec = HttpCodec(max_buffered_body=2)
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"
    events = [e for i in range(len(raw)) for e in codec.feed(raw[i:i + 1])]
    builder = RequestBuilder(events[0])
    for chunk in events[1:]:
        builder.feed(chunk)
    request = builder.build()
    assert request.raw_content() == b"hello" and request.event.trailers == {"x-t": "1"}


def test_request_without_builder_defaults() -> None:
    request = Request(event_of(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert request.fd == 0 and request.server["remote_addr"] == "" and request.files == {}
    assert "GET / HTTP/1.1" in repr(request)


def test_aliases_follow_subclass_overrides() -> None:
    class Custom(Request):
        def raw_content(self) -> bytes:
            return b"override"

        def get_data(self) -> bytes:
            return b"all"

    custom = Custom(event_of(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert custom.rawContent() == custom.rawcontent() == b"override"
    assert custom.getData() == b"all"
