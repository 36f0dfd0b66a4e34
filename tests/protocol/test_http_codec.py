"""HttpCodec behaviour the corpus can not show: 100-continue, upgrade hold, streaming, limits, events."""

from __future__ import annotations

import pytest

from threadswoole.protocol.codec import EVENT_TYPES, ProtocolError, Reply
from threadswoole.protocol.http import HttpBodyChunk, HttpCodec, HttpRequest, MessageError
from threadswoole.protocol.http.head import HeadParser
from threadswoole.protocol.http.writer import CONTINUE

pytestmark = pytest.mark.timeout(60)

GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"


def post(body: bytes, *extra: bytes, chunked: bool = False) -> bytes:
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(body)
    head = b"POST /p HTTP/1.1\r\nHost: a\r\n" + framing + b"\r\n" + b"".join(h + b"\r\n" for h in extra) + b"\r\n"
    return head + body


def test_fast_path_one_event_no_state() -> None:
    codec = HttpCodec()
    [event] = codec.feed(GET)
    assert type(event) is HttpRequest and event.complete and event.keep_alive
    assert (event.method, event.target, event.path, event.query, event.version) == ("GET", "/", "/", "", "1.1")
    assert event.headers == {"host": "127.0.0.1:8080"}
    assert event.head is GET and event.body == b"" and event.content_length == 0
    assert codec.buffered == 0
    # the same again on the same connection (keep-alive), and bytearray / memoryview input
    assert codec.feed(bytearray(GET))[0].headers == event.headers
    assert codec.feed(memoryview(GET))[0].path == "/"


def test_cached_heads_do_not_share_headers() -> None:
    codec = HttpCodec()
    first = codec.feed(GET)[0]
    first.headers["host"] = "changed"
    first.headers["x"] = "1"
    second = codec.feed(GET)[0]
    assert second.headers == {"host": "127.0.0.1:8080"}
    assert second.headers is not first.headers


def test_head_caches_are_bounded_and_cleared() -> None:
    parser = HeadParser(100, 1000, True)
    for i in range(HeadParser.CACHE_ENTRIES + 10):
        parser.parse(b"GET /%d HTTP/1.1\r\nHost: h%d\r\n\r\n" % (i, i))
        assert len(parser._blocks) <= HeadParser.CACHE_ENTRIES and len(parser._heads) <= HeadParser.CACHE_ENTRIES
    big = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"y" * HeadParser.CACHE_MAX_BLOCK + b"\r\n\r\n"
    parser._blocks.clear()
    parser._heads.clear()
    parser.parse(big)
    assert not parser._blocks and not parser._heads
    # a block seen with another request line is reused; the request line is still parsed
    first = parser.parse(b"GET /one?a=1 HTTP/1.1\r\nHost: same\r\n\r\n")
    second = parser.parse(b"POST /two HTTP/1.0\r\nHost: same\r\n\r\n")
    assert len(parser._blocks) == 1 and len(parser._heads) == 2
    assert (first.method, first.path, first.query, first.version, first.keep_alive) == ("GET", "/one", "a=1", "1.1", True)
    assert (second.method, second.path, second.version, second.keep_alive) == ("POST", "/two", "1.0", False)
    with pytest.raises(MessageError):
        parser.parse(b"GET / HTTP/1.1\r\n\r\n")  # the cached pieces do not excuse a missing Host


def test_shared_head_parser_is_per_thread() -> None:
    """HeadParser.shared: one parser per limits within a thread, another in another thread (on
    free-threaded builds a cache two threads read serialises them on its lock)."""
    import threading

    here = HeadParser.shared(100, 1000, True)
    assert HeadParser.shared(100, 1000, True) is here and HeadParser.shared(50, 1000, True) is not here
    there: list[HeadParser] = []
    worker = threading.Thread(target=lambda: there.extend([HeadParser.shared(100, 1000, True), HeadParser.shared(100, 1000, True)]))
    worker.start()
    worker.join(10)
    assert len(there) == 2 and there[0] is there[1] and there[0] is not here


def test_known_heads_are_whole_valid_heads_only() -> None:
    """HeadParser.known answers only for a head parsed before: the codec's fast path relies on
    a hit meaning "exactly one whole, valid head"."""
    parser = HeadParser(100, 1000, True)
    assert parser.known(GET) is None
    parsed = parser.parse(GET)
    again = parser.known(GET)
    assert again == parsed and again is not parsed and again.headers is not parsed.headers
    assert again.head is GET and again.body == b"" and again.complete and again.trailers is None
    for near in (GET + GET, b"\r\n" + GET, GET[:-2], GET + b"x"):
        assert parser.known(near) is None
    with pytest.raises(MessageError):
        parser.parse(b"GET / HTTP/1.1\r\n\r\n")
    assert parser.known(b"GET / HTTP/1.1\r\n\r\n") is None  # a failed head is not remembered


