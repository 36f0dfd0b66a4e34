"""threadswoole.Client (contract §12): real threadswoole servers in every mode, plain socket servers
for the misbehaving peers, UDP / Unix, TLS with a client certificate, SWOOLE_KEEP, and errors."""

from __future__ import annotations

import errno
import gc
import os
import socket
import struct
import threading
import time
import warnings
from typing import Any, Callable

import pytest

import threadswoole
from threadswoole import (
    SWOOLE_KEEP,
    SWOOLE_SOCK_ASYNC,
    SWOOLE_SOCK_TCP,
    SWOOLE_SOCK_TCP6,
    SWOOLE_SOCK_UDP,
    SWOOLE_SOCK_UDP6,
    SWOOLE_SOCK_UNIX_DGRAM,
    SWOOLE_SOCK_UNIX_STREAM,
    SWOOLE_SSL,
    Client,
    ConfigError,
    StateError,
    UnknownSettingWarning,
)
from threadswoole import _context
from threadswoole.client import CLIENT_NO_CONNECTION, DNSLOOKUP_RESOLVE_FAILED, SSL_HANDSHAKE_FAILED, SSL_VERIFY_FAILED, _keep
from tls_certs import Certs, have_openssl, make_certs

pytestmark = pytest.mark.timeout(60)

LENGTH = {"open_length_check": True, "package_length_type": "N", "package_length_offset": 0, "package_body_offset": 4}


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


class PlainServer:
    """A plain socket server (TCP, TCP6 or Unix stream) that runs `handler(conn)` per connection in a thread."""

    def __init__(self, handler: Callable[[socket.socket], Any], family: int = socket.AF_INET, address: Any = ("127.0.0.1", 0), backlog: int = 8) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(address)
        self.sock.listen(backlog)
        self.sock.settimeout(0.05)  # lets the accept loop see `stop` (not a synchronisation sleep)
        self.address = self.sock.getsockname()
        self.port = self.address[1] if isinstance(self.address, tuple) else 0
        self.handler = handler
        self.accepted = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.settimeout(5)
            try:
                with conn:
                    self.handler(conn)
            except Exception as exc:  # reported by close()
                self.errors.append(exc)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(10)
        self.sock.close()
        assert not self.errors, self.errors


@pytest.fixture
def plain():
    servers: list[PlainServer] = []

    def make(handler: Callable[[socket.socket], Any], **kw: Any) -> PlainServer:
        server = PlainServer(handler, **kw)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def read_all(conn: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def echo_until_eof(conn: socket.socket) -> None:
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


# -- construction and settings ---------------------------------------------------------------------
def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="async"):
        Client(SWOOLE_SOCK_TCP, SWOOLE_SOCK_ASYNC)
    with pytest.raises(ValueError):
        Client(99)
    with pytest.raises(TypeError):
        Client("tcp")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Client(SWOOLE_SOCK_UDP | SWOOLE_SSL)
    with pytest.raises(ValueError):
        Client(SWOOLE_SOCK_UNIX_DGRAM | SWOOLE_KEEP)
    client = Client(SWOOLE_SOCK_TCP)
    assert client.sock is None and client.err_code == 0 and not client.is_connected()


def test_client_made_between_a_servers_constructor_and_its_start_raises() -> None:
    class FakeServer:  # what Server.__init__ / start() report (see the hook in the report)
        pass

    server = FakeServer()
    _context.server_created(server)
    try:
        with pytest.raises(StateError):
            Client(SWOOLE_SOCK_TCP)
    finally:
        _context.server_started(server)
    Client(SWOOLE_SOCK_TCP)
    # A server nobody holds any more (even inside a reference cycle) does not count.
    cyclic = FakeServer()
    cyclic.me = cyclic  # type: ignore[attr-defined]
    _context.server_created(cyclic)
    del cyclic
    Client(SWOOLE_SOCK_TCP)


def test_real_server_not_started_blocks_client() -> None:
    server = threadswoole.Server("127.0.0.1", 0)
    try:
        with pytest.raises(StateError):
            Client(SWOOLE_SOCK_TCP)
    finally:
        del server
        gc.collect()


