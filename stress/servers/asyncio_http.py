"""A minimal HTTP/1.1 server on stdlib asyncio: the reference floor for the HTTP workloads.

One ``asyncio.Protocol``: splits requests at the blank line (skipping a
``Content-Length`` body), answers each with a fixed ``200 Hello, World!``,
keeps the connection alive unless the client asked to close (or spoke
HTTP/1.0 without keep-alive), and answers pipelined requests in one write.
No routing, no header dict: it is what "HTTP on asyncio" costs at the least.
"""
from __future__ import annotations

import asyncio
import re
import signal
import sys

from stress.servers._common import parser, ready
from stress.servers.asyncio_echo import listen

BODY = b"Hello, World!"
_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % len(BODY)
KEEP = _HEAD + b"\r\n" + BODY
CLOSE = _HEAD + b"Connection: close\r\n\r\n" + BODY
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.I)
_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.I)
_KEEP_ALIVE = re.compile(rb"\r\nconnection:[ \t]*keep-alive", re.I)
MAX_HEAD = 8192


class HTTP(asyncio.Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        out = []
        close = False
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    out.append(BAD)
                    close = True
                break
            head = buf[:end]
            m = _LENGTH.search(head)
            total = end + 4 + (int(m.group(1)) if m else 0)
            if len(buf) < total:
                break
            buf = buf[total:]
            line_end = head.find(b"\r\n")
            http10 = head[:line_end if line_end >= 0 else len(head)].endswith(b"HTTP/1.0")
            if _CLOSE.search(head) or (http10 and not _KEEP_ALIVE.search(head)):
                out.append(CLOSE)
                close = True
                break
            out.append(KEEP)
        self.buf = buf
        if out:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
        if close:
            self.transport.close()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    sock = listen(host, port)
    server = await loop.create_server(HTTP, sock=sock, backlog=1024)
    ready(sock.getsockname()[1])
    try:
        await stop
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    a = parser("asyncio_http").parse_args(argv)
    asyncio.run(serve(a.host, a.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
