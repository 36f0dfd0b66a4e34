"""aiohttp WebSocket echo (a peer; run with the benchmark virtualenv's python).

The handler users write: ``async for msg in ws`` -> ``send_bytes`` / ``send_str``, on
aiohttp's default (stock asyncio) loop. ``--fanout``: a message starting with
``!fanout:`` is sent (the rest of it) to every other open connection instead.
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
    from aiohttp import WSMsgType, web

    conns: set = set()

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conns.add(ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    data = msg.data
                    if fanout and data.startswith(FANOUT):
                        payload = data[len(FANOUT):]
                        for other in list(conns):
                            if other is not ws and not other.closed:
                                await other.send_bytes(payload)
                    else:
                        await ws.send_bytes(data)
                elif msg.type == WSMsgType.TEXT:
                    await ws.send_str(msg.data)
        finally:
            conns.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    sock = listen(host, port)
    site = web.SockSite(runner, sock, backlog=1024)
    await site.start()
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    ready(sock.getsockname()[1])
    try:
        await stop
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stress.servers.aiohttp_ws")
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
