"""TLS listeners (`SWOOLE_SSL`) in every mode: handshake, echo, client certificates, bad
clients (plaintext, wrong certificate, no ClientHello), big payloads, framing, added ports."""

from __future__ import annotations

import os
import socket
import ssl
import time

import pytest

from conftest import connect, recv_closed, settled_stats
from tls_certs import Certs, have_openssl, make_certs

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(not have_openssl(), reason="the openssl command makes the test certificates")]


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Certs:
    return make_certs(str(tmp_path_factory.mktemp("certs")))


def tls_type() -> int:
    import threadswoole

    return threadswoole.SWOOLE_SOCK_TCP | threadswoole.SWOOLE_SSL


def tls_settings(certs: Certs, **extra) -> dict:
    return {"worker_num": 1, "ssl_cert_file": certs.server_cert, "ssl_key_file": certs.server_key, **extra}


def tls_connect(port: int, certs: Certs, with_cert: str | None = None, timeout: float = 5.0, rcvbuf: int = 0) -> ssl.SSLSocket:
    """A TLS client that verifies the server against the test CA (handshake done on return);
    `rcvbuf` shrinks its receive window so the server's output really has to wait."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(timeout)
    raw.connect(("127.0.0.1", port))
    return certs.client_context(with_cert=with_cert).wrap_socket(raw, server_hostname="localhost")


def tls_recv_exact(sock: ssl.SSLSocket, size: int, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(min(remaining, 65536))
        if not chunk:
            raise AssertionError(f"connection closed with {remaining} of {size} bytes missing")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def tls_rejected(sock_factory, timeout: float = 5.0) -> bool:
    """True when the server refuses the connection during or right after the handshake.

    With TLS 1.3 the client finishes its side before the server checks the client
    certificate, so the refusal (an alert, then EOF or a reset) shows on the first read.
    """
    try:
        sock = sock_factory()
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    try:
        sock.settimeout(timeout)
        sock.sendall(b"hello")
        data = sock.recv(100)
        return data == b""
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    finally:
        sock.close()


def pem_of(path: str) -> str:
    with open(path) as file:
        return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(file.read()))


def echo_with_events(server, emit) -> None:
    def on_connect(srv, fd, rid):
        emit("connect", fd=fd, cert=srv.get_client_info(fd).get("ssl_client_cert"))

    def on_receive(srv, fd, rid, data):
        if data == b"stats":
            emit("stats", stats=srv.stats())
        srv.send(fd, data)

    server.on("connect", on_connect)
    server.on("receive", on_receive)
    server.on("close", lambda srv, fd, rid: emit("close", fd=fd))


def test_tls_echo_and_events(run_server, mode, certs):
    handle = run_server(echo_with_events, mode=mode, sock_type=tls_type(), settings=tls_settings(certs))
    clients = [tls_connect(handle.port, certs) for _ in range(3)]
    fds = {handle.wait("connect")["fd"] for _ in clients}
    assert len(fds) == 3
    for index, client in enumerate(clients):
        message = f"hello {index}".encode()
        client.sendall(message)
        assert tls_recv_exact(client, len(message)) == message
        assert client.version() in ("TLSv1.2", "TLSv1.3")
    for client in clients:
        client.close()
    assert {handle.wait("close")["fd"] for _ in clients} == fds
    assert handle.stop() == 0


def test_client_certificate_is_in_client_info_where_connect_fired(run_server, mode, certs, request):
    from threadswoole.workers.router import LocalRouter

    if mode != "process" and "client_info" not in LocalRouter.__dict__:
        request.applymarker(pytest.mark.xfail(strict=True, reason="LocalRouter.client_info must call tls.add_client_cert (see the TLS hand-over note)"))

    def setup(server, emit):
        def on_connect(srv, fd, rid):
            emit("connect", fd=fd, cert=srv.get_client_info(fd).get("ssl_client_cert"))

        def on_receive(srv, fd, rid, data):
            emit("receive", cert=srv.get_client_info(fd).get("ssl_client_cert"))
            srv.send(fd, data)

        server.on("connect", on_connect)
        server.on("receive", on_receive)

    settings = tls_settings(certs, ssl_verify_peer=True, ssl_client_cert_file=certs.ca)
    handle = run_server(setup, mode=mode, sock_type=tls_type(), settings=settings)
    client = tls_connect(handle.port, certs, with_cert="client")
    expected = pem_of(certs.client_cert)
    assert handle.wait("connect")["cert"] == expected
    client.sendall(b"ping")
    assert tls_recv_exact(client, 4) == b"ping"
    assert handle.wait("receive")["cert"] == expected
    client.close()
    assert handle.stop() == 0


def test_wrong_or_missing_client_certificate_is_rejected_and_others_are_served(run_server, mode, certs):
    settings = tls_settings(certs, ssl_verify_peer=True, ssl_client_cert_file=certs.ca)
    handle = run_server(echo_with_events, mode=mode, sock_type=tls_type(), settings=settings)
    good = tls_connect(handle.port, certs, with_cert="client")
    handle.wait("connect")
    assert tls_rejected(lambda: tls_connect(handle.port, certs, with_cert="rogue"))
    assert tls_rejected(lambda: tls_connect(handle.port, certs, with_cert=None))
    good.sendall(b"still here")
    assert tls_recv_exact(good, 10) == b"still here"
    stats = settled_stats(handle, good, recv=tls_recv_exact, predicate=lambda s: s["protocol_error_count"] >= 2 and s["connection_num"] == 1)
    assert stats["protocol_error_count"] == 2 and stats["connection_num"] == 1
    assert not [e for e in handle.drain(settle=0.2) if e["event"] == "connect"]
    assert handle.stop() == 0


def _handshake_over_memory_bio(sock: socket.socket, certs: Certs) -> ssl.SSLObject:
    """Complete a TLS handshake with an SSLObject over a plain socket, so the test can then
    write raw bytes on the same connection."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = certs.client_context(with_cert=None).wrap_bio(incoming, outgoing, server_hostname="localhost")
    deadline = time.monotonic() + 5
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            pending = outgoing.read()
            if pending:
                sock.sendall(pending)
            data = sock.recv(65536)
            assert data and time.monotonic() < deadline, "the server dropped the handshake"
            incoming.write(data)
    pending = outgoing.read()  # the client's Finished
    if pending:
        sock.sendall(pending)
    return tls