def test_known_head_on_the_fast_path_keeps_the_codecs_limits() -> None:
    HttpCodec().feed(GET)  # now known to the shared parser
    with pytest.raises(ProtocolError) as caught:
        HttpCodec(max_head_size=len(GET) - 1).feed(GET)  # same parser limits, a smaller head limit
    assert caught.value.reason == "head_too_large"
    head = b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
    for _ in range(2):  # parsed, then known: the body that follows is read the same way
        codec = HttpCodec()
        assert codec.feed(head) == []
        [event] = codec.feed(b"abc")
        assert event.body == b"abc" and event.complete and event.content_length == 3


def test_pack_unpack_round_trip() -> None:
    codec = HttpCodec(max_buffered_body=4)
    events = codec.feed(post(b"0123456789")[:-3])
    events += codec.feed(b"789")
    request, chunk = events
    assert not request.complete and chunk.final
    for event in (request, chunk):
        copy = EVENT_TYPES[event.wire_id].unpack(event.pack())
        assert copy == event and type(copy) is type(event) and copy is not event
    assert HttpRequest.wire_id == 1 and HttpBodyChunk.wire_id == 2


def test_pipelined_requests_in_order() -> None:
    data = GET + post(b"hello") + b"GET /third?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"
    events = HttpCodec().feed(data)
    assert [(e.method, e.path, e.body) for e in events] == [("GET", "/", b""), ("POST", "/p", b"hello"),
                                                            ("GET", "/third", b"")]


def test_keep_alive_rules() -> None:
    cases = {
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n": True,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n": False,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n": False,
        b"GET / HTTP/1.0\r\n\r\n": False,
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n": True,
        b"GET / HTTP/1.0\r\nConnection: foo, Keep-Alive\r\n\r\n": True,
    }
    for data, keep_alive in cases.items():
        codec = HttpCodec()
        [event] = codec.feed(data)
        assert event.keep_alive is keep_alive, data
        # after a request that ends the connection, further bytes are ignored
        assert len(codec.feed(GET)) == (1 if keep_alive else 0), data


def test_bytes_after_close_are_ignored() -> None:
    codec = HttpCodec()
    events = codec.feed(b"GET / HTTP/1.0\r\n\r\nGARBAGE\r\n\r\n")
    assert len(events) == 1
    assert codec.feed(b"more garbage \x00\x01") == [] and codec.buffered == 0


def test_expect_100_continue_when_body_not_there() -> None:
    codec = HttpCodec()
    head = post(b"")[:-2] + b"Expect: 100-continue\r\n\r\n"
    head = head.replace(b"Content-Length: 0", b"Content-Length: 5")
    events = codec.feed(head)
    assert len(events) == 1 and isinstance(events[0], Reply) and events[0].data == CONTINUE and not events[0].close
    [request] = codec.feed(b"hello")
    assert request.expect_continue and request.body == b"hello"
    # body already in the same feed: no 100 Continue
    events = HttpCodec().feed(head + b"hello")
    assert [type(e) for e in events] == [HttpRequest]
    # byte by byte: exactly one Reply, before the request
    codec = HttpCodec()
    out = [e for i in range(len(head) + 5) for e in codec.feed((head + b"hello")[i:i + 1])]
    assert [type(e) for e in out] == [Reply, HttpRequest]
    # HTTP/1.0 ignores the expectation (RFC 9110 10.1.1)
    head10 = b"POST / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    assert HttpCodec().feed(head10) == []


def test_expect_100_continue_over_limit_is_400_not_100() -> None:
    head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
    with pytest.raises(ProtocolError) as info:
        HttpCodec(max_body_size=10).feed(head)
    assert info.value.reason == "body_too_large"
    assert info.value.response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert all(not isinstance(e, Reply) for e in info.value.events)


def test_expect_100_continue_chunked_and_streaming() -> None:
    head = post(b"", b"Expect: 100-continue", chunked=True)
    codec = HttpCodec()
    assert [type(e) for e in codec.feed(head)] == [Reply]
    [request] = codec.feed(b"3\r\nabc\r\n0\r\n\r\n")
    assert request.body == b"abc" and request.chunked
    codec = HttpCodec(max_buffered_body=4)
    big = post(b"x" * 10, b"Expect: 100-continue")
    events = codec.feed(big[:-10])
    assert [type(e) for e in events] == [Reply, HttpRequest] and not events[1].complete


