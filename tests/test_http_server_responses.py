"""http.Server end to end, the response side (contract §8, §17.44-48): every Response method
through a real server in every mode, read back with http.client, curl and a raw socket.

One server per mode for the module, two workers (so one can answer another's request);
the handler routes on the path (see `app`); results a client can not see (a call's return
value after the response went out) come back as "result" events.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import zlib

import pytest

from http_server_helpers import RawConnection, curl, get, module_server, needs_curl

pytestmark = pytest.mark.timeout(60)


def app(server, emit):
    from threadswoole.http import Response

    def raised(call, *args, **kw) -> str:
        try:
            return repr(call(*args, **kw))
        except Exception as exc:  # noqa: BLE001 - the test wants its type
            return type(exc).__name__

    def on_request(request, response):
        path = request.server["request_uri"]
        query = request.get
        if path == "/headers":
            response.header("x-lower-case", "one")
            response.header("x-raw-case", "two", False)
            response.header("X-Replaced", "first")
            response.header("x-replaced", "second")
            response.header("X-Number", 42)
            checks = {"underscore": raised(response.header, "x_bad", "v"), "crlf": raised(response.header, "x-bad\r\n", "v"),
                      "non_ascii": raised(response.header, "x-bäd", "v"), "none": raised(response.header, "x-none", None)}
            response.header("Content-Type", "application/json")
            response.end(json.dumps(checks))
            emit("result", path=path, header_after_end=response.header("x-late", "v"),
                 cookie_after_end=response.cookie("late", "v"), status_after_end=response.status(404))
        elif path == "/cookies":
            response.cookie("plain", "a b;c")
            response.cookie("plain", "again")  # several Set-Cookie with one key are allowed
            response.raw_cookie("raw", "x%20y")
            response.cookie("full", "v", expire=2000000000, path="/p", domain="example.com", secure=True, httponly=True)
            response.rawcookie("alias", "1")
            response.end("cookies")
        elif path.startswith("/status/"):
            response.status(int(path[8:]))
            response.end(b"" if path[8:] in ("204", "304") else b"status body")
        elif path == "/status-unknown":
            response.end(raised(response.status, 999))
        elif path == "/redirect":
            response.redirect(query.get("to", "/elsewhere"), int(query.get("code", 302)))
            emit("result", path=path, end_after_redirect=response.end(b"x"))
        elif path == "/write":
            for piece in (b"first,", "second,", bytearray(b"third")):
                response.write(piece)
            checks = {"end_with_data": raised(response.end, b"x"), "gzip_after_write": raised(response.gzip, 1),
                      "sendfile_after_write": raised(response.sendfile, __file__)}
            response.end()
            emit("result", path=path, write_after_end=response.write(b"late"), end_again=response.end(), **checks)
        elif path == "/write-too-big":
            too_big = response.write(b"x" * (2 * 1024 * 1024 + 1))  # over buffer_output_size (2 MiB)
            last_error = server.get_last_error()
            response.write(b"fine")
            response.end()
            emit("result", path=path, too_big=too_big, last_error=last_error)
        elif path == "/gzip":
            response.gzip(int(query.get("level", 6)))
            response.end(b"compressible " * 200)
        elif path == "/gzip-write":
            response.gzip()
            response.write(b"streamed " * 100)
            response.write(b"and more " * 100)
            response.end()
        elif path == "/gzip-bad-level":
            response.end(raised(response.gzip, 10))
        elif path == "/big":
            response.end(b"a" * int(query.get("size", 1000)))
        elif path == "/sendfile":
            ok = response.sendfile(query["path"], int(query.get("offset", 0)), int(query.get("length", 0)))
            if not ok:
                response.status(404)
                response.end(f"sendfile False {server.get_last_error()}")
        elif path == "/end-twice":
            first = response.end(b"once")
            emit("result", path=path, first=first, second=response.end(b"twice"), detach=response.detach())
        elif path == "/nothing":
            pass  # auto-end: 200, empty body
        elif path == "/detach-timer":
            fd = response.fd
            detached = response.detach()
            emit("result", path=path, detached=detached, detach_again=response.detach(), end_after_detach=response.end(b"x"))

            def later():
                created = Response.create(fd)
                created.header("X-Created", "timer")
                created.end(b"from a timer")

            server.after(50, later)
        elif path == "/detach-gone":  # the client leaves before the timer answers
            fd = response.fd
            response.detach()

            def too_late():
                created = Response.create(fd)
                emit("result", path=path, created=created, last_error=server.get_last_error())

            server.after(300, too_late)
        elif path == "/close-header":
            response.header("Connection", "close")
            response.end(b"bye")
        elif path == "/detach-message":
            response.detach()
            server.send_message({"fd": response.fd, "from": server.worker_id}, 1 - server.worker_id)
        elif path == "/create-bad":
            response.end(json.dumps({"unknown": Response.create(999999), "last_error": server.get_last_error()}))
        elif path == "/close":
            server.close(response.fd)
        elif path == "/http10-write":
            response.write(b"raw ")
            response.write(b"body")
            response.end()
        else:
            response.status(404)
            response.end(b"no route " + path.encode())

    def on_pipe_message(srv, src_worker_id, message):
        created = Response.create(message["fd"])
        created.header("X-Answered-By", str(srv.worker_id))
        created.end(f"from worker {srv.worker_id} for {message['from']}".encode())

    server.on("request", on_request)
    server.on("pipe_message", on_pipe_message)
    plain = server.add_listener("127.0.0.1", 0)  # inherits HTTP; compression switched off here
    plain.set({"http_compression": False})
    strong = server.add_listener("127.0.0.1", 0)
    strong.set({"http_compression_level": 9, "compression_min_length": 2000})


server = module_server(app, {"worker_num": 2, "compression_min_length": 20})


def fetch(port: int, method: str, url: str, headers: dict | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, url, headers=headers or {})
        reply = conn.getresponse()
        return reply, reply.read()
    finally:
        conn.close()


def test_header_normalises_replaces_and_refuses_bad_keys(server):
    with RawConnection(server.port) as conn:
        reply = conn.request(get("/headers"))
    assert b"\r\nX-Lower-Case: one\r\n" in reply.head and b"\r\nx-raw-case: two\r\n" in reply.head
    assert reply.header_list("x-replaced") == ["second"] and reply.headers["x-number"] == "42"
    assert json.loads(reply.body) == {"underscore": "ValueError", "crlf": "ValueError", "non_ascii": "ValueError", "none": "TypeError"}
    assert {"server", "date", "connection", "content-length"} <= set(reply.headers)
    result = server.wait("result", path="/headers")
    assert (result["header_after_end"], result["cookie_after_end"], result["status_after_end"]) == (False, False, False)


def test_cookie_encodes_and_raw_cookie_does_not(server):
    reply, body = fetch(server.port, "GET", "/cookies")
    cookies = reply.headers.get_all("Set-Cookie")
    pairs = [cookie.split(";")[0] for cookie in cookies]
    assert pairs == ["plain=a%20b%3Bc", "plain=again", "raw=x%20y", "full=v", "alias=1"]
    assert cookies[0] == "plain=a%20b%3Bc; path=/"  # the default path, as Swoole
    full = next(c for c in cookies if c.startswith("full="))
    for part in ("path=/p", "domain=example.com", "secure", "httponly"):
        assert part in full.lower()
    assert "expires=" in full.lower() and body == b"cookies"


@pytest.mark.parametrize("code", [201, 404, 418, 503])
def test_status_codes_with_a_body(server, code):
    reply, body = fetch(server.port, "GET", f"/status/{code}")
    assert reply.status == code and body == b"status body"


def test_bodyless_statuses_and_unknown_codes(server):
    with RawConnection(server.port) as conn:
        for code in (204, 304):
            reply = conn.request(get(f"/status/{code}"))
            assert reply.status == code and "content-length" not in reply.headers
        assert conn.request(get("/status-unknown")).body == b"ValueError"  # §17.47
        assert conn.request(get("/big?size=3")).body == b"aaa"  # nothing stray after the bodyless ones


def test_redirect_is_302_with_location_and_ends_the_response(server):
    reply, body = fetch(server.port, "GET", "/redirect?to=/target")
    assert reply.status == 302 and reply.getheader("Location") == "/target"
    assert server.wait("result", path="/redirect")["end_after_redirect"] is False
    reply, _ = fetch(server.port, "GET", "/redirect?to=https://example.com/x&code=301")
    assert reply.status == 301 and reply.getheader("Location") == "https://example.com/x"
    server.wait("result", path="/redirect")


def test_write_is_chunked_with_a_last_chunk(server):
    with RawConnection(server.port) as conn:
        reply = conn.request(get("/write"))
        assert reply.headers["transfer-encoding"] == "chunked" and "content-length" not in reply.headers
        assert reply.chunks == [b"first,", b"second,", b"third"]  # §17.44: ends with 0\r\n\r\n (read_response checks)
        assert conn.request(get("/big?size=5")).body == b"aaaaa"  # keep-alive after a chunked answer
    result = server.wait("result", path="/write")
    assert (result["end_with_data"], result["gzip_after_write"], result["sendfile_after_write"]) == ("ValueError", "StateError", "StateError")
    assert result["write_after_end"] is False and result["end_again"] is False
    reply, body = fetch(server.port, "GET", "/write")  # http.client de-chunks
    assert reply.getheader("Transfer-Encoding") == "chunked" and body == b"first,second,third"
    server.wait("result", path="/write")


def test_a_chunk_over_buffer_output_size_is_refused_and_the_response_goes_on(server):
    reply, body = fetch(server.port, "GET", "/write-too-big")
    assert body == b"fine"
    result = server.wait("result", path="/write-too-big")
    assert (result["too_big"], result["last_error"]) == (False, 1202)


@needs_curl
def test_write_read_back_with_curl(server):
    raw = curl("--raw", f"http://127.0.0.1:{server.port}/write").stdout
    assert raw == b"6\r\nfirst,\r\n7\r\nsecond,\r\n5\r\nthird\r\n0\r\n\r\n"
    assert curl(f"http://127.0.0.1:{server.port}/write").stdout == b"first,second,third"
    server.wait_n("result", 2, path="/write")


def test_write_in_http_1_0_is_a_raw_body_then_close(server):
    with RawConnection(server.port) as conn:
        reply = conn.request(b"GET /http10-write HTTP/1.0\r\n\r\n")
        assert "transfer-encoding" not in reply.headers and reply.body == b"raw body"
        assert reply.headers["connection"] == "close"


def test_end_twice_returns_false_and_a_silent_handler_gets_an_empty_200(server):
    with RawConnection(server.port) as conn:
        assert conn.request(get("/end-twice")).body == b"once"
        reply = conn.request(get("/nothing"))
        assert reply.status == 200 and reply.body == b"" and reply.headers["content-length"] == "0"
        assert conn.buffer == b""
    result = server.wait("result", path="/end-twice")
    assert (result["first"], result["second"], result["detach"]) == (True, False, False)


@pytest.mark.parametrize("accept,expected", [
    ("gzip", "gzip"), ("deflate", "deflate"), ("gzip, deflate", "gzip"), ("gzip;q=0, deflate", "deflate"),
    ("deflate;q=0.5, gzip;q=0.4", "deflate"), ("gzip;q=0", None), ("identity", None), (None, None), ("br", None),
])
def test_compression_is_negotiated_from_accept_encoding(server, accept, expected):
    headers = "" if accept is None else f"Accept-Encoding: {accept}\r\n"
    with RawConnection(server.port) as conn:
        reply = conn.request(get("/big?size=1000", extra=headers))
        assert reply.headers.get("content-encoding") == expected
        if expected == "gzip":
            assert gzip.decompress(reply.body) == b"a" * 1000
        elif expected == "deflate":
            assert zlib.decompress(reply.body) in (b"a" * 1000,) or zlib.decompress(reply.body, -15) == b"a" * 1000
        else:
            assert reply.body == b"a" * 1000
        if expected:
            assert "accept-encoding" in reply.headers.get("vary", "").lower()
            assert int(reply.headers["content-length"]) == len(reply.body) < 1000
        # under compression_min_length (20): sent as it is
        small = conn.request(get("/big?size=19", extra=headers))
        assert "content-encoding" not in small.headers and small.body == b"a" * 19


def test_gzip_forces_compression_and_streams_with_write(server):
    reply, body = fetch(server.port, "GET", "/gzip?level=9", {"Accept-Encoding": "gzip"})
    assert reply.getheader("Content-Encoding") == "gzip" and gzip.decompress(body) == b"compressible " * 200
    reply, body = fetch(server.port, "GET", "/gzip-write", {"Accept-Encoding": "gzip"})
    assert reply.getheader("Transfer-Encoding") == "chunked" and reply.getheader("Content-Encoding") == "gzip"
    assert gzip.decompress(body) == b"streamed " * 100 + b"and more " * 100
    assert fetch(server.port, "GET", "/gzip-bad-level")[1] == b"ValueError"


@needs_curl
def test_curl_compressed(server):
    out = curl("--compressed", "-D", "-", f"http://127.0.0.1:{server.port}/big?size=5000")
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert b"Content-Encoding: gzip" in head and body == b"a" * 5000  # curl offers deflate, gzip, br, zstd


def test_sendfile_whole_and_part_and_missing(server, tmp_path):
    data = os.urandom(300_000)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    with RawConnection(server.port) as conn:
        reply = conn.request(get(f"/sendfile?path={path}"))
        assert reply.status == 200 and reply.body == data and "content-type" not in reply.headers  # not guessed
        reply = conn.request(get(f"/sendfile?path={path}&offset=1000&length=5000"))
        assert reply.body == data[1000:6000] and reply.headers["content-length"] == "5000"
        reply = conn.request(get(f"/sendfile?path={path}&offset=299990"))
        assert reply.body == data[299990:]
        reply = conn.request(get(f"/sendfile?path={tmp_path}/missing"))
        assert reply.status == 404 and reply.body == b"sendfile False 2"  # ENOENT
        reply = conn.request(get(f"/sendfile?path={tmp_path}"))
        assert reply.status == 404 and reply.body.startswith(b"sendfile False ")  # a directory
        reply = conn.request(b"HEAD /sendfile?path=" + str(path).encode() + b" HTTP/1.1\r\nHost: t\r\n\r\n", head_only=True)
        assert reply.headers["content-length"] == str(len(data))
        assert conn.request(get("/big?size=2")).body == b"aa"  # no file bytes after the HEAD answer


def test_detach_then_create_from_a_timer(server):
    reply, body = fetch(server.port, "GET", "/detach-timer")
    assert body == b"from a timer" and reply.getheader("X-Created") == "timer"
    result = server.wait("result", path="/detach-timer")
    assert (result["detached"], result["detach_again"], result["end_after_detach"]) == (True, False, False)


def test_create_answers_a_head_request_with_the_head_only(server):
    with RawConnection(server.port) as conn:
        reply = conn.request(b"HEAD /detach-timer HTTP/1.1\r\nHost: t\r\n\r\n", head_only=True)
        assert reply.status == 200
        server.wait("result", path="/detach-timer")
        assert conn.request(get("/big?size=3")).body == b"aaa"  # nothing stray before the next answer


def test_create_answers_an_http_1_0_request_and_closes(server):
    with RawConnection(server.port) as conn:
        reply = conn.request(b"GET /detach-timer HTTP/1.0\r\n\r\n")
        server.wait("result", path="/detach-timer")
        assert reply.body == b"from a timer" and reply.headers["connection"] == "close"
        assert conn.closed_by_server(timeout=2)


def test_create_for_a_connection_that_closed_meanwhile_is_false(server):
    with RawConnection(server.port) as conn:
        conn.send(get("/detach-gone"))
    result = server.wait("result", path="/detach-gone")
    assert (result["created"], result["last_error"]) == (False, 1005)


def test_a_connection_close_header_set_by_the_application_closes(server):
    with RawConnection(server.port) as conn:
        reply = conn.request(get("/close-header"))
        assert reply.body == b"bye" and reply.headers["connection"] == "close"
        assert conn.closed_by_server()


def test_compression_switched_off_or_tuned_on_a_port(server):
    plain, strong = server.ports[1], server.ports[2]
    with RawConnection(plain) as conn:
        reply = conn.request(get("/big?size=5000", extra="Accept-Encoding: gzip\r\n"))
        assert "content-encoding" not in reply.headers and reply.body == b"a" * 5000
        forced = conn.request(get("/gzip", extra="Accept-Encoding: gzip\r\n"))  # gzip() still compresses
        assert forced.headers["content-encoding"] == "gzip"
    with RawConnection(strong) as conn:
        assert "content-encoding" not in conn.request(get("/big?size=1999", extra="Accept-Encoding: gzip\r\n")).headers
        reply = conn.request(get("/big?size=100000", extra="Accept-Encoding: gzip\r\n"))
        assert reply.headers["content-encoding"] == "gzip" and gzip.decompress(reply.body) == b"a" * 100000
        assert reply.body[8] == 2  # gzip XFL byte: 2 = the slowest compression (level 9)


def test_detach_then_create_in_another_worker(server):
    for _ in range(4):  # whichever worker gets the request, the other one answers
        with RawConnection(server.port) as conn:
            reply = conn.request(get("/detach-message"))
            answered_by = int(reply.headers["x-answered-by"])
            assert reply.body == f"from worker {answered_by} for {1 - answered_by}".encode()
            assert conn.request(get("/big?size=4")).body == b"aaaa"  # the connection lives on


def test_create_for_an_unknown_fd_is_false(server):
    assert json.loads(fetch(server.port, "GET", "/create-bad")[1]) == {"unknown": False, "last_error": 1005}


def test_server_close_of_the_response_fd(server):
    with RawConnection(server.port) as conn:
        conn.send(get("/close"))
        assert conn.closed_by_server() and conn.buffer == b""