def test_plaintext_clients_are_closed_counted_and_others_served(run_server, mode, certs):
    handle = run_server(echo_with_events, mode=mode, sock_type=tls_type(), settings=tls_settings(certs))
    good = tls_connect(handle.port, certs)
    handle.wait("connect")
    # 1. a plaintext client on the TLS port: the handshake fails, no connect/close callbacks
    plain = connect(handle.port)
    plain.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    assert recv_closed(plain)
    # 2. a TLS client that completes the handshake, then writes plaintext: closed as bad input
    rude = connect(handle.port)
    _handshake_over_memory_bio(rude, certs)
    rude_fd = handle.wait("connect")["fd"]
    rude.sendall(b"this is not a TLS record\r\n" * 4)
    assert recv_closed(rude)
    assert handle.wait("close")["fd"] == rude_fd
    stats = settled_stats(handle, good, recv=tls_recv_exact, predicate=lambda s: s["protocol_error_count"] >= 2 and s["connection_num"] == 1)
    assert stats["protocol_error_count"] == 2 and stats["connection_num"] == 1
    assert not [e for e in handle.drain(settle=0.2) if e["event"] in ("connect", "close")]
    assert handle.stop() == 0


def test_a_client_that_never_sends_a_client_hello_is_dropped_after_the_deadline(run_server, mode, certs):
    handle = run_server(echo_with_events, mode=mode, sock_type=tls_type(), settings=tls_settings(certs, max_wait_time=0.5))
    silent = connect(handle.port)
    started = time.monotonic()
    good = tls_connect(handle.port, certs)  # served while the silent one waits
    handle.wait("connect")
    good.sendall(b"hi")
    assert tls_recv_exact(good, 2) == b"hi"
    assert recv_closed(silent, timeout=5)
    assert 0.4 <= time.monotonic() - started < 4
    stats = settled_stats(handle, good, recv=tls_recv_exact, predicate=lambda s: s["protocol_error_count"] >= 1 and s["connection_num"] == 1)
    assert stats["connection_num"] == 1 and stats["protocol_error_count"] == 1
    assert not [e for e in handle.drain(settle=0.2) if e["event"] == "connect"]
    assert handle.stop() == 0


