"""threadswoole ``websocket.Server`` echo, written against the documented API (api.md §9).

``s.on("message", lambda srv, frame: srv.push(frame.fd, frame.data, frame.opcode))``.
``--fanout``: a message starting with ``!fanout:`` is pushed (the rest of it) to every
other connection instead of echoed: the push fan-out figure. Prints ``SKIP <reason>``
and exits 0 while ``threadswoole.websocket`` does not exist yet.
"""
from __future__ import annotations

import argparse
import sys

from stress._net import raise_nofile

FANOUT = b"!fanout:"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stress.servers.threadswoole_ws")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", choices=("base", "process", "thread"), default="base")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--reactors", type=int, default=None)
    ap.add_argument("--fanout", action="store_true")
    ap.add_argument("--rlimit-nofile", type=int, default=None)
    a = ap.parse_args(argv)
    try:
        from threadswoole import websocket
        server_class = websocket.Server
    except (ImportError, AttributeError) as exc:
        print(f"SKIP threadswoole.websocket.Server is not available yet ({exc})", flush=True)
        return 0
    from threadswoole import SWOOLE_BASE, SWOOLE_PROCESS, SWOOLE_THREAD

    if a.rlimit_nofile:
        raise_nofile(a.rlimit_nofile)
    modes = {"base": SWOOLE_BASE, "process": SWOOLE_PROCESS, "thread": SWOOLE_THREAD}
    server = server_class(a.host, a.port, modes[a.mode])
    settings: dict = {"worker_num": a.workers, "log_level": 4}
    if a.reactors:
        settings["reactor_num"] = a.reactors
    if a.rlimit_nofile:
        settings["max_conn"] = a.rlimit_nofile
    server.set(settings)
    if a.fanout:
        def on_message(srv, frame) -> None:
            data = frame.data
            if data.startswith(FANOUT):
                payload = data[len(FANOUT):]
                for fd in srv.connections:
                    if fd != frame.fd:
                        srv.push(fd, payload, frame.opcode)
            else:
                srv.push(frame.fd, data, frame.opcode)
        server.on("message", on_message)
    else:
        server.on("message", lambda srv, frame: srv.push(frame.fd, frame.data, frame.opcode))
    server.on("start", lambda s: print("READY", s.ports[0].port, flush=True))
    ok = server.start()
    return 0 if ok in (True, None) else 1


if __name__ == "__main__":
    sys.exit(main())
