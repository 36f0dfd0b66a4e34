"""Stdlib asyncio echo server: the main peer threadswoole is compared against.

``data_received`` -> ``transport.write`` (raw echo), or with ``--framing
length`` a Protocol that buffers and echoes whole length-prefixed packets.
``--workers N`` (N > 1) pre-forks N processes sharing one listening socket,
each with its own event loop; the parent only waits. That also makes this a
forking server for checking that the benchmark's CPU/RSS accounting covers
the whole process tree. ``--recv-size N`` changes asyncio's per-read buffer
(``max_size``, 256 KiB by default: above glibc's mmap threshold, so each read
costs an mmap+mremap+munmap) to show what that stdlib default costs.
``--loop uvloop`` runs the same protocol on uvloop (libuv); the benchmark starts
that one with the peer virtualenv's interpreter (``stress.peers``), since uvloop is
never a dependency of threadswoole. ``--spin K`` (raw echo only) runs K turns of an empty
Python loop in each ``data_received`` before the write: a peer given more user-space work per
request, to see how its system time follows (stress/callgrind/base_echo.sh ``sched``).
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

from stress.servers._common import parser, ready, take_frames


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def spinning_echo(turns: int) -> type:
    """Echo after `turns` turns of an empty Python loop (``--spin``)."""
    spins = range(turns)

    class SpinningEcho(Echo):
        def data_received(self, data: bytes) -> None:
            for _ in spins:
                pass
            self.transport.write(data)

    return SpinningEcho


class FramedEcho(asyncio.Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            out = take_frames(self.buf)
        except ValueError:
            self.transport.close()
            return
        if out:
            self.transport.write(out)


async def serve(sock: socket.socket, framing: str, announce: bool, spin: int = 0) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    proto = FramedEcho if framing == "length" else spinning_echo(spin) if spin else Echo
    server = await loop.create_server(proto, sock=sock, backlog=1024)
    if announce:
        ready(sock.getsockname()[1])
    try:
        await stop
    finally:
        server.close()


def listen(host: str, port: int) -> socket.socket:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(1024)
    s.setblocking(False)
    return s


def run_loop(coro, loop: str) -> None:
    if loop == "uvloop":
        import uvloop   # only in the benchmark's peer virtualenv

        uvloop.run(coro)
    else:
        asyncio.run(coro)


def prefork(sock: socket.socket, framing: str, workers: int, loop: str = "asyncio", spin: int = 0) -> None:
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                run_loop(serve(sock, framing, announce=False, spin=spin), loop)
            finally:
                os._exit(0)
        pids.append(pid)
    stopping = False

    def on_signal(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        for p in pids:
            try:
                os.kill(p, signal.SIGTERM)
            except ProcessLookupError:
                pass
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ready(sock.getsockname()[1])
    alive = set(pids)
    while alive:
        try:
            pid, _ = os.wait()
        except ChildProcessError:
            break
        alive.discard(pid)
        if not stopping:          # a worker died on its own: take the rest down too
            on_signal(signal.SIGTERM, None)


def main(argv: list[str] | None = None) -> int:
    ap = parser("asyncio_echo")
    ap.add_argument("--recv-size", type=int, default=0, help="asyncio read size (default: stdlib's)")
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    ap.add_argument("--spin", type=int, default=0, help="turns of an empty Python loop per read (raw echo)")
    a = ap.parse_args(argv)
    if a.recv_size:
        from asyncio import selector_events
        selector_events._SelectorSocketTransport.max_size = a.recv_size   # private, stable since 3.4
    sock = listen(a.host, a.port)
    if a.workers > 1:
        prefork(sock, a.framing, a.workers, a.loop, a.spin)
    else:
        run_loop(serve(sock, a.framing, announce=True, spin=a.spin), a.loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