def test_one_mebibyte_both_ways_and_more_than_the_kernel_buffers(run_server, mode, certs):
    size = 1024 * 1024
    blob = bytes(range(256)) * (2 * size // 256)

    def setup(server, emit):
        def on_receive(srv, fd, rid, data):
            if data == b"BLOB":  # 3 x 2 MiB: more than the kernel buffers, so sends must wait
                emit("blob", ok=[srv.send(fd, blob) for _ in range(3)])
            else:
                srv.send(fd, data)

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, sock_type=tls_type(), settings=tls_settings(certs, socket_buffer_size=16 * size))
    client = tls_connect(handle.port, certs, rcvbuf=4096)
    payload = os.urandom(size)
    client.sendall(payload)  # the server echoes while we are not reading yet
    assert tls_recv_exact(client, size, timeout=30) == payload
    client.sendall(b"BLOB")
    assert handle.wait("blob")["ok"] == [True] * 3
    time.sleep(0.2)  # let the server fill every buffer and hit SSLWantWriteError
    assert tls_recv_exact(client, 3 * len(blob), timeout=30) == blob * 3
    assert handle.stop() == 0


def test_length_framing_over_tls(run_server, mode, certs):
    def setup(server, emit):
        def on_receive(srv, fd, rid, data):
            emit("packet", data=data.hex())
            srv.send(fd, data)

        server.on("receive", on_receive)

    settings = tls_settings(certs, open_length_check=True, package_length_type="N", package_body_offset=4)
    handle = run_server(setup, mode=mode, sock_type=tls_type(), settings=settings)
    client = tls_connect(handle.port, certs)
    packets = [len(body).to_bytes(4, "big") + body for body in (b"one", b"", b"three" * 1000)]
    client.sendall(b"".join(packets))  # three packets in one TLS record
    assert [bytes.fromhex(e["data"]) for e in handle.wait_n("packet", 3)] == packets
    tls_recv_exact(client, sum(map(len, packets)))
    slow = len(b"slow").to_bytes(4, "big") + b"slow"
    for byte in slow:  # one TLS record per byte
        client.sendall(bytes([byte]))
    assert bytes.fromhex(handle.wait("packet")["data"]) == slow
    assert tls_recv_exact(client, len(slow)) == slow
    assert handle.drain(settle=0.2) == []
    assert handle.stop() == 0


def test_tls_on_an_added_port_while_the_main_port_is_plain(run_server, mode, certs):
    def setup(server, emit):
        import threadswoole

        port = server.add_listener("127.0.0.1", 0, threadswoole.SWOOLE_SOCK_TCP | threadswoole.SWOOLE_SSL)
        port.set(ssl_cert_file=certs.server_cert, ssl_key_file=certs.server_key)
        server.on("receive", lambda srv, fd, rid, data: srv.send(fd, b"%d:" % srv.get_client_info(fd)["server_port"] + data))

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    plain_port, tls_port = handle.ports
    plain = connect(plain_port)
    plain.sendall(b"plain")
    expected = b"%d:plain" % plain_port
    assert tls_recv_exact(plain, len(expected)) == expected
    secure = tls_connect(tls_port, certs)
    secure.sendall(b"secure")
    expected = b"%d:secure" % tls_port
    assert tls_recv_exact(secure, len(expected)) == expected
    assert secure.version() is not None
    assert handle.stop() == 0


def test_sendfile_over_tls(run_server, mode, certs, tmp_path):
    content = os.urandom(300_000)
    path = tmp_path / "file.bin"
    path.write_bytes(content)

    def setup(server, emit):
        def on_receive(srv, fd, rid, data):
            emit("sent", ok=[srv.send(fd, b"A" * 100), srv.sendfile(fd, str(path), 5, 250_000), srv.send(fd, b"C")])

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, sock_type=tls_type(), settings=tls_settings(certs))
    client = tls_connect(handle.port, certs, rcvbuf=4096)
    client.sendall(b"go")
    assert handle.wait("sent")["ok"] == [True] * 3
    expected = b"A" * 100 + content[5:250_005] + b"C"
    assert tls_recv_exact(client, len(expected), timeout=30) == expected
    assert handle.stop() == 0


