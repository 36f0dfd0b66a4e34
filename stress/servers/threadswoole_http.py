"""threadswoole ``http.Server`` hello world, written against the documented API (api.md §8).

``server.on("request", lambda req, resp: resp.end(b"Hello, World!"))`` in the mode and
worker count asked for; ``--handler sleep`` blocks ``--sleep-ms`` first (the blocking-
handler workload: THREAD mode with many worker threads); ``--handler path`` answers each
request with its own path (the verified load of the ``faults`` scenario checks every answer).
``--control``: ``GET /!ctl/stats`` answers ``server.stats()`` as JSON (the scenario's probe).
Prints ``SKIP <reason>`` and exits 0 while ``threadswoole.http`` does not exist yet, so the
benchmark reports a skipped row rather than a failure.
"""
from __future__ import annotations

import argparse
import sys

BODY = b"Hello, World!"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stress.servers.threadswoole_http")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", choices=("base", "process", "thread"), default="base")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--reactors", type=int, default=None)
    ap.add_argument("--handler", choices=("hello", "sleep", "path"), default="hello")
    ap.add_argument("--sleep-ms", type=float, default=2.0)
    ap.add_argument("--control", action="store_true", help="answer GET /!ctl/stats with server.stats()")
    a = ap.parse_args(argv)
    try:
        from threadswoole import http
        server_class = http.Server
    except (ImportError, AttributeError) as exc:
        print(f"SKIP threadswoole.http.Server is not available yet ({exc})", flush=True)
        return 0
    from threadswoole import SWOOLE_BASE, SWOOLE_PROCESS, SWOOLE_THREAD

    modes = {"base": SWOOLE_BASE, "process": SWOOLE_PROCESS, "thread": SWOOLE_THREAD}
    server = server_class(a.host, a.port, modes[a.mode])
    settings: dict = {"worker_num": a.workers, "log_level": 4}
    if a.reactors:
        settings["reactor_num"] = a.reactors
    server.set(settings)
    if a.handler == "sleep":
        import time

        pause = a.sleep_ms / 1000.0

        def on_request(request, response) -> None:
            time.sleep(pause)
            response.end(BODY)
        server.on("request", on_request)
    elif a.handler == "path":
        server.on("request", lambda request, response: response.end(request.server["request_uri"]))
    else:
        server.on("request", lambda request, response: response.end(BODY))
    if a.control:
        import json

        answer = server.get_callback("request")

        def on_request_or_control(request, response) -> None:
            if request.server["request_uri"] == "/!ctl/stats":
                response.end(json.dumps({**server.stats(), "worker_id": server.worker_id}))
            else:
                answer(request, response)
        server.on("request", on_request_or_control)
    server.on("start", lambda s: print("READY", s.ports[0].port, flush=True))
    ok = server.start()
    return 0 if ok in (True, None) else 1


if __name__ == "__main__":
    sys.exit(main())