def test_set_checks_and_merges() -> None:
    client = Client(SWOOLE_SOCK_TCP)
    client.set({"open_eof_check": True})
    client.set(package_eof="\r\n")
    assert client.setting["open_eof_check"] is True and client.setting["package_eof"] == b"\r\n"
    with pytest.raises(TypeError):
        client.set(package_max_length="big")
    with pytest.raises(ConfigError):
        client.set(package_eof=b"123456789")
    with pytest.raises(ConfigError):
        client.set(package_length_type="x")
    with pytest.raises(ConfigError):
        client.set(bind_port=70000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client.set(no_such_key=1)
    assert any(issubclass(w.category, UnknownSettingWarning) for w in caught)


def test_set_after_connect_raises(plain) -> None:
    server = plain(echo_until_eof)
    client = Client(SWOOLE_SOCK_TCP)
    assert client.connect("127.0.0.1", server.port)
    with pytest.raises(StateError):
        client.set(open_eof_check=True)
    client.close()


# -- against real threadswoole servers ----------------------------------------------------------------
def test_echo_addresses_and_close(run_server, mode) -> None:
    handle = run_server(lambda server, emit: server.on("receive", lambda srv, fd, rid, data: srv.send(fd, data)), mode=mode)
    client = Client(SWOOLE_SOCK_TCP)
    assert client.connect("127.0.0.1", handle.port, 2.0) is True
    assert client.is_connected() and client.isConnected() and client.sock is not None
    assert client.send(b"hello") == 5
    assert client.recv() == b"hello"
    assert client.send("héllo") == 6 and client.recv(6, socket.MSG_WAITALL) == "héllo".encode()
    local, peer = client.get_sockname(), client.get_peername()
    assert peer == {"host": "127.0.0.1", "port": handle.port} == client.getpeername()
    assert local["host"] == "127.0.0.1" and local["port"] > 0 and client.getsockname() == local
    assert client.connect("127.0.0.1", handle.port) is False and client.err_code == errno.EISCONN
    assert client.close() is True and not client.is_connected() and client.sock is None
    assert client.close() is False and client.errCode == CLIENT_NO_CONNECTION
    assert client.send(b"x") is False and client.recv() is False and client.err_code == CLIENT_NO_CONNECTION
    assert handle.stop() == 0


def test_length_framing_returns_exactly_one_packet(run_server, mode) -> None:
    # Checklist 57: two packets arrive in one TCP write, recv() returns them one at a time.
    def setup(server, emit):
        server.on("receive", lambda srv, fd, rid, data: srv.send(fd, frame(b"first") + frame(b"second") + frame(b"")))

    handle = run_server(setup, mode=mode)
    client = Client(SWOOLE_SOCK_TCP)
    client.set(LENGTH)
    assert client.connect("127.0.0.1", handle.port, 2.0)
    client.send(b"go")
    assert client.recv(1) == frame(b"first")  # size is ignored with framing on
    assert client.recv() == frame(b"second")
    assert client.recv() == frame(b"")
    client.close()
    assert handle.stop() == 0


def test_eof_split_framing_against_a_plain_server(plain) -> None:
    def serve(conn):
        conn.recv(10)
        conn.sendall(b"a\r\nbb\r\nccc")
        conn.sendall(b"\r\n")

    server = plain(serve)
    client = Client(SWOOLE_SOCK_TCP)
    client.set(open_eof_split=True, package_eof=b"\r\n")
    assert client.connect("127.0.0.1", server.port)
    client.send(b"go")
    assert [client.recv(), client.recv(), client.recv()] == [b"a\r\n", b"bb\r\n", b"ccc\r\n"]
    assert client.recv() == b""  # the server closed at a packet boundary
    client.close()


def test_udp_connect_send_recv_and_sendto(run_server, mode) -> None:
    def setup(server, emit):
        server.on("packet", lambda srv, data, info: srv.sendto(info["address"], info["port"], b"re:" + data, info["server_socket"]))

    handle = run_server(setup, mode=mode, sock_type=SWOOLE_SOCK_UDP, settings={"worker_num": 1})
    client = Client(SWOOLE_SOCK_UDP)
    assert client.connect("127.0.0.1", handle.port, 2.0)
    assert client.send(b"one") == 3 and client.recv() == b"re:one"
    assert client.get_peername() == {"host": "127.0.0.1", "port": handle.port}
    client.close()
    other = Client(SWOOLE_SOCK_UDP)  # sendto needs no connect
    assert other.sendto("127.0.0.1", handle.port, b"two") is True
    other.connect("127.0.0.1", handle.port, 2.0)
    assert other.recv() == b"re:two"
    with pytest.raises(ValueError):
        Client(SWOOLE_SOCK_TCP).sendto("127.0.0.1", handle.port, b"x")
    other.close()
    assert handle.stop() == 0


def test_udp_sock_flag_filters_other_senders() -> None:
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    try:
        client = Client(SWOOLE_SOCK_UDP)
        assert client.connect("127.0.0.1", peer.getsockname()[1], 2.0, sock_flag=1)
        local = client.get_sockname()
        stranger.sendto(b"not for you", ("127.0.0.1", local["port"]))
        client.send(b"hi")
        data, address = peer.recvfrom(100)
        peer.sendto(b"for you", address)
        assert client.recv() == b"for you"  # the stranger's datagram was dropped by the kernel
        client.close()
    finally:
        peer.close()
        stranger.close()


def test_udp6_and_tcp6(run_server) -> None:
    peer = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    peer.bind(("::1", 0))
    try:
        client = Client(SWOOLE_SOCK_UDP6)
        assert client.sendto("::1", peer.getsockname()[1], b"six")
        data, address = peer.recvfrom(100)
        peer.sendto(b"back", address)
        assert data == b"six" and client.recv() == b"back"
        assert client.get_peername()["host"] == "::1"
        client.close()
    finally:
        peer.close()
    handle = run_server(lambda server, emit: server.on("receive", lambda srv, fd, rid, d: srv.send(fd, d)), host="::1", sock_type=SWOOLE_SOCK_TCP6)
    client = Client(SWOOLE_SOCK_TCP6)
    assert client.connect("::1", handle.port, 2.0)
    client.send(b"v6")
    assert client.recv() == b"v6" and client.get_sockname()["host"] == "::1"
    client.close()
    assert handle.stop() == 0


def test_unix_stream_and_dgram(run_server, tmp_path) -> None:
    path = str(tmp_path / "s.sock")
    handle = run_server(lambda server, emit: server.on("receive", lambda srv, fd, rid, d: srv.send(fd, d[::-1])), host=path, sock_type=SWOOLE_SOCK_UNIX_STREAM)
    client = Client(SWOOLE_SOCK_UNIX_STREAM)
    assert client.connect(path, 0, 2.0)
    client.send(b"abc")
    assert client.recv() == b"cba" and client.get_peername() == {"host": path, "port": 0}
    client.close()
    assert handle.stop() == 0

    dgram_path = str(tmp_path / "d.sock")
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    peer.bind(dgram_path)
    try:
        client = Client(SWOOLE_SOCK_UNIX_DGRAM)
        assert client.connect(dgram_path, 0, 2.0)
        client.send(b"ping")
        data, address = peer.recvfrom(100)
        assert data == b"ping" and os.path.exists(address)  # the client bound a path the peer can answer
        peer.sendto(b"pong", address)
        assert client.recv() == b"pong"
        assert client.get_sockname() == {"host": address, "port": 0}
        client.close()
        assert not os.path.exists(address)  # removed with the socket
    finally:
        peer.close()


# -- errors --------------------------------------------------------------------------------------------
def test_refused_connect() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens there now
    client = Client(SWOOLE_SOCK_TCP)
    assert client.connect("127.0.0.1", port) is False
    assert client.err_code == errno.ECONNREFUSED == threadswoole.get_last_error()
    assert not client.is_connected()


def test_connect_timeout() -> None:
    # A listener whose accept queue is full drops new SYNs: connect() cannot finish in time.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
        client = Client(SWOOLE_SOCK_TCP)
        start = time.monotonic()
        result = client.connect("127.0.0.1", listener.getsockname()[1], timeout=0.3)
        if result is True:
            pytest.skip("this kernel accepted the connection despite the full backlog")
        assert client.err_code == errno.ETIMEDOUT and time.monotonic() - start < 3
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_dns_failure() -> None:
    client = Client(SWOOLE_SOCK_TCP)
    assert client.connect("no-such-host.invalid", 80) is False
    assert client.err_code == DNSLOOKUP_RESOLVE_FAILED


def test_bad_port_is_a_programmer_error() -> None:
    for port in (0, 70000, -1):
        with pytest.raises(ValueError):
            Client(SWOOLE_SOCK_TCP).connect("127.0.0.1", port)


def test_recv_timeout_keeps_the_connection(plain) -> None:
    go = threading.Event()

    def serve(conn):
        conn.recv(10)
        go.wait(10)
        conn.sendall(frame(b"late"))
        read_all(conn)

    server = plain(serve)
    client = Client(SWOOLE_SOCK_TCP)
    client.set(LENGTH)
    assert client.connect("127.0.0.1", server.port, timeout=0.2)
    client.send(b"x")
    assert client.recv() is False and client.err_code == errno.EAGAIN
    go.set()
    assert client.recv() == frame(b"late")
    client.close()


def test_peer_closing_mid_packet(plain) -> None:
    def serve(conn):
        conn.recv(10)
        conn.sendall(frame(b"whole") + frame(b"cut short")[:7])

    server = plain(serve)
    client = Client(SWOOLE_SOCK_TCP)
    client.set(LENGTH)
    assert client.connect("127.0.0.1", server.port, 2.0)
    client.send(b"x")
    assert client.recv() == frame(b"whole")
    assert client.recv() is False and client.err_code == errno.ECONNRESET
    assert not client.is_connected()


def test_length_header_over_package_max_length(plain) -> None:
    def serve(conn):
        conn.recv(10)
        conn.sendall(frame(b"ok") + struct.pack(">I", 10_000) + b"x" * 10)
        read_all(conn)

    server = plain(serve)
    client = Client(SWOOLE_SOCK_TCP)
    client.set(LENGTH, package_max_length=1000)
    assert client.connect("127.0.0.1", server.port, 2.0)
    client.send(b"x")
    assert client.recv() == frame(b"ok")  # completed before the bad header: delivered first
    assert client.recv() is False and client.err_code == threadswoole.SWOOLE_ERROR_PACKAGE_LENGTH_TOO_LARGE
    assert not client.is_connected()


def test_clean_close_and_unframed_recv(plain) -> None:
    def serve(conn):
        conn.sendall(b"bye")

    server = plain(serve)
    client = Client(SWOOLE_SOCK_TCP)
    assert client.connect("127.0.0.1", server.port, 2.0)
    assert client.recv(3, socket.MSG_PEEK) == b"bye" and client.recv(100, socket.MSG_WAITALL) == b"bye"
    assert client.recv() == b""
    assert client.is_connected()  # the client's state until close(), as in Swoole
    assert client.close()


def test_send_argument_checks(plain) -> None:
    server = plain(echo_until_eof)
    client = Client(SWOOLE_SOCK_TCP)
    client.connect("127.0.0.1", server.port, 2.0)
    with pytest.raises(TypeError):
        client.send(123)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        client.send(b"")
    client.close()


def test_sendfile(plain, tmp_path) -> None:
    received: list[bytes] = []
    server = plain(lambda conn: received.append(read_all(conn)))
    path = tmp_path / "payload.bin"
    payload = os.urandom(300_000)
    path.write_bytes(payload)
    client = Client(SWOOLE_SOCK_TCP)
    assert client.connect("127.0.0.1", server.port, 2.0)
    assert client.sendfile(str(path)) is True
    assert client.sendfile(path, 100, 50) is True
    assert client.sendfile(str(tmp_path / "missing")) is False and client.err_code == errno.ENOENT
    client.close()
    server.close()
    assert received == [payload + payload[100:150]]


def test_deleting_a_client_closes_its_socket(plain) -> None:
    seen: list[bytes] = []
    server = plain(lambda conn: seen.append(read_all(conn)))
    client = Client(SWOOLE_SOCK_TCP)
    client.connect("127.0.0.1", server.port, 2.0)
    client.send(b"last words")
    del client
    gc.collect()
    server.close()  # joins the handler: it saw EOF
    assert seen == [b"last words"]


# -- SWOOLE_KEEP -----------------------------------------------------------------------------------------
def test_keep_reuses_the_connection(run_server) -> None:
    def setup(server, emit):
        server.on("connect", lambda srv, fd, rid: emit("connect", fd=fd))
        server.on("receive", lambda srv, fd, rid, data: srv.send(fd, data))

    handle = run_server(setup)
    first = Client(SWOOLE_SOCK_TCP | SWOOLE_KEEP)
    assert first.connect("127.0.0.1", handle.port, 2.0) and first.reuse is False
    local_port = first.get_sockname()["port"]
    assert first.close() is True and not first.is_connected()
    assert f"127.0.0.1:{handle.port}" in _keep.kept_keys()
    second = Client(SWOOLE_SOCK_TCP | SWOOLE_KEEP)
    assert second.connect("127.0.0.1", handle.port, 2.0) and second.reuse is True
    assert second.get_sockname()["port"] == local_port
    second.send(b"same socket")
    assert second.recv() == b"same socket"
    handle.wait("connect")
    assert not handle.events_named("connect") and not [e for e in handle.drain(settle=0.2) if e["event"] == "connect"]
    # A different key, or a forced close, means a new connection.
    keyed = Client(SWOOLE_SOCK_TCP | SWOOLE_KEEP, key="other")
    assert keyed.connect("127.0.0.1", handle.port, 2.0) and keyed.reuse is False
    assert keyed.get_sockname()["port"] != local_port
    keyed.close(force=True)
    assert "other" not in _keep.kept_keys()
    second.close(force=True)
    third = Client(SWOOLE_SOCK_TCP | SWOOLE_KEEP)
    assert third.connect("127.0.0.1", handle.port, 2.0) and third.reuse is False
    # Deleting a kept client hands its connection back.
    del third
    gc.collect()
    assert f"127.0.0.1:{handle.port}" in _keep.kept_keys()
    fourth = Client(SWOOLE_SOCK_TCP | SWOOLE_KEEP)
    assert fourth.connect("127.0.0.1", handle.port, 2.0) and fourth.reuse is True
    fourth.close(force=True)
    assert handle.stop() == 0


def test_keep_does_not_reuse_a_connection_the_peer_closed(plain) -> None:
    closed = threading.Event()

    def serve(conn):
        conn.recv(10)
        conn.close()  # the FIN is in the client's receive queue once close() returns (loopback)
        closed.set()

    server = plain(serve)
    client = Client(SWOOLE_SOCK_TCP | SWOOLE_KEEP, key="dies")
    client.connect("127.0.0.1", server.port, 2.0)
    first_port = client.get_sockname()["port"]
    client.send(b"x")
    client.close()
    assert "dies" in _keep.kept_keys() and closed.wait(5)
    again = Client(SWOOLE_SOCK_TCP | SWOOLE_KEEP, key="dies")
    assert again.connect("127.0.0.1", server.port, 2.0) and again.reuse is False
    assert again.get_sockname()["port"] != first_port
    again.close(force=True)


# -- TLS ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    if not have_openssl():
        pytest.skip("the openssl command makes the test certificates")
    return make_certs(str(tmp_path_factory.mktemp("client-certs")))


def test_tls_with_a_client_certificate_the_server_requires(run_server, mode, certs) -> None:
    def setup(server, emit):
        server.on("receive", lambda srv, fd, rid, data: srv.send(fd, b"tls:" + data))

    settings = {"worker_num": 1, "ssl_cert_file": certs.server_cert, "ssl_key_file": certs.server_key, "ssl_verify_peer": True, "ssl_client_cert_file": certs.ca}
    handle = run_server(setup, mode=mode, sock_type=SWOOLE_SOCK_TCP | SWOOLE_SSL, settings=settings)
    client = Client(SWOOLE_SOCK_TCP | SWOOLE_SSL)
    client.set(ssl_cert_file=certs.client_cert, ssl_key_file=certs.client_key, ssl_verify_peer=True, ssl_cafile=certs.ca)
    assert client.connect("127.0.0.1", handle.port, 5.0), client.err_code
    client.send(b"secret")
    assert client.recv() == b"tls:secret"
    client.close()
    # Without a certificate the server refuses: at the handshake, or (TLS 1.3) at the first read.
    bare = Client(SWOOLE_SOCK_TCP | SWOOLE_SSL)
    if bare.connect("127.0.0.1", handle.port, 5.0):
        bare.send(b"let me in")
        assert bare.recv() in (False, b"")
        assert bare.err_code in (0, errno.ECONNRESET)
        bare.close()
    else:
        assert bare.err_code in (SSL_HANDSHAKE_FAILED, errno.ECONNRESET)
    assert handle.stop() == 0


def test_tls_server_verification(run_server, certs) -> None:
    settings = {"worker_num": 1, "ssl_cert_file": certs.server_cert, "ssl_key_file": certs.server_key}
    handle = run_server(lambda server, emit: server.on("receive", lambda srv, fd, rid, d: srv.send(fd, d)), sock_type=SWOOLE_SOCK_TCP | SWOOLE_SSL, settings=settings)
    trusting = Client(SWOOLE_SOCK_TCP | SWOOLE_SSL)  # Swoole's default: no verification
    assert trusting.connect("127.0.0.1", handle.port, 5.0)
    trusting.close()
    wrong_ca = Client(SWOOLE_SOCK_TCP | SWOOLE_SSL)
    wrong_ca.set(ssl_verify_peer=True, ssl_cafile=certs.rogue_cert)
    assert wrong_ca.connect("127.0.0.1", handle.port, 5.0) is False and wrong_ca.err_code == SSL_VERIFY_FAILED
    wrong_name = Client(SWOOLE_SOCK_TCP | SWOOLE_SSL)
    wrong_name.set(ssl_verify_peer=True, ssl_cafile=certs.ca, ssl_host_name="not-the-server.example")
    assert wrong_name.connect("127.0.0.1", handle.port, 5.0) is False and wrong_name.err_code == SSL_VERIFY_FAILED
    good = Client(SWOOLE_SOCK_TCP | SWOOLE_SSL)
    good.set(ssl_verify_peer=True, ssl_cafile=certs.ca, ssl_host_name="localhost")
    assert good.connect("127.0.0.1", handle.port, 5.0)
    good.send(b"ok")
    assert good.recv() == b"ok"
    good.close()
    assert handle.stop() == 0


def test_tls_to_a_plaintext_server_fails_the_handshake(plain) -> None:
    server = plain(lambda conn: (conn.recv(1000), conn.sendall(b"HTTP/1.0 400 Bad\r\n\r\n")))
    client = Client(SWOOLE_SOCK_TCP | SWOOLE_SSL)
    assert client.connect("127.0.0.1", server.port, 2.0) is False
    assert client.err_code == SSL_HANDSHAKE_FAILED and not client.is_connected()


def test_tls_settings_that_cannot_load_raise(plain, tmp_path) -> None:
    server = plain(lambda conn: conn.recv(1000))
    client = Client(SWOOLE_SOCK_TCP | SWOOLE_SSL)
    client.set(ssl_cert_file=str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigError):
        client.connect("127.0.0.1", server.port, 2.0)
    assert not client.is_connected()


def test_tcp6_requires_an_ipv6_address() -> None:
    client = Client(SWOOLE_SOCK_TCP6)
    assert client.connect("127.0.0.1", 9) is False and client.err_code == DNSLOOKUP_RESOLVE_FAILED


def test_unix_connect_to_a_missing_path(tmp_path) -> None:
    client = Client(SWOOLE_SOCK_UNIX_STREAM)
    assert client.connect(str(tmp_path / "nobody.sock")) is False and client.err_code == errno.ENOENT


def test_bind_failure_is_false_with_errno(plain) -> None:
    server = plain(echo_until_eof)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        client = Client(SWOOLE_SOCK_TCP)
        client.set(bind_address="127.0.0.1", bind_port=taken.getsockname()[1])
        assert client.connect("127.0.0.1", server.port, 2.0) is False and client.err_code == errno.EADDRINUSE
        bound = Client(SWOOLE_SOCK_TCP)
        bound.set(bind_address="127.0.0.1", bind_port=0, open_tcp_nodelay=True, socket_buffer_size=1 << 20)
        assert bound.connect("127.0.0.1", server.port, 2.0) and bound.send(b"x") == 1 and bound.recv() == b"x"
        bound.close()
    finally:
        taken.close()
