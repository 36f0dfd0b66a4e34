"""http.Server end to end, the request side (contract §8, §18.9): what `on_request` sees with
real clients (http.client, urllib.request, curl) and a raw socket, in every mode.

One server per mode for the module (`echo_app`: it answers with what it saw, as JSON).
"""

from __future__ import annotations

import http.client
import socket
import urllib.parse
import urllib.request

import pytest

from http_server_helpers import (
    RawConnection, curl, decode_echo, echo_app, get, module_server, needs_curl, server_stats, wait_until,
)

pytestmark = pytest.mark.timeout(60)

server = module_server(echo_app, {"worker_num": 1, "package_max_length": 64 * 1024})


def echo_via_http_client(port: int, method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, url, body=body, headers=headers or {})
        reply = conn.getresponse()
        assert reply.status == 200, reply.status
        return decode_echo(reply.read())
    finally:
        conn.close()


def test_header_server_and_get_with_http_client(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/some/p%20ath?x=1&y=two&x=3&empty=&a%5Bb%5D=c", headers={"X-Custom-Thing": "Value One"})
    local_port = conn.sock.getsockname()[1]
    reply = conn.getresponse()
    seen = decode_echo(reply.read())
    conn.close()
    assert reply.status == 200 and reply.getheader("Content-Type") == "application/json"
    assert seen["header"]["x-custom-thing"] == "Value One"
    assert all(key == key.lower() for key in seen["header"])  # §17.45
    assert seen["header"]["host"] == f"127.0.0.1:{server.port}"
    info = seen["server"]
    assert info["request_method"] == "GET"
    assert info["request_uri"] == "/some/p%20ath" and info["path_info"] == "/some/p ath"
    assert info["query_string"] == "x=1&y=two&x=3&empty=&a%5Bb%5D=c"
    assert info["server_protocol"] == "HTTP/1.1"
    assert info["server_port"] == server.port
    assert info["remote_addr"] == "127.0.0.1" and info["remote_port"] == local_port
    assert isinstance(info["request_time"], int) and abs(info["request_time"] - info["request_time_float"]) < 1
    assert isinstance(info["master_time"], int)
    assert seen["get"]["y"] == "two" and seen["get"]["empty"] == "" and seen["get"]["x"] in ("1", "3")
    assert seen["fd"] > 0


def test_get_keeps_at_most_128_parameters(server):
    query = "&".join(f"k{i}={i}" for i in range(200))
    seen = echo_via_http_client(server.port, "GET", "/many?" + query)
    assert len(seen["get"]) == 128  # §17.45
    assert seen["server"]["query_string"] == query


def test_urlencoded_post_with_urllib_and_more_than_128_keys_truncated(server):
    fields = {f"f{i}": f"v {i}&=" for i in range(200)}
    body = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/form", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as reply:  # urllib sets the urlencoded type
        seen = decode_echo(reply.read())
    assert len(seen["post"]) == 128
    assert seen["post"]["f0"] == "v 0&=" and seen["post"]["f127"] == "v 127&="
    assert seen["raw"] == body  # raw_content() is the body as sent
    assert seen["data"].endswith(b"\r\n\r\n" + body) and seen["data"].startswith(b"POST /form HTTP/1.1\r\n")


def test_post_is_only_parsed_for_form_types_and_form_methods(server):
    json_body = b'{"a": 1}'
    seen = echo_via_http_client(server.port, "POST", "/j", json_body, {"Content-Type": "application/json"})
    assert seen["post"] == {} and seen["raw"] == json_body
    seen = echo_via_http_client(server.port, "PUT", "/p", b"a=1&b=2", {"Content-Type": "application/x-www-form-urlencoded"})
    assert seen["post"] == {"a": "1", "b": "2"}
    seen = echo_via_http_client(server.port, "OPTIONS", "/o", b"a=1", {"Content-Type": "application/x-www-form-urlencoded"})
    assert seen["post"] == {} and seen["raw"] == b"a=1"


@needs_curl
def test_cookies_and_repeated_headers_with_curl(server):
    out = curl(f"http://127.0.0.1:{server.port}/c", "-b", "session=abc%20def; theme=dark", "-H", "X-Rep: one", "-H", "X-Rep: two")
    seen = decode_echo(out.stdout)
    assert seen["cookie"] == {"session": "abc def", "theme": "dark"}
    assert seen["header"]["x-rep"] == "one, two"  # §18.9: repeated fields joined
    assert seen["header"]["user-agent"].startswith("curl/")


def test_chunked_request_body_is_dechunked(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/chunked", body=iter([b"hello ", b"chunked ", b"world"]), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    seen = decode_echo(conn.getresponse().read())
    conn.close()
    assert seen["raw"] == b"hello chunked world"
    assert seen["data"].endswith(b"\r\n\r\nhello chunked world")  # get_data(): head + de-chunked body


def test_head_gets_the_head_only_with_the_length_the_body_would_have(server):
    with RawConnection(server.port) as conn:
        full = conn.request(get("/fixed/1234"))
        assert full.body == b"f" * 1234
        head = conn.request(b"HEAD /fixed/1234 HTTP/1.1\r\nHost: t\r\n\r\n", head_only=True)
        assert head.status == 200 and head.headers["content-length"] == "1234"
        # nothing followed the head: the next answer on the connection is the next request's
        assert conn.request(get("/after")).status == 200
        assert conn.buffer == b""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("HEAD", "/fixed/10")
    reply = conn.getresponse()
    assert reply.status == 200 and reply.read() == b""
    conn.close()


def test_keep_alive_in_http_1_1_and_1_0(server):
    with RawConnection(server.port) as conn:  # HTTP/1.1: keep-alive by default
        for index in range(3):
            reply = conn.request(get(f"/ka/{index}"))
            assert reply.status == 200 and reply.headers["connection"] == "keep-alive"
        reply = conn.request(get("/last", extra="Connection: close\r\n"))
        assert reply.headers["connection"] == "close"
        assert conn.closed_by_server() and conn.buffer == b""
    with RawConnection(server.port) as conn:  # HTTP/1.0: close unless asked
        reply = conn.request(b"GET /10 HTTP/1.0\r\n\r\n")
        assert reply.version == "HTTP/1.1"  # the server's own version (RFC 9110 §2.5), framed for 1.0
        assert reply.headers["connection"] == "close" and conn.closed_by_server()
    with RawConnection(server.port) as conn:  # HTTP/1.0 with Connection: keep-alive
        for index in range(3):
            reply = conn.request(f"GET /10ka/{index} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
            assert reply.status == 200 and reply.headers["connection"] == "keep-alive"
            assert decode_echo(reply.body)["server"]["server_protocol"] == "HTTP/1.0"
        assert not conn.closed_by_server(timeout=0.3)


def test_ten_pipelined_requests_are_answered_in_order(server):
    with RawConnection(server.port) as conn:
        conn.send(b"".join(get(f"/pipe/{index}") for index in range(9)) + b"POST /pipe/9 HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody")
        answers = [decode_echo(conn.read_response().body) for _ in range(10)]
        assert [a["server"]["request_uri"] for a in answers] == [f"/pipe/{index}" for index in range(10)]
        assert answers[9]["raw"] == b"body"
        assert len({a["fd"] for a in answers}) == 1


def test_pipelined_good_requests_are_answered_before_the_error_of_a_bad_one(server, request):
    with RawConnection(server.port) as conn:
        conn.send(get("/good/1") + get("/good/2") + b"GET /bad HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n")
        replies = []
        while True:
            try:
                replies.append(conn.read_response())
            except EOFError:
                break
    assert [reply.status for reply in replies] == [200, 200, 400]
    assert [decode_echo(reply.body)["server"]["request_uri"] for reply in replies[:2]] == ["/good/1", "/good/2"]


def test_expect_100_continue_with_a_raw_socket_that_waits_for_it(server):
    body = b"x" * 5000
    with RawConnection(server.port) as conn:
        conn.send(b"POST /expect HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
        interim = conn.read_response()
        assert interim.status == 100 and interim.body == b""
        conn.send(body)
        reply = conn.read_response()
        assert reply.status == 200 and decode_echo(reply.body)["raw"] == body
        # a client that sends the body right away gets the same answer (the 100 may come too)
        conn.send(b"POST /expect2 HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc")
        reply = conn.read_response()
        if reply.status == 100:
            reply = conn.read_response()
        assert decode_echo(reply.body)["raw"] == b"abc"


@needs_curl
def test_expect_100_continue_with_curl(server, tmp_path):
    body = tmp_path / "body"
    body.write_bytes(b"y" * 40000)
    # curl adds Expect: 100-continue by itself only above a size that depends on its version
    # (1 KiB before 8.x, 1 MiB after): ask for it, curl then waits for the 100 before the body
    out = curl("-v", "--data-binary", f"@{body}", "-H", "Expect: 100-continue", "-H", "Content-Type: application/octet-stream",
               "--expect100-timeout", "20", f"http://127.0.0.1:{server.port}/curl100")
    assert b"> Expect: 100-continue" in out.stderr and b"< HTTP/1.1 100 Continue" in out.stderr
    assert decode_echo(out.stdout)["raw"] == body.read_bytes()


def test_content_length_over_package_max_length_is_400_and_close_without_on_request(server):
    with RawConnection(server.port) as conn:
        reply = conn.request(b"POST /emit/too-big HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\n\r\n" + b"z" * 1000)
        assert reply.status == 400 and reply.headers["connection"] == "close"
        assert conn.closed_by_server()
    with RawConnection(server.port) as conn:  # with Expect: no 100 Continue, the 400 at once
        reply = conn.request(b"POST /emit/too-big-expect HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 70000\r\n\r\n")
        assert reply.status in (400, 413) and conn.closed_by_server()
    assert echo_via_http_client(server.port, "GET", "/emit/marker")["server"]["request_uri"] == "/emit/marker"
    server.wait("request", path="/emit/marker")
    assert not [e for e in server.drain() if e["event"] == "request" and e["path"].startswith("/emit/too-big")]


def test_a_handler_that_raises_is_counted_and_the_connection_still_serves(server):
    before = server_stats(server.port)["callback_error_count"]
    with RawConnection(server.port) as conn:
        reply = conn.request(get("/emit/raise"))
        server.wait("request", path="/emit/raise")
        # The worker logs, counts and carries on; the client gets a 500 (as from uvicorn and
        # gunicorn) and the connection closes: the handler's state for it is unknown.
        assert reply.status == 500 and reply.body == b"Internal Server Error"
        assert conn.closed_by_server()
    with RawConnection(server.port) as conn:
        assert decode_echo(conn.request(get("/after-raise")).body)["server"]["request_uri"] == "/after-raise"
    assert wait_until(lambda: server_stats(server.port)["callback_error_count"] == before + 1, timeout=5)


def test_request_count_and_no_leaked_connections(server):
    first = server_stats(server.port)
    with RawConnection(server.port) as conn:
        for index in range(5):
            conn.request(get(f"/count/{index}"))
    def grown() -> dict | None:
        stats = server_stats(server.port)
        return stats if stats["request_count"] >= first["request_count"] + 6 else None

    stats = wait_until(grown)
    assert stats, "request_count did not grow by the 5 requests + the stats request"
    assert stats["request_count"] == first["request_count"] + 6  # once per request (§5.6)
    # the stats connection itself is the only one open while stats() runs
    assert wait_until(lambda: server_stats(server.port)["connection_num"] == 1)


def test_ipv4_client_address_over_a_raw_socket_with_http_1_0_absolute_form(server):
    with RawConnection(server.port) as conn:
        reply = conn.request(f"GET http://127.0.0.1:{server.port}/abs?q=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        seen = decode_echo(reply.body)
        assert seen["server"]["request_uri"] == "/abs" and seen["get"] == {"q": "1"}
        assert seen["server"]["remote_port"] == conn.sock.getsockname()[1]


def test_a_client_that_resets_mid_body_does_not_disturb_others(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(b"POST /cut HTTP/1.1\r\nHost: t\r\nContent-Length: 50000\r\n\r\n" + b"a" * 10000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # RST
    seen = echo_via_http_client(server.port, "GET", "/still-fine")
    assert seen["server"]["request_uri"] == "/still-fine" and seen["get"] == {}
    assert wait_until(lambda: server_stats(server.port)["connection_num"] == 1)  # the reset one is released
