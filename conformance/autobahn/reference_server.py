"""A known-good WebSocket echo server (the `websockets` library) for the harness's self-check.

Run by the reference venv's interpreter as a plain script (it imports nothing from this
repository): `python reference_server.py --port 0` binds 127.0.0.1, prints `READY <port>`
and echoes every message as text or binary as it came, with permessage-deflate (websockets'
default). max_size 32 MiB for the 16 MiB messages of 9.*; max_queue=1 as websockets' own
Autobahn setup uses. SIGTERM stops it.
"""
import argparse
import asyncio
import signal
import sys

from websockets.asyncio.server import serve


async def echo(connection) -> None:
    async for message in connection:
        await connection.send(message)


async def serve_until_terminated(host: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(echo, host, port, max_size=32 << 20, max_queue=1) as server:
        print("READY", server.sockets[0].getsockname()[1], flush=True)
        await stop


def main() -> int:
    parser = argparse.ArgumentParser(prog="reference_server.py")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve_until_terminated(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
