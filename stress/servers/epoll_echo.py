"""Bare single-thread ``select.epoll`` echo loop: what a minimal Python loop costs.

No framework at all: level-triggered epoll on raw fds, ``os.read`` then ``os.write``
inline in the poll loop, nothing allocated per request but the payload (EPOLLOUT only
while a write was partial). It is the floor any Python event loop (asyncio's or
threadswoole's) can be judged against. Reads are 64 KiB: a 256 KiB buffer (asyncio's
``max_size``) is above glibc's mmap threshold and costs an mmap+mremap+munmap per call.
With ``--framing length`` a separate loop echoes only whole length-prefixed packets
(buffering the rest), like the framed servers.
"""
from __future__ import annotations

import os
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


def serve(lsock: socket.socket) -> None:
    """Raw echo: the leanest loop Python allows (what ``--framing none`` runs).

    Level-triggered epoll on raw fds; ``os.read`` / ``os.write`` inline in the poll loop;
    no per-connection object, no buffer: the payload ``bytes`` is the only allocation per
    request (besides epoll's result list). A partial write (never seen with small echoes)
    parks the rest in ``pending`` and switches that fd to EPOLLOUT until it drains.
    """
    ep = select.epoll()
    lfd = lsock.fileno()
    ep.register(lfd, IN)
    poll, register, modify = ep.poll, ep.register, ep.modify
    read, write = os.read, os.write
    pending: dict[int, bytes] = {}
    open_fds: set[int] = set()

    def close(fd: int) -> None:
        ep.unregister(fd)
        os.close(fd)
        open_fds.discard(fd)
        pending.pop(fd, None)

    try:
        while True:
            for fd, ev in poll():
                if fd == lfd:
                    for _ in range(64):
                        try:
                            c, _addr = lsock.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        if c.family != socket.AF_UNIX:
                            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        c.setblocking(False)
                        cfd = c.detach()
                        open_fds.add(cfd)
                        register(cfd, IN)
                    continue
                if ev & OUT:                   # rare: drain a partial write, then read again
                    data = pending.pop(fd)
                    try:
                        n = write(fd, data)
                    except BlockingIOError:
                        n = 0
                    except OSError:
                        close(fd)
                        continue
                    if n < len(data):
                        pending[fd] = data[n:]
                    else:
                        modify(fd, IN)
                    continue
                try:
                    data = read(fd, 65536)     # <= 64 KiB: see the module docstring
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    close(fd)
                    continue
                try:
                    n = write(fd, data)
                except BlockingIOError:
                    n = 0
                except OSError:
                    close(fd)
                    continue
                if n < len(data):
                    pending[fd] = data[n:]
                    modify(fd, OUT)            # stop reading until the backlog drains
    except _Stop:
        pass
    finally:
        for fd in list(open_fds):
            close(fd)
        ep.close()


def serve_framed(lsock: socket.socket) -> None:
    """Length-framed echo (``--framing length``): echoes only whole packets, buffers the rest."""
    ep = select.epoll()
    lfd = lsock.fileno()
    ep.register(lfd, IN)
    socks: dict[int, socket.socket] = {}
    pending: dict[int, bytes] = {}
    bufs: dict[int, bytearray] = {}

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
                    data = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    close(fd)
                    continue
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
    (serve_framed if a.framing == "length" else serve)(lsock)
    lsock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
