"""http.Server end to end, listeners (contract §5.4, §5.8, §8): HTTP on a port of a plain
Server and a raw port on an http.Server, inheritance, a Unix-socket HTTP server, TLS
(SWOOLE_SSL, curl -k and http.client), and the configuration errors, in every mode.
"""

from __future__ import annotations

import http.client
import json
import os
import socket

import pytest

import threadswoole
from http_server_helpers import RawConnection, curl, get, http_server_class, needs_curl
from threadswoole.errors import ConfigError, StateError
from tls_certs import Certs, have_openssl, make_certs

pytestmark = pytest.mark.timeout(60)
needs_openssl = pytest.mark.skipif(not have_openssl(), reason="the openssl command makes the test certificates")


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    return make_certs(str(tmp_path_factory.mktemp("certs")))


def test_an_http_port_on_a_plain_tcp_server(run_server, mode):
    def setup(server, emit):
        server.on("receive", lambda srv, fd, reactor_id, data: srv.send(fd, b"raw:" + data))
        port = server.add_listener("127.0.0.1", 0, threadswoole.SWOOLE_SOCK_TCP)
        port.set({"open_http_protocol": True})
        port.on("request", lambda request, response: response.end(b"http " + request.server["request_uri"].encode()))

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    with socket.create_connection(("127.0.0.1", handle.port), timeout=5) as raw:
        raw.sendall(get("/not-parsed"))
        assert raw.recv(4096).startswith(b"raw:GET /not-parsed HTTP/1.1")  # the main port stays raw
    with RawConnection(handle.ports[1]) as conn:
        for index in range(3):
            assert conn.request(get(f"/p/{index}")).body == f"http /p/{index}".encode()
    assert handle.stop() == 0


def test_a_raw_port_on_an_http_server_and_inheritance(run_server, mode):
    def setup(server, emit):
        from threadswoole.http import Response

        server.on("request", lambda request, response: response.end(b"main " + request.server["request_uri"].encode()))
        raw = server.add_listener("127.0.0.1", 0, threadswoole.SWOOLE_SOCK_TCP)
        raw.set({"open_http_protocol": False})
        raw.on("connect", lambda srv, fd, reactor_id: emit("connect", fd=fd))
        raw.on("receive", lambda srv, fd, reactor_id, data: srv.send(fd, b"raw:" + data + b" create=%r" % (Response.create(fd),)))
        inherited = server.add_listener("127.0.0.1", 0, threadswoole.SWOOLE_SOCK_TCP)  # speaks HTTP (§5.8)
        overridden = server.add_listener("127.0.0.1", 0, threadswoole.SWOOLE_SOCK_TCP)
        overridden.on("request", lambda request, response: response.end(b"port's own callback"))
        emit("settings", raw=raw.setting["open_http_protocol"], inherited=inherited.setting["open_http_protocol"])

    handle = run_server(setup, mode=mode, settings={"worker_num": 1}, server_class=http_server_class(), wait_for=None)
    settings = handle.wait("settings")
    assert (settings["raw"], settings["inherited"]) == (False, True)
    handle.wait("__ready__")
    main, raw, inherited, overridden = handle.ports
    with socket.create_connection(("127.0.0.1", raw), timeout=5) as sock:
        handle.wait("connect")
        sock.sendall(b"not http at all\r\n")
        assert sock.recv(4096) == b"raw:not http at all\r\n create=False"  # not an HTTP connection
    assert RawConnection(main).request(get("/m")).body == b"main /m"
    assert RawConnection(inherited).request(get("/i")).body == b"main /i"
    assert RawConnection(overridden).request(get("/o")).body == b"port's own callback"
    assert handle.stop() == 0


