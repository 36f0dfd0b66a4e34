"""The README's examples run as written (ports swapped for free ones) and answer as described."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys

import pytest

from conftest import recv_exact

pytestmark = pytest.mark.timeout(60)
README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _examples() -> dict[str, str]:
    text = open(README).read()
    found = {}
    for title, code in re.findall(r"## (SWOOLE_\w+) in 20 lines.*?```python\n(.*?)```", text, re.S):
        found[title] = code
    return found


def _run(code: str) -> tuple[subprocess.Popen, int]:
    code = re.sub(r'Server\("127\.0\.0\.1", \d+', 'Server("127.0.0.1", 0', code)
    # one write (the example's own prints, from worker threads running meanwhile, cannot split it)
    code = code.replace("server.start()", 'import sys\nserver.on("start", lambda s: (sys.stdout.write(f"PORT {s.ports[0].port}\\n"), sys.stdout.flush()))\nserver.start()')
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    for line in proc.stdout:  # type: ignore[union-attr]
        found = re.search(r"PORT (\d+)$", line)
        if found:
            return proc, int(found.group(1))
    raise AssertionError(f"example did not start: rc={proc.wait()}")


def _stop(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(20) == 0
    proc.stdout.close()  # type: ignore[union-attr]


def test_readme_has_an_example_per_mode():
    assert set(_examples()) == {"SWOOLE_BASE", "SWOOLE_PROCESS", "SWOOLE_THREAD"}
    for code in _examples().values():
        assert len(code.strip().splitlines()) <= 24


def test_base_example_echoes_length_prefixed_packets():
    proc, port = _run(_examples()["SWOOLE_BASE"])
    try:
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        packet = struct.pack(">I", 5) + b"hello"
        client.sendall(packet[:3])
        client.sendall(packet[3:])
        assert recv_exact(client, len(packet)) == packet
        client.close()
    finally:
        _stop(proc)


def test_process_example_answers_from_a_worker():
    proc, port = _run(_examples()["SWOOLE_PROCESS"])
    try:
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.sendall(b"hi")
        reply = client.recv(100)
        assert re.fullmatch(rb"worker \d: hi", reply), reply
    finally:
        _stop(proc)


def test_thread_example_echoes():
    proc, port = _run(_examples()["SWOOLE_THREAD"])
    try:
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
        for i, client in enumerate(clients):
            client.sendall(b"x%d" % i)
        assert [recv_exact(c, 2) for c in clients] == [b"x0", b"x1", b"x2", b"x3"]
    finally:
        _stop(proc)


def test_demo_command_starts_an_echo_server():
    proc = subprocess.Popen([sys.executable, "-m", "threadswoole", "demo", "--port", "0", "--mode", "process", "--workers", "2"], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
        assert "nc 127.0.0.1" in proc.stdout.readline()  # type: ignore[union-attr]
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.sendall(b"echo me")
        assert recv_exact(client, 7) == b"echo me"
    finally:
        _stop(proc)


def _section(title: str) -> str:
    text = open(README).read()
    found = re.search(r"## " + re.escape(title) + r".*?```python\n(.*?)```", text, re.S)
    assert found, f"no example under {title!r}"
    return found.group(1)


def test_http_example_answers_as_described():
    import http.client

    code = re.sub(r'Server\("127\.0\.0\.1", \d+', 'Server("127.0.0.1", 0', _section("An HTTP server in 15 lines"))
    proc, port = _run(code)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/hello?name=swoole")
        reply = conn.getresponse()
        assert reply.status == 200 and reply.read() == b"hello swoole"
        conn.request("GET", "/elsewhere")
        reply = conn.getresponse()
        assert reply.status == 404 and reply.read() == b"not found"
        conn.close()
    finally:
        _stop(proc)


def test_websocket_example_welcomes_and_broadcasts():
    from test_websocket_server import Client

    proc, port = _run(_section("A WebSocket server in 15 lines"))
    try:
        first, second = Client(port, compress=True), Client(port)
        assert first.next_event().data.startswith(b"welcome ")
        assert second.next_event().data.startswith(b"welcome ")
        first.send(b"to everyone")
        assert first.next_event().data == b"to everyone" and second.next_event().data == b"to everyone"
        first.close()
        second.close()
    finally:
        _stop(proc)
