"""The server under test: a threadswoole WebSocket echo server, written against api.md §9.

`python -m conformance.autobahn.echo_server --mode base|process|thread` binds 127.0.0.1 on a
free port, prints `READY <port>` once the server runs, and echoes every message with its opcode
(`push(fd, data, opcode)`), with permessage-deflate on. Message and output limits are raised to
32 MiB because cases 9.1.6/9.2.6 send 16 MiB messages (the defaults are 2 MiB). SIGTERM stops it.
Exit status 3 with `threadswoole.websocket.Server is not available yet` when the package has no
working WebSocket server, so CI output says so instead of showing a traceback.
"""
from __future__ import annotations

import argparse
import sys

NOT_AVAILABLE = "threadswoole.websocket.Server is not available yet"
NOT_AVAILABLE_STATUS = 3
LIMIT = 32 << 20


def websocket_server_class():
    """threadswoole.websocket.Server, or None with the reason when it does not exist yet."""
    try:
        from threadswoole import websocket
        return websocket.Server, ""
    except (ImportError, AttributeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.autobahn.echo_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=("base", "process", "thread"), default="base")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    server_class, reason = websocket_server_class()
    if server_class is None:
        print(f"{NOT_AVAILABLE} ({reason})", file=sys.stderr, flush=True)
        return NOT_AVAILABLE_STATUS
    from threadswoole import SWOOLE_BASE, SWOOLE_PROCESS, SWOOLE_THREAD

    modes = {"base": SWOOLE_BASE, "process": SWOOLE_PROCESS, "thread": SWOOLE_THREAD}
    try:
        server = server_class(args.host, args.port, modes[args.mode])
        server.set({"websocket_compression": True, "worker_num": args.workers, "log_level": 4,
                    "package_max_length": LIMIT, "buffer_output_size": LIMIT, "socket_buffer_size": 2 * LIMIT})
        server.on("message", lambda srv, frame: srv.push(frame.fd, frame.data, frame.opcode))
        server.on("start", lambda srv: print("READY", srv.ports[0].port, flush=True))
        ok = server.start()  # blocks; SIGTERM shuts it down and start() returns True
    except NotImplementedError as exc:
        print(f"{NOT_AVAILABLE} (NotImplementedError: {exc})", file=sys.stderr, flush=True)
        return NOT_AVAILABLE_STATUS
    return 0 if ok in (True, None) else 1


if __name__ == "__main__":
    sys.exit(main())
