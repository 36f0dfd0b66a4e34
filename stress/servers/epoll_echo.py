"""Bare single-thread ``select.epoll`` echo loop: what a minimal Python loop costs.

No framework at all: level-triggered epoll, ``recv`` then ``send``, with a
per-connection output buffer and EPOLLOUT only while a send was partial.
With ``--framing length`` it echoes only whole length-prefixed packets
(buffering the rest), like the framed servers. It is the floor any Python
event loop (asyncio's or threadswoole's) can be judged against.
"""
from __future__ import annotations

import select
import signal
import socket
import sys

from stress.servers._common import parser, ready, take_frames

IN, OUT = select.EPOLLIN, select.EPOLLOUT


class _Stop(Exception):
    pass


def _stop(*_: object) -> None:
    raise _Stop()


def serve(lsock: socket.socket, framing: str) -> None:
    ep = select.epoll()
    lfd = lsock.fileno()
    ep.register(lfd, IN)
    socks: dict[int, socket.socket] = {}
    pending: dict[int, bytes] = {}
    bufs: dict[int, bytearray] = {}
    framed = framing == "length"

    def close(fd: int) -> None:
        ep.unregister(fd)
        socks.pop(fd).close()
        pending.pop(fd, None)
        bufs.pop(fd, None)

    try:
        while True:
            for fd, ev in ep.poll():
                if fd == lfd:
                    for _ in range(64):
                        try:
                            c, _addr = lsock.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        c.setblocking(False)
                        if c.family != socket.AF_UNIX:
                            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        socks[c.fileno()] = c
                        if framed:
                            bufs[c.fileno()] = bytearray()
                        ep.register(c.fileno(), IN)
                    continue
                s = socks.get(fd)
                if s is None:
                    continue
                if ev & OUT:
                    data = pending.pop(fd)
                    try:
                        n = s.send(data)
                    except (BlockingIOError, InterruptedError):
                        n = 0
                    except OSError:
                        close(fd)
                        continue
                    if n < len(data):
                        pending[fd] = data[n:]
                    else:
                        ep.modify(fd, IN)
                    continue
                try:
                    # <= 64 KiB: a 256 KiB recv() buffer is above glibc's mmap threshold and costs
                    # an mmap+mremap+munmap per call (that is what asyncio's max_size does)
                    data = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    close(fd)
                    continue
                if framed:
                    buf = bufs[fd]
                    buf += data
                    try:
                        data = take_frames(buf)
                    except ValueError:
                        close(fd)
                        continue
                    if not data:
                        continue
                if fd in pending:          # already waiting for EPOLLOUT: queue behind
                    pending[fd] += data
                    continue
                try:
                    n = s.send(data)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError:
                    close(fd)
                    continue
                if n < len(data):
                    pending[fd] = data[n:]
                    ep.modify(fd, OUT)     # stop reading until the backlog drains
    except _Stop:
        pass
    finally:
        for fd in list(socks):
            close(fd)
        ep.close()


def main(argv: list[str] | None = None) -> int:
    a = parser("epoll_echo").parse_args(argv)
    fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    lsock = socket.socket(fam, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((a.host, a.port))
    lsock.listen(1024)
    lsock.setblocking(False)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    ready(lsock.getsockname()[1])
    serve(lsock, a.framing)
    lsock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
