"""Micro-benchmark of the HTTP layer: parse (HttpCodec) and build (Request / Response), per request.

    python3 -m stress.micro_http            # about 20 s
    python3 -m stress.micro_http --quick    # about 5 s

CPU time (`time.process_time`) per call, best of several rounds, so other load on the machine
inflates the figures less than wall time would; the ratios between rows of the same run are
what to compare. The first row is the floor: a method call that returns ``[data]``, what
``Codec.feed`` costs when it does nothing. If ``httptools`` happens to be importable it is
measured too (it is not a dependency).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable

from threadswoole.http import HttpOptions, Request, RequestBuilder, Response
from threadswoole.protocol.http import HttpCodec
from threadswoole.protocol.http.head import HeadParser

WRK = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
BROWSER = (
    b"GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\n"
    b"Cookie: session=abc123; theme=dark\r\nUpgrade-Insecure-Requests: 1\r\n\r\n"
)
POST = b"POST /api HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 26\r\n\r\n{\"hello\": \"world\", \"n\": 1}"


class _Floor:
    def feed(self, data: bytes) -> list[bytes]:
        return [data]


class _NullTransport:
    def send(self, data: bytes) -> bool:
        return True

    def sendfile(self, path: str, offset: int, length: int) -> bool:
        return True

    def close(self) -> bool:
        return True


class _Uncached(HeadParser):
    """A HeadParser that never caches: the cost of a header block seen for the first time."""

    __slots__ = ()
    CACHE_MAX_BLOCK = -1


def measure(fn: Callable[[], Any], rounds: int, number: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(number):
            fn()
        best = min(best, time.process_time() - start)
    return best / number * 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rounds, number = (3, 20_000) if args.quick else (7, 50_000)

    floor = _Floor()
    codec = HttpCodec()
    uncached = _Uncached()
    transport = _NullTransport()
    options = HttpOptions()
    wrk_event = codec.feed(WRK)[0]
    browser_event = codec.feed(BROWSER)[0]
    packed = wrk_event.pack()
    unpack = type(wrk_event).unpack

    def request_response(event: Any = wrk_event) -> None:
        request = Request(event, 1, remote_addr="127.0.0.1", remote_port=40000, server_port=8080,
                          request_time=1.0, options=options)
        request.header
        Response(transport, 1, method=event.method, version=event.version, keep_alive=event.keep_alive,
                 accept_encoding=event.headers.get("accept-encoding"), options=options).end(b"Hello, World!")

    def eager_request(event: Any = browser_event) -> None:
        request = Request(event, 1, remote_addr="127.0.0.1", remote_port=40000, server_port=8080,
                          request_time=1.0, options=options)
        request.header, request.server, request.get, request.cookie, request.post, request.files

    def lazy_request(event: Any = browser_event) -> None:
        Request(event, 1, remote_addr="127.0.0.1", remote_port=40000, server_port=8080,
                request_time=1.0, options=options).header

    post_event = codec.feed(POST)[0]
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("floor: method call returning [data]", lambda: floor.feed(WRK)),
        ("HttpCodec.feed(wrk GET), header block cached", lambda: codec.feed(WRK)),
        ("HeadParser.parse(wrk GET), never cached", lambda: uncached.parse(WRK)),
        ("HttpCodec.feed(browser GET, 8 headers), cached", lambda: codec.feed(BROWSER)),
        ("HeadParser.parse(browser GET), never cached", lambda: uncached.parse(BROWSER)),
        ("HttpCodec.feed(POST with 26-byte body)", lambda: codec.feed(POST)),
        ("HttpRequest.pack() + unpack() (wrk GET)", lambda: unpack(wrk_event.pack())),
        ("unpack() alone", lambda: unpack(packed)),
        ("Request + .header + Response.end(b'Hello, World!')", request_response),
        ("RequestBuilder(POST).build() + .post", lambda: RequestBuilder(post_event, options).build(1).post),
        ("Request(browser) + .header (lazy: the rest untouched)", lazy_request),
        ("Request(browser) + every attribute (eager equivalent)", eager_request),
    ]
    try:
        import httptools  # type: ignore[import-not-found]
    except ImportError:
        httptools = None
    if httptools is not None:
        class _Proto:
            def on_url(self, url: bytes) -> None:
                self.url = url

            def on_header(self, name: bytes, value: bytes) -> None:
                self.headers.append((name, value))

            def on_message_complete(self) -> None:
                pass

        proto = _Proto()
        proto.headers = []
        ht = httptools.HttpRequestParser(proto)

        def httptools_feed() -> None:
            proto.headers = []
            ht.feed_data(WRK)
        rows.insert(3, ("httptools.HttpRequestParser.feed_data(wrk GET) [C]", httptools_feed))

    print(f"Python {sys.version.split()[0]}, best of {rounds} x {number}, CPU ns per call")
    for _, fn in rows:  # warm up (caches, CPU frequency) so the first row is not penalised
        measure(fn, 1, number // 10)
    base = 0.0
    for label, fn in rows:
        ns = measure(fn, rounds, number)
        base = base or ns
        print(f"{ns:9.0f} ns  {ns / base:6.1f}x  {label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
