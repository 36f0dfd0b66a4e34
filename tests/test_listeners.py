"""UDP, UDP6, Unix stream and Unix datagram listeners, and per-port callbacks (§3.5, §3.6, §17 item 25)."""

from __future__ import annotations

import socket

import pytest

from conftest import connect, recv_exact
from threadswoole import SWOOLE_BASE, SWOOLE_SOCK_TCP6, SWOOLE_SOCK_UDP, SWOOLE_SOCK_UDP6, SWOOLE_SOCK_UNIX_DGRAM, SWOOLE_SOCK_UNIX_STREAM

pytestmark = pytest.mark.timeout(30)


def test_udp_packet_and_sendto(run_server, mode):
    def setup(server, emit):
        def on_packet(srv, data, client_info):
            emit("packet", data=data.decode(), info=client_info)
            srv.sendto(client_info["address"], client_info["port"], b"re:" + data, client_info["server_socket"])
            emit("v6", ok=srv.sendto("::1", 9, b"x"), error=srv.get_last_error())

        server.on("packet", on_packet)

    handle = run_server(setup, mode=mode, sock_type=SWOOLE_SOCK_UDP, settings={"worker_num": 1})
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(5)
    client.sendto(b"ping", ("127.0.0.1", handle.port))
    assert client.recvfrom(100)[0] == b"re:ping"
    packet = handle.wait("packet")
    assert packet["data"] == "ping"
    assert packet["info"]["address"] == "127.0.0.1" and packet["info"]["port"] == client.getsockname()[1]
    assert isinstance(packet["info"]["server_socket"], int)
    v6 = handle.wait("v6")
    assert v6["ok"] is False  # no UDP6 listener to send from
    assert handle.stop() == 0


def test_sendto_a_bad_port_or_address_returns_false_with_einval(run_server, mode):
    """Contract §5.2 table: sendto is False "if ... a bad IP/port" (a runtime outcome, no raise)."""
    import errno

    def setup(server, emit):
        def on_packet(srv, data, client_info):
            outcomes = {}
            for label, ip, port in (("port 0", "127.0.0.1", 0), ("port 70000", "127.0.0.1", 70000), ("hostname", "localhost", 9), ("garbage", "1.2.3", 9)):
                outcomes[label] = [srv.sendto(ip, port, b"x"), srv.get_last_error()]
            try:
                srv.sendto("127.0.0.1", "9", b"x")
                outcomes["str port"] = "no error"
            except TypeError:
                outcomes["str port"] = "TypeError"
            emit("outcomes", outcomes=outcomes)

        server.on("packet", on_packet)

    handle = run_server(setup, mode=mode, sock_type=SWOOLE_SOCK_UDP, settings={"worker_num": 1})
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.sendto(b"go", ("127.0.0.1", handle.port))
    outcomes = handle.wait("outcomes")["outcomes"]
    client.close()
    for label in ("port 0", "port 70000", "hostname", "garbage"):
        assert outcomes[label] == [False, errno.EINVAL], label
    assert outcomes["str port"] == "TypeError"  # a wrong type is a programming error
    assert handle.stop() == 0


def test_udp6_and_tcp6(run_server):
    def setup(server, emit):
        server.on("receive", lambda srv, fd, rid, data: srv.send(fd, data + b"!"))
        port = server.add_listener("::1", 0, SWOOLE_SOCK_UDP6)
        port.on("packet", lambda srv, data, info: srv.sendto(info["address"], info["port"], data.upper(), info["server_socket"]))

    handle = run_server(setup, host="::1", sock_type=SWOOLE_SOCK_TCP6)
    client = socket.create_connection(("::1", handle.port), timeout=5)
    client.sendall(b"six")
    assert recv_exact(client, 4) == b"six!"
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp.settimeout(5)
    udp.sendto(b"dgram", ("::1", handle.ports[1]))
    assert udp.recvfrom(100)[0] == b"DGRAM"
    assert handle.stop() == 0


def test_unix_stream_and_unix_dgram(run_server, tmp_path):
    stream_path = str(tmp_path / "stream.sock")
    dgram_path = str(tmp_path / "dgram.sock")

    def setup(server, emit):
        server.on("receive", lambda srv, fd, rid, data: srv.send(fd, data[::-1]))
        port = server.add_listener(dgram_path, 0, SWOOLE_SOCK_UNIX_DGRAM)

        def on_packet(srv, data, info):
            emit("unix_packet", info=info)
            srv.send(info["address"], b"ok:" + data, info["server_socket"])

        port.on("packet", on_packet)

    handle = run_server(setup, host=stream_path, sock_type=SWOOLE_SOCK_UNIX_STREAM)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(5)
    client.connect(stream_path)
    client.sendall(b"abc")
    assert recv_exact(client, 3) == b"cba"
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    client_path = str(tmp_path / "client.sock")
    dgram.bind(client_path)
    dgram.settimeout(5)
    dgram.sendto(b"hi", dgram_path)
    assert dgram.recv(100) == b"ok:hi"
    info = handle.wait("unix_packet")["info"]
    assert info["address"] == client_path and info["port"] == 0
    assert handle.stop() == 0


def test_port_callbacks_take_precedence(run_server):
    def setup(server, emit):
        server.on("receive", lambda srv, fd, rid, data: srv.send(fd, b"main"))
        port = server.add_listener("127.0.0.1", 0)
        port.on("receive", lambda srv, fd, rid, data: srv.send(fd, b"port"))
        port.on("connect", lambda srv, fd, rid: emit("port_connect", fd=fd, server_port=srv.get_client_info(fd)["server_port"]))

    handle = run_server(setup)
    main, other = connect(handle.ports[0]), connect(handle.ports[1])
    main.sendall(b"x")
    other.sendall(b"x")
    assert recv_exact(main, 4) == b"main" and recv_exact(other, 4) == b"port"
    assert handle.wait("port_connect")["server_port"] == handle.ports[1]
    assert handle.stop() == 0


def test_get_socket_is_the_real_listening_socket(run_server):
    def setup(server, emit):
        sock = server.get_socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        server.on("worker_start", lambda srv, wid: emit("sock", fd=srv.get_socket().fileno(), port_fd=srv.ports[0].sock))
        server.on("receive", lambda *a: None)

    handle = run_server(setup, settings={"worker_num": 1})
    event = handle.wait("sock")
    assert event["fd"] == event["port_fd"]
    assert handle.stop() == 0


def test_base_constant_is_default():
    assert SWOOLE_BASE == 1