def test_ipv6_and_the_server_port_of_each_listener(run_server, mode):
    def setup(server, emit):
        def on_request(request, response):
            info = request.server
            response.end(json.dumps([info["remote_addr"], info["remote_port"], info["server_port"]]))

        server.on("request", on_request)
        server.add_listener("::1", 0, threadswoole.SWOOLE_SOCK_TCP6)
        server.add_listener("127.0.0.1", 0, threadswoole.SWOOLE_SOCK_TCP)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1}, server_class=http_server_class())
    try:
        v6 = socket.create_connection(("::1", handle.ports[1]), timeout=5)
    except OSError:
        pytest.skip("no IPv6 loopback")
    with RawConnection(sock=v6) as conn:
        assert json.loads(conn.request(get("/six")).body) == ["::1", v6.getsockname()[1], handle.ports[1]]
    with RawConnection(handle.ports[2]) as conn:
        assert json.loads(conn.request(get("/other")).body) == ["127.0.0.1", conn.sock.getsockname()[1], handle.ports[2]]
    assert handle.stop() == 0


@needs_curl
def test_an_http_server_on_a_unix_socket_with_curl(run_server, mode, tmp_path):
    path = str(tmp_path / "http.sock")

    def setup(server, emit):
        def on_request(request, response):
            response.header("Content-Type", "application/json")
            response.end(json.dumps({"uri": request.server["request_uri"], "body": request.raw_content().decode(),
                                     "remote_addr": request.server["remote_addr"]}))

        server.on("request", on_request)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1}, host=path, sock_type=threadswoole.SWOOLE_SOCK_UNIX_STREAM,
                        server_class=http_server_class())
    out = curl("--unix-socket", path, "http://localhost/over/unix", "-d", "posted")
    seen = json.loads(out.stdout)
    assert (seen["uri"], seen["body"]) == ("/over/unix", "posted")
    with RawConnection(unix=path) as conn:  # keep-alive over the Unix socket too
        assert [json.loads(conn.request(get(f"/k{index}")).body)["uri"] for index in range(3)] == ["/k0", "/k1", "/k2"]
    assert handle.stop() == 0
    assert not os.path.exists(path)


def tls_app(server, emit):
    def on_request(request, response):
        if request.server["request_uri"] == "/big":
            response.end(b"t" * (1024 * 1024))
            return
        if request.server["request_uri"] == "/file":
            response.sendfile(request.get["path"])
            return
        response.end(f"tls {request.server['request_uri']} {len(request.raw_content())}".encode())

    server.on("request", on_request)


@needs_openssl
def test_https_with_http_client_keep_alive_and_a_large_body(run_server, mode, certs, tmp_path):
    handle = run_server(tls_app, mode=mode, sock_type=threadswoole.SWOOLE_SOCK_TCP | threadswoole.SWOOLE_SSL,
                        settings={"worker_num": 1, "ssl_cert_file": certs.server_cert, "ssl_key_file": certs.server_key},
                        server_class=http_server_class())
    context = certs.client_context(with_cert=None)
    conn = http.client.HTTPSConnection("localhost", handle.port, context=context, timeout=10)
    conn.request("GET", "/one")
    assert conn.getresponse().read() == b"tls /one 0"
    conn.request("POST", "/two", body=b"p" * 300_000)
    assert conn.getresponse().read() == b"tls /two 300000"
    conn.request("GET", "/big")
    assert conn.getresponse().read() == b"t" * (1024 * 1024)
    data = os.urandom(3 * 1024 * 1024)
    (tmp_path / "file").write_bytes(data)
    conn.request("GET", f"/file?path={tmp_path / 'file'}")  # sendfile over TLS
    assert conn.getresponse().read() == data
    conn.close()
    raw = socket.create_connection(("127.0.0.1", handle.port), timeout=10)
    tls = context.wrap_socket(raw, server_hostname="localhost")
    with RawConnection(sock=tls) as pipelined:  # pipelined requests over TLS
        pipelined.send(b"".join(get(f"/p{index}") for index in range(10)))
        assert [pipelined.read_response().body for _ in range(10)] == [f"tls /p{index} 0".encode() for index in range(10)]
    assert handle.stop() == 0