def test_upgrade_holds_bytes_until_detach() -> None:
    head = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    codec = HttpCodec()
    [request] = codec.feed(head + b"\x81\x02hi")
    assert request.upgrade and codec.holding
    assert codec.feed(b"\x81\x03abc") == []
    assert codec.buffered == 9
    assert codec.detach() == b"\x81\x02hi\x81\x03abc"
    assert codec.feed(GET) == [] and codec.buffered == 0


def test_upgrade_refused_resume_parses_held_bytes() -> None:
    head = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: x\r\n\r\n"
    codec = HttpCodec()
    [request] = codec.feed(head + GET[:10])
    assert request.upgrade and codec.holding
    assert codec.feed(GET[10:]) == []
    [again] = codec.resume()
    assert again.path == "/" and not codec.holding
    assert codec.resume() == []
    # resume with bad held bytes raises like feed
    codec = HttpCodec()
    codec.feed(head + b"BAD\r\n\r\n")
    with pytest.raises(ProtocolError):
        codec.resume()


def test_upgrade_not_held_when_the_listener_never_upgrades() -> None:
    head = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    codec = HttpCodec(hold_upgrade=False)
    [request, again] = codec.feed(head + GET)
    assert request.upgrade and not codec.holding and again.path == "/"
    [alone] = HttpCodec(hold_upgrade=False).feed(head)  # the fast path too
    assert alone.upgrade


def test_streaming_content_length_one_chunk_per_feed() -> None:
    body = bytes(range(256)) * 40  # 10240 bytes
    codec = HttpCodec(max_buffered_body=1024)
    data = post(body)
    head_len = len(data) - len(body)
    events = codec.feed(data[:head_len + 100])
    [request] = events
    assert not request.complete and request.body == body[:100] and request.content_length == len(body)
    out = []
    for i in range(head_len + 100, len(data), 3000):
        chunk_events = codec.feed(data[i:i + 3000])
        assert len(chunk_events) == 1
        out += chunk_events
    assert b"".join(c.data for c in out) == body[100:]
    assert [c.final for c in out] == [False] * (len(out) - 1) + [True]
    assert codec.buffered == 0
    # the next request on the connection parses normally
    assert codec.feed(GET)[0].path == "/"


def test_streaming_chunk_then_next_request_in_same_feed() -> None:
    codec = HttpCodec(max_buffered_body=4)
    data = post(b"0123456789")
    events = codec.feed(data[:-5])
    events += codec.feed(data[-5:] + GET)
    assert [type(e) for e in events] == [HttpRequest, HttpBodyChunk, HttpRequest]
    assert events[1].data == b"56789" and events[1].final


def test_small_body_is_held_until_complete() -> None:
    codec = HttpCodec(max_buffered_body=1024)
    data = post(b"x" * 1000)
    assert codec.feed(data[:-1]) == []
    assert codec.buffered == 999  # the head is parsed; the body bytes are held
    [request] = codec.feed(data[-1:])
    assert request.complete and request.body == b"x" * 1000


def test_chunked_streaming_with_trailers() -> None:
    codec = HttpCodec(max_buffered_body=8)
    body = b"5\r\nhello\r\n6\r\n world\r\n7\r\n again!\r\n0\r\nX-Check: ok\r\n\r\n"
    events = []
    for byte in post(body, chunked=True):
        events += codec.feed(bytes([byte]))
    request, *chunks = events
    assert not request.complete and request.chunked
    assert request.body + b"".join(c.data for c in chunks) == b"hello world again!"
    assert chunks[-1].final and chunks[-1].trailers == {"x-check": "ok"}
    assert all(not c.final for c in chunks[:-1])


