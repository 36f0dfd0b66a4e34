"""`threadswoole serve` with WSGI applications, in every mode, checked by wsgiref.validate.

The application (tests/serve_apps/wsgi_apps.py:app) is wrapped in the standard library's
validator, which asserts on every request that the server keeps its side of PEP 3333 (environ
keys and types, wsgi.input, start_response, close() of the iterable). Clients are http.client
and raw sockets; every server is the real command in a child process.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time

import pytest

from serve_harness import ServeProcess, pipeline_and_read_late

MODES = ["base", "process", "thread"]
WORKERS = {"base": 1, "process": 2, "thread": 2}


@pytest.fixture(scope="module", params=MODES)
def server(request):
    mode = request.param
    with ServeProcess(["wsgi_apps:app", "--mode", mode, "--workers", str(WORKERS[mode])]) as process:
        process.mode = mode
        yield process
    assert "without being closed" not in process.output, process.output[-2000:]
    assert "AssertionError" not in process.output, process.output[-4000:]


@pytest.fixture(scope="module", params=MODES)
def bad_server(request):
    mode = request.param
    with ServeProcess(["wsgi_apps:bad", "--mode", mode, "--workers", str(WORKERS[mode])]) as process:
        process.mode = mode
        yield process


def test_hello_and_keep_alive(server):
    connection = server.connection()
    try:
        for _ in range(3):
            connection.request("GET", "/hello")
            response = connection.getresponse()
            assert response.status == 200
            assert response.read() == b"Hello, World!"
            # (the validator wraps the list in an iterator of unknown length: chunked)
            assert response.getheader("Transfer-Encoding") == "chunked"
            assert response.getheader("Server") == "threadswoole"
            assert response.getheader("Date")
            assert not response.will_close
    finally:
        connection.close()


def test_environ(server):
    response, body = server.request("GET", "/environ/%C3%A9t%C3%A9?a=1&b=%20", headers={
        "X-Custom": "value", "X_Smuggled": "dropped", "Cookie": "a=1"})
    environ = json.loads(body)
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["PATH_INFO"] == "/environ/été".encode().decode("latin-1")  # bytes as latin-1 (PEP 3333)
    assert environ["QUERY_STRING"] == "a=1&b=%20"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["HTTP_X_CUSTOM"] == "value"
    assert "HTTP_X_SMUGGLED" not in environ  # names with "_" never become CGI variables
    assert environ["HTTP_COOKIE"] == "a=1"
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.multithread"] is (server.mode == "thread")
    assert environ["wsgi.multiprocess"] is (server.mode != "thread" and WORKERS[server.mode] > 1)
    assert environ["wsgi.version"] == [1, 0]
    host, port = server.host_port
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == (host, str(port))


def test_environ_follows_each_head_on_one_connection(server):
    """A connection repeating its last head reuses that head's environ (WsgiHandler.request):
    a changed path, header or body on the same keep-alive connection must still show."""
    connection = server.connection()
    try:
        seen = []
        for path, headers, body in [("/environ/a?x=1", {}, None), ("/environ/a?x=1", {}, None),
                                    ("/environ/b", {"X-Custom": "two"}, None), ("/environ/a?x=1", {}, None),
                                    ("/echo", {}, b"first"), ("/echo", {}, b"other")]:
            connection.request("POST" if body else "GET", path, body=body, headers=headers)
            response = connection.getresponse()
            assert response.status == 200
            seen.append(response.read())
        first, again, other, back = (json.loads(item) for item in seen[:4])
        assert first == again == back and first["PATH_INFO"] == "/environ/a" and first["QUERY_STRING"] == "x=1"
        assert "HTTP_X_CUSTOM" not in first
        assert other["PATH_INFO"] == "/environ/b" and other["QUERY_STRING"] == "" and other["HTTP_X_CUSTOM"] == "two"
        assert seen[4:] == [b"first", b"other"]  # same head bytes, each request its own wsgi.input
    finally:
        connection.close()


@pytest.mark.parametrize("size", [0, 10, 70_000, 3 * 1024 * 1024])
def test_request_body_whole_and_streamed(server, size):
    """Bodies up to 64 KiB arrive whole; larger ones stream through wsgi.input."""
    payload = os.urandom(size)
    response, body = server.request("POST", "/echo", body=payload, headers={"Content-Type": "application/octet-stream"})
    assert response.status == 200
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_chunked_request_body(server):
    payload = [os.urandom(50_000) for _ in range(8)]

    def chunks():
        yield from payload

    response, body = server.request("POST", "/echo?size=1000", body=chunks())  # http.client: chunked
    assert response.status == 200
    assert body == b"".join(payload)


def test_readline_iteration(server):
    lines = b"".join(b"line %d\n" % i for i in range(20_000))  # 200 KiB: streamed
    response, body = server.request("POST", "/lines", body=lines)
    assert body == b"20000 lines, last line 19999"


def test_streaming_response_is_chunked_and_closed(server):
    response, body = server.request("GET", "/stream?n=50&size=1000")
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert body == b"".join(b"%d" % (i % 10) * 1000 for i in range(50))
    if server.mode != "process":  # (PROCESS: /closed may reach the other worker process; the
        response, closed = server.request("GET", "/closed")  # validator checks close() anyway)
        assert int(closed) >= 1


def test_http10_without_length_ends_with_the_connection(server):
    host, port = server.host_port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"GET /stream?n=3&size=4 HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert body == b"000011112222"


def test_write_callable(server):
    response, body = server.request("GET", "/write")
    assert body == b"written directly then returned"


def test_file_wrapper(server, bad_server, tmp_path):
    path = tmp_path / "data.bin"
    data = os.urandom(3 * 1024 * 1024 + 7)
    path.write_bytes(data)
    response, body = server.request("GET", f"/file?path={path}")  # validated: iterated
    assert body == data
    response, body = bad_server.request("GET", f"/file?path={path}")  # the wrapper itself: sendfile
    assert response.getheader("Content-Length") == str(len(data))
    assert body == data
    response, body = bad_server.request("GET", f"/file?path={path}&offset=1000")
    assert body == data[1000:] and response.getheader("Content-Length") == str(len(data) - 1000)


def test_exc_info_replaces_the_head(server):
    response, body = server.request("GET", "/exc-info")
    assert response.status == 503
    assert body == b"the error page"


def test_head_request_has_no_body(server):
    host, port = server.host_port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b"Hello, World!") < 1 and time.monotonic() < deadline:
            data += sock.recv(65536)
    first, _, rest = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in first  # a HEAD answer announces no body framing of its own
    assert rest.startswith(b"HTTP/1.1 200 OK")  # the HEAD answer carried no body


def test_cookies_and_redirect(server):
    response, body = server.request("GET", "/cookies")
    assert response.status == 302
    assert response.getheader("Location") == "/hello"
    assert [v for k, v in response.getheaders() if k == "Set-Cookie"] == ["a=1; Path=/", "b=2; Path=/"]
    response, body = server.request("GET", "/empty")
    assert response.status == 204 and body == b"" and response.getheader("Content-Length") is None


def test_pipelined_requests_answer_in_order(server):
    host, port = server.host_port
    with socket.create_connection((host, port), timeout=10) as sock:
        requests = b"".join(b"GET /stream?n=2&size=%d HTTP/1.1\r\nHost: x\r\n\r\n" % size for size in (1, 2, 3))
        sock.sendall(requests + b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 4
    assert data.index(b"1\r\n0\r\n") < data.index(b"2\r\n00\r\n") < data.index(b"3\r\n000\r\n") < data.index(b"Hello")



# 10 MB of answers, far over socket_buffer_size/2 (the Host parks the connection's next requests,
# PROCESS also past 64 unfinished ones) and the kernel's buffers: none may be lost.
def test_a_client_that_pipelines_many_requests_and_reads_late_gets_every_answer(server):
    request = b"GET /stream?n=1&size=2000 HTTP/1.1\r\nHost: x\r\n\r\n"
    assert pipeline_and_read_late(server, request, b"0" * 2000) == 5000

# -- bad applications: a 500 (or a cut), the traceback logged, the worker carries on ---------------
def _worker_still_serves(process):
    response, body = process.request("GET", "/fine")
    assert (response.status, body) == (200, b"fine")
    assert response.getheader("Content-Length") == "4"  # a one-item list: its length is known


@pytest.mark.parametrize("path,what", [
    ("/raise-before", "failing before start_response"),
    ("/non-iterable", "non-iterable"),
    ("/no-start-response", "without calling start_response"),
    ("/hop-by-hop", "hop-by-hop header 'Keep-Alive'"),
    ("/bad-header", "CR, LF or NUL"),
])
def test_application_errors_are_500(bad_server, path, what):
    response, body = bad_server.request("GET", path)
    assert response.status == 500
    assert body == b"500 Internal Server Error\n"
    bad_server.wait_for(what)
    bad_server.wait_for(f"GET {path}: ")  # the logged line names the request
    _worker_still_serves(bad_server)


def test_error_after_the_head_cuts_the_response(bad_server):
    data = _read_to_close(bad_server, b"GET /raise-after HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK") and b"first part" in data
    assert not data.endswith(b"0\r\n\r\n")  # no last chunk: the client sees the body was cut
    bad_server.wait_for("failing in the middle of the body")
    _worker_still_serves(bad_server)


def _read_to_close(process, request: bytes) -> bytes:
    host, port = process.host_port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data  # the server closed the connection
            data += chunk


def test_a_bad_request_behind_a_call_in_the_application_thread_is_answered_after_it(server):
    """A body over the codec's 64 KiB buffer streams, so its call runs in the application thread;
    the client waits for 100 Continue (the head was read), then sends the body and a malformed
    request in one write: the 400 waits for the call's answer (WsgiHandler.failed), then the
    connection closes. Without that hook the 400 went first and the close dropped the 200."""
    host, port = server.host_port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /echo?size=200000 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"e" * 100000 + b"BAD LINE\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):  # up to the server's close
            data += chunk
    statuses = [part.split(b"\r\n", 1)[0] for part in data.split(b"HTTP/1.1 ")[1:]]
    assert statuses == [b"200 OK", b"400 Bad Request"] and b"e" * 100000 in data
    assert b"X-Thread: MainThread" not in data  # (the streamed call ran in the application thread)


def test_content_length_is_enforced(bad_server):
    """Past its Content-Length: the rest is not sent, the connection closes (keep-alive asked);
    short of it: the connection closes too, so the client sees the cut."""
    data = _read_to_close(bad_server, b"GET /overrun HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.endswith(b"\r\n\r\n12345")
    bad_server.wait_for("more than its Content-Length")
    data = _read_to_close(bad_server, b"GET /underrun HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.endswith(b"\r\n\r\n12345")
    bad_server.wait_for("wrote 5 of 10 body bytes")
    _worker_still_serves(bad_server)


def test_connection_close_header_is_honoured(bad_server):
    response, body = bad_server.request("GET", "/connection-close")
    assert body == b"closing" and response.will_close
    assert response.getheader("Connection") == "close"


def test_unread_body(bad_server):
    """A small unread rest is skipped (the connection stays usable); a large one closes it."""
    connection = bad_server.connection()
    try:
        connection.request("POST", "/no-read", body=os.urandom(200_000))
        response = connection.getresponse()
        assert response.read() == b"did not read the body"
        connection.request("GET", "/fine")
        assert connection.getresponse().read() == b"fine"
    finally:
        connection.close()
    host, port = bad_server.host_port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /no-read HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 100_000)
        data = sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 200 OK")
        sent = 0
        try:
            while sent < 100_000_000:
                sock.sendall(b"x" * 65536)
                sent += 65536
        except OSError:
            pass  # the server closed the connection: it would not read 100 MB nobody wants
        assert sent < 100_000_000
    _worker_still_serves(bad_server)


def test_slow_client_during_a_streaming_response(bad_server):
    """A client that stops reading a 64 MiB response: the server holds a bounded amount (the
    application waits: the response is produced as fast as the client takes it), then the
    client gets every byte, and the worker carries on."""
    host, port = bad_server.host_port
    before = sum(p.memory_info().rss for p in bad_server.tree())
    slow = socket.create_connection((host, port), timeout=30)
    try:
        slow.sendall(b"GET /big-stream?mib=64 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(1.0)  # not reading: the socket buffers fill, then the channel, then it waits
        during = sum(p.memory_info().rss for p in bad_server.tree())
        received = 0
        while received < 64 * 1024 * 1024:
            data = slow.recv(1 << 20)
            if not data:
                break
            received += len(data)
        assert received >= 64 * 1024 * 1024  # the head and every body byte
        assert during - before < 32 * 1024 * 1024, (before, during)
    finally:
        slow.close()
    _worker_still_serves(bad_server)
