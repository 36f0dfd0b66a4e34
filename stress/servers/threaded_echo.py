"""Stdlib ``socketserver.ThreadingTCPServer`` echo server: thread-per-connection peer.

``serve_forever`` runs in a helper thread so that the main thread can wait
for SIGTERM/SIGINT and call ``shutdown()`` (calling it from the serving
thread itself would deadlock). Handler threads are daemons: open client
connections do not keep the process alive after shutdown.
"""
from __future__ import annotations

import signal
import socket
import socketserver
import sys
import threading

from stress.servers._common import parser, ready, take_frames


class RawEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        recv, sendall = sock.recv, sock.sendall
        try:
            while True:
                data = recv(65536)
                if not data:
                    return
                sendall(data)
        except OSError:
            return


class FramedEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                buf += data
                out = take_frames(buf)
                if out:
                    sock.sendall(out)
        except (OSError, ValueError):
            return


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


class Server6(Server):
    address_family = socket.AF_INET6


def main(argv: list[str] | None = None) -> int:
    a = parser("threaded_echo").parse_args(argv)
    cls = Server6 if ":" in a.host else Server
    srv = cls((a.host, a.port), FramedEcho if a.framing == "length" else RawEcho)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    ready(srv.server_address[1])
    while not stop.wait(0.5):
        pass
    srv.shutdown()
    srv.server_close()
    t.join(timeout=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
