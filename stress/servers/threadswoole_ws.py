"""threadswoole ``websocket.Server`` echo, written against the documented API (api.md §9).

``s.on("message", lambda srv, frame: srv.push(frame.fd, frame.data, frame.opcode))``.
``--fanout``: a message starting with ``!fanout:`` is pushed (the rest of it) to every
other connection instead of echoed: the push fan-out figure (in BASE, where
``server.connections`` lists the calling worker's own connections only, the other workers
are told with ``send_message`` and push to theirs). ``--control``: a plain HTTP
``GET /!ctl/stats`` on the same port answers ``server.stats()`` as JSON (the stress
scenario's probe; ``stress.scenarios.common.http_stats``). Prints ``SKIP <reason>``
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
    ap.add_argument("--control", action="store_true", help="answer GET /!ctl/stats with server.stats()")
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
        def push_to_own(srv, payload: bytes, opcode: int, skip: int) -> None:
            for fd in srv.connections:
                if fd != skip:
                    srv.push(fd, payload, opcode)

        def on_message(srv, frame) -> None:
            data = frame.data
            if data.startswith(FANOUT):
                payload = data[len(FANOUT):]
                if a.mode == "base":          # connections lists this worker's own only (api.md)
                    for worker in range(a.workers):
                        if worker != srv.worker_id:
                            srv.send_message((payload, frame.opcode), worker)
                push_to_own(srv, payload, frame.opcode, frame.fd)
            else:
                srv.push(frame.fd, data, frame.opcode)
        server.on("message", on_message)
        server.on("pipe_message", lambda srv, src, message: push_to_own(srv, *message, 0))
    else:
        server.on("message", lambda srv, frame: srv.push(frame.fd, frame.data, frame.opcode))
    if a.control:
        import json

        def on_request(request, response) -> None:
            if request.server["request_uri"] == "/!ctl/stats":
                response.end(json.dumps({**server.stats(), "worker_id": server.worker_id}))
            else:
                response.status(404)
                response.end("not found")
        server.on("request", on_request)
    server.on("start", lambda s: print("READY", s.ports[0].port, flush=True))
    ok = server.start()
    return 0 if ok in (True, None) else 1


if __name__ == "__main__":
    sys.exit(main())