@needs_openssl
@needs_curl
def test_https_with_curl_k_and_plaintext_http_refused(run_server, mode, certs, tmp_path):
    handle = run_server(tls_app, mode=mode, sock_type=threadswoole.SWOOLE_SOCK_TCP | threadswoole.SWOOLE_SSL,
                        settings={"worker_num": 1, "ssl_cert_file": certs.server_cert, "ssl_key_file": certs.server_key},
                        server_class=http_server_class())
    body = tmp_path / "body"
    body.write_bytes(b"u" * 50_000)
    out = curl("-k", f"https://127.0.0.1:{handle.port}/curl", "--data-binary", f"@{body}", "-H", "Expect: 100-continue")
    assert out.stdout == b"tls /curl 50000"
    out = curl("--cacert", certs.ca, f"https://localhost:{handle.port}/verified")
    assert out.stdout == b"tls /verified 0"
    plain = curl("-m", "5", f"http://127.0.0.1:{handle.port}/plain", check=False)  # no TLS: no answer
    assert plain.returncode != 0 and b"tls" not in plain.stdout
    assert curl("-k", f"https://127.0.0.1:{handle.port}/after").stdout == b"tls /after 0"
    assert handle.stop() == 0


@needs_openssl
def test_a_tls_http_port_on_a_plain_http_server(run_server, mode, certs):
    def setup(server, emit):
        tls_app(server, emit)
        port = server.add_listener("127.0.0.1", 0, threadswoole.SWOOLE_SOCK_TCP | threadswoole.SWOOLE_SSL)
        port.set({"ssl_cert_file": certs.server_cert, "ssl_key_file": certs.server_key})

    handle = run_server(setup, mode=mode, settings={"worker_num": 1}, server_class=http_server_class())
    assert RawConnection(handle.port).request(get("/plain")).body == b"tls /plain 0"
    conn = http.client.HTTPSConnection("localhost", handle.ports[1], context=certs.client_context(with_cert=None), timeout=10)
    conn.request("GET", "/secure")
    assert conn.getresponse().read() == b"tls /secure 0"
    conn.close()
    assert handle.stop() == 0


def test_open_http2_protocol_is_a_config_error_with_a_clear_message():
    server = http_server_class()("127.0.0.1", 0)
    with pytest.raises(ConfigError, match="HTTP/2"):
        server.set({"open_http2_protocol": True})
    with pytest.raises(ConfigError, match="HTTP/2"):
        server.ports[0].set({"open_http2_protocol": True})
    server.set({"open_http2_protocol": False})  # False is accepted (nothing to refuse)
    ssl_server = threadswoole.Server("127.0.0.1", 0, threadswoole.SWOOLE_BASE, threadswoole.SWOOLE_SOCK_TCP | threadswoole.SWOOLE_SSL)
    with pytest.raises(ConfigError, match="HTTP/2"):
        ssl_server.set({"open_http2_protocol": True})  # not even on an SSL listener: out of scope
    for each in (server, ssl_server):
        for port in each.ports:
            port.close()


def test_required_callbacks_and_refused_events():
    server = http_server_class()("127.0.0.1", 0)
    with pytest.raises(ValueError, match="receive"):
        server.on("receive", lambda *args: None)
    with pytest.raises(ValueError, match="connect"):
        server.on("Connect", lambda *args: None)  # any accepted spelling (R7)
    with pytest.raises(StateError, match="request"):
        server.start()  # 'request' is required (§5.4)
    server.ports[0].close()
    plain = threadswoole.Server("127.0.0.1", 0)
    plain.on("receive", lambda *args: None)
    port = plain.add_listener("127.0.0.1", 0, threadswoole.SWOOLE_SOCK_TCP)
    port.set({"open_http_protocol": True})
    with pytest.raises(StateError, match="request"):
        plain.start()  # the HTTP port has no request callback, at port or server level
    for each in plain.ports:
        each.close()