def test_delayed_receive_and_pause_over_tls(run_server, mode, certs):
    def setup(server, emit):
        seen = []

        def on_connect(srv, fd, rid):
            seen.append(fd)
            emit("connect", fd=fd, control=len(seen) == 1, ok=srv.confirm(fd) if len(seen) == 1 else None)

        def on_receive(srv, fd, rid, data):
            if data.startswith((b"confirm ", b"resume ")):
                verb, target = data.split()
                emit(verb.decode(), ok=srv.confirm(int(target)) if verb == b"confirm" else srv.resume(int(target)))
                srv.send(fd, b"done")
            elif data == b"pause me":
                emit("paused", ok=srv.pause(fd))
                srv.send(fd, b"paused")
            else:
                emit("receive", data=data.decode())

        server.on("connect", on_connect)
        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, sock_type=tls_type(), settings=tls_settings(certs, enable_delay_receive=True))
    control = tls_connect(handle.port, certs)
    assert handle.wait("connect", control=True)["ok"] is True
    subject = tls_connect(handle.port, certs)
    fd = handle.wait("connect", control=False)["fd"]
    subject.sendall(b"early")
    assert not [e for e in handle.drain(settle=0.3) if e["event"] == "receive"]
    control.sendall(b"confirm %d" % fd)
    assert tls_recv_exact(control, 4) == b"done"
    assert handle.wait("confirm")["ok"] is True
    assert handle.wait("receive")["data"] == "early"
    subject.sendall(b"pause me")
    assert tls_recv_exact(subject, 6) == b"paused"
    subject.sendall(b"while paused")
    assert not [e for e in handle.drain(settle=0.3) if e["event"] == "receive"]
    control.sendall(b"resume %d" % fd)
    assert tls_recv_exact(control, 4) == b"done"
    assert handle.wait("receive")["data"] == "while paused"
    assert handle.stop() == 0


# -- configuration errors at start() (in-process: start() raises before anything runs) -----
def _tls_server(**settings):
    from threadswoole import SWOOLE_BASE, Server

    server = Server("127.0.0.1", 0, SWOOLE_BASE, tls_type())
    server.on("receive", lambda *a: None)
    server.set(settings)
    return server


def test_bad_certificate_files_are_config_errors(certs, tmp_path):
    from threadswoole import SWOOLE_TLSv1_2_CLIENT_METHOD, ConfigError

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    cases = {
        "garbage certificate": dict(ssl_cert_file=str(garbage), ssl_key_file=certs.server_key),
        "key of another certificate": dict(ssl_cert_file=certs.server_cert, ssl_key_file=certs.client_key),
        "missing key": dict(ssl_cert_file=certs.server_cert, ssl_key_file=str(tmp_path / "nope.key")),
        "verify_peer without a CA": dict(ssl_cert_file=certs.server_cert, ssl_key_file=certs.server_key, ssl_verify_peer=True),
        "garbage CA": dict(ssl_cert_file=certs.server_cert, ssl_key_file=certs.server_key, ssl_verify_peer=True, ssl_client_cert_file=str(garbage)),
        "no cipher": dict(ssl_cert_file=certs.server_cert, ssl_key_file=certs.server_key, ssl_ciphers="NO-SUCH-CIPHER"),
        "client method": dict(ssl_cert_file=certs.server_cert, ssl_key_file=certs.server_key, ssl_method=int(SWOOLE_TLSv1_2_CLIENT_METHOD)),
    }
    for name, settings in cases.items():
        server = _tls_server(**settings)
        with pytest.raises(ConfigError):
            server.start()
            pytest.fail(f"{name}: start() did not raise")
        server.ports[0].close()


def test_ssl_method_pins_the_protocol_version(run_server, certs):
    from threadswoole import SWOOLE_TLSv1_2_METHOD

    handle = run_server(echo_with_events, sock_type=tls_type(), settings=tls_settings(certs, ssl_method=int(SWOOLE_TLSv1_2_METHOD), ssl_ciphers=""))
    client = tls_connect(handle.port, certs)
    assert client.version() == "TLSv1.2"
    client.sendall(b"v12")
    assert tls_recv_exact(client, 3) == b"v12"
    modern_only = certs.client_context(with_cert=None)
    modern_only.minimum_version = ssl.TLSVersion.TLSv1_3
    raw = connect(handle.port)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        modern_only.wrap_socket(raw, server_hostname="localhost")
    assert handle.stop() == 0
