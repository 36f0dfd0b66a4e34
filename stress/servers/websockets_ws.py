"""websockets (the library) echo server (a peer; run with the benchmark virtualenv's python).

``async for message in ws: await ws.send(message)`` on the new asyncio implementation
(``websockets.asyncio.server``), stock asyncio loop. ``--fanout``: a message starting with
``!fanout:`` is broadcast (the rest of it) to every other connection with
``websockets.asyncio.server.broadcast``.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from stress._net import raise_nofile
from stress.servers._common import ready
from stress.servers.asyncio_echo import listen

FANOUT = b"!fanout:"


async def serve(host: str, port: int, fanout: bool) -> None:
    from websockets.asyncio.server import broadcast, serve as ws_serve

    conns: set = set()

    async def handler(ws) -> None:
        conns.add(ws)
        try:
            async for message in ws:
                if fanout and isinstance(message, bytes) and message.startswith(FANOUT):
                    broadcast([c for c in conns if c is not ws], message[len(FANOUT):])
                else:
                    await ws.send(message)
        finally:
            conns.discard(ws)

    sock = listen(host, port)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with ws_serve(handler, sock=sock, max_size=2**20, ping_interval=None):
        ready(sock.getsockname()[1])
        await stop


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stress.servers.websockets_ws")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fanout", action="store_true")
    ap.add_argument("--rlimit-nofile", type=int, default=None)
    a = ap.parse_args(argv)
    if a.rlimit_nofile:
        raise_nofile(a.rlimit_nofile)
    asyncio.run(serve(a.host, a.port, a.fanout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