def test_limits_at_and_one_over() -> None:
    # max_head_size: 64-byte heads
    head = b"GET /" + b"a" * (64 - 27) + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    assert len(head) == 64
    assert HttpCodec(max_head_size=64).feed(head)[0].complete
    with pytest.raises(ProtocolError, match="head_too_large"):
        HttpCodec(max_head_size=63).feed(head)
    # incomplete head reaching the limit fails without waiting for the rest
    codec = HttpCodec(max_head_size=64)
    assert codec.feed(head[:63]) == []
    with pytest.raises(ProtocolError, match="head_too_large"):
        HttpCodec(max_head_size=63).feed(head[:63])
    # max_headers
    many = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n"
    assert len(HttpCodec(max_headers=3).feed(many)[0].headers) == 3
    with pytest.raises(ProtocolError, match="too_many_headers"):
        HttpCodec(max_headers=2).feed(many)
    # max_body_size: Content-Length and chunked
    assert HttpCodec(max_body_size=5).feed(post(b"hello"))[0].body == b"hello"
    with pytest.raises(ProtocolError, match="body_too_large"):
        HttpCodec(max_body_size=4).feed(post(b"hello")[:-5])  # refused before the body is read
    assert HttpCodec(max_body_size=5).feed(post(b"5\r\nhello\r\n0\r\n\r\n", chunked=True))[0].body == b"hello"
    with pytest.raises(ProtocolError, match="body_too_large"):
        HttpCodec(max_body_size=4).feed(post(b"5\r\n", chunked=True))  # on the size line, before the data
    # max_chunk_extension
    line = b"5;" + b"e" * 8 + b"\r\nhello\r\n0\r\n\r\n"
    assert HttpCodec(max_chunk_extension=9).feed(post(line, chunked=True))[0].body == b"hello"
    with pytest.raises(ProtocolError, match="chunk_extension_too_long"):
        HttpCodec(max_chunk_extension=8).feed(post(line, chunked=True))


def test_error_response_and_events_before_error() -> None:
    codec = HttpCodec()
    with pytest.raises(ProtocolError) as info:
        codec.feed(GET + b"GET / HTTP/2.0\r\nHost: a\r\n\r\n")
    err = info.value
    assert err.reason == "http_version_not_supported"
    assert err.response.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n")
    assert b"Connection: close\r\n" in err.response and err.response.endswith(b"\r\n\r\n505 HTTP Version Not Supported\n")
    assert [e.path for e in err.events] == ["/"]
    assert codec.failed
    with pytest.raises(ProtocolError) as again:
        codec.feed(GET)
    assert again.value.response == b""  # the answer was already sent once


def test_bad_input_in_partial_head_fails_before_the_head_ends() -> None:
    codec = HttpCodec()
    with pytest.raises(ProtocolError, match="bare_line_ending"):
        codec.feed(b"GET / HTTP/1.1\nHost")


def test_absent_host_optional() -> None:
    [event] = HttpCodec(require_host=False).feed(b"GET / HTTP/1.1\r\n\r\n")
    assert event.headers == {}


def test_constructor_validates_limits() -> None:
    with pytest.raises(ValueError):
        HttpCodec(max_head_size=0)
    with pytest.raises(ValueError):
        HttpCodec(max_body_size=-1)
    with pytest.raises(ValueError):
        HttpCodec(max_headers="100")  # type: ignore[arg-type]


def test_target_forms_and_decoding() -> None:
    [event] = HttpCodec().feed("GET /caf\xc3\xa9?q=\xc3\xa9#frag HTTP/1.1\r\nHost: a\r\n\r\n".encode("latin-1"))
    assert (event.target, event.path, event.query) == ("/café?q=é#frag", "/café", "q=é")
    [event] = HttpCodec().feed(b"GET /bad\xff HTTP/1.1\r\nHost: a\r\n\r\n")
    assert event.path == "/bad\udcff"  # invalid UTF-8 kept by surrogateescape
    assert HttpRequest.unpack(event.pack()).path == "/bad\udcff"


def test_shared_head_cache_under_threads() -> None:
    """THREAD mode: every worker thread's codecs share one HeadParser (and its cache)."""
    import threading

    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            codec = HttpCodec()
            for i in range(2000):
                host = f"h{(n * 7 + i) % 300}"  # more distinct blocks than the cache holds: clears too
                [event] = codec.feed(f"GET /{n}/{i} HTTP/1.1\r\nHost: {host}\r\nX-N: {n}\r\n\r\n".encode())
                assert event.headers == {"host": host, "x-n": str(n)} and event.path == f"/{n}/{i}"
                event.headers["x-n"] = "mutated"  # must not leak into another thread's event
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors[0]


def test_reading_head_is_true_only_while_part_of_a_head_is_buffered() -> None:
    # The heartbeat does not count such reads as activity: a slowloris is closed as idle.
    codec = HttpCodec()
    assert not codec.reading_head  # between requests
    codec.feed(b"POST / HTTP/1.1\r\nHo")
    assert codec.reading_head
    codec.feed(b"st: x\r\nContent-Length: 4\r\n\r\nab")
    assert not codec.reading_head  # reading the body: reads count, however slow
    codec.feed(b"cd")
    assert not codec.reading_head
